/* quota.h - per-token concurrency and rate limits, host-wide.
 *
 * Every tool call made with a token first takes a hold on that token's
 * entry: one more call in flight (at most maxConcurrentCalls) and one call
 * from its rate allowance (callsPerSecond, with a burst).  A call over
 * either is refused at once - nothing waits, nothing is queued - and the
 * front end answers 429 / "rate_limited".  The hold is given back when the
 * call ends, whichever way it ends.
 *
 * HOST-WIDE.  mcpgw-fcgi may run as many processes (mod_fcgid starts more
 * under load) next to one mcpgw-wsd, and a per-process limit would let a
 * token have N times its share.  So the table lives in a file,
 * <gateway.stateDir>/quota, mapped shared by every gateway process:
 *   - the hot path takes no lock: an entry is found by the hash of
 *     (namespace, key), the in-flight count is a counter per process (a
 *     "row") summed over all rows, and the rate is a GCRA (generic cell rate
 *     algorithm: one "theoretical arrival time" per entry, moved by a
 *     compare-and-swap);
 *   - each handle owns one row, held by an OFD lock on a byte of the file,
 *     which the kernel drops when the process dies - even by kill -9.  A
 *     dead process's calls are subtracted the next time a limit is reached
 *     (or the table fills): its row is found unlocked and zeroed;
 *   - adding an entry, evicting an idle one and reaping rows take a second
 *     OFD lock (kernel-released too) plus a mutex for this process's
 *     threads: rare, once per token and table lifetime.
 * The table holds MCPGW_QUOTA_KEYS entries and MCPGW_QUOTA_PROCS rows.  An
 * entry with nothing in flight and a full allowance is as good as none and
 * is reused when the table is full, so the table never grows; when every
 * entry is busy a new token's calls are refused (MCPGW_QUOTA_FULL).
 * If the file cannot be used (no state directory, every row taken, a file
 * of another layout), mcpgw_quota_new() falls back to a table of this
 * process only and says so in err: the limits then hold per process.
 *
 * Two calls racing at the concurrency limit from different processes may
 * both be refused (each sees the other's increment); neither can get past
 * it.  Entries are matched by a 64-bit hash of the key, not the key
 * itself: two names that collide share limits (names come from the
 * operator's token file, not from clients).
 *
 * THREADS.  Every function may be called from any thread, concurrently,
 * except mcpgw_quota_free().  Holds are plain values: a hold taken on one
 * thread may be released on another.
 */
#ifndef MCPGW_QUOTA_H
#define MCPGW_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mcpgw_quota mcpgw_quota;

struct mcpgw_quota_limits {
    unsigned max_concurrent;    /* calls in flight per key, >= 1 */
    unsigned per_second;        /* sustained calls per second per key, >= 1 */
    unsigned burst;             /* calls allowed at once from a full allowance, >= 1 */
};

enum mcpgw_quota_why {
    MCPGW_QUOTA_CONCURRENCY = 1,    /* max_concurrent calls already in flight */
    MCPGW_QUOTA_RATE,               /* the allowance is spent for now */
    MCPGW_QUOTA_FULL                /* every table entry is busy with other keys */
};

/* Why a call was refused, for the error text and Retry-After. */
struct mcpgw_quota_refusal {
    enum mcpgw_quota_why why;
    unsigned limit;             /* CONCURRENCY: max_concurrent; RATE: per_second;
                                 * FULL: the table's entries */
    unsigned burst;             /* RATE: the burst */
    unsigned retry_after_ms;    /* RATE: when one call is allowed again; else a hint */
};

/* The refusal as one line for an error message, naming the config keys:
 * "token 'ci' has 256 calls in flight (gateway.tokenLimits...)".  Returns
 * out. */
const char *mcpgw_quota_describe(const struct mcpgw_quota_refusal *why, const char *key,
                                 char *out, size_t outlen);

/* A call's hold on its key.  Initialise with MCPGW_QUOTA_HOLD_INIT;
 * mcpgw_quota_release() puts it back to that state. */
struct mcpgw_quota_hold {
    int slot;                   /* entry index, -1: nothing held */
};
#define MCPGW_QUOTA_HOLD_INIT { -1 }

/* Open the table.  dir: the state directory (created 0700 if missing);
 * the file is <dir>/quota, mode 0600.  dir NULL: a table of this process
 * only.  ns: a namespace mixed into every key (the token file's path, so
 * two gateways with different token files sharing a state directory do not
 * share limits); NULL means "".  lim is copied.
 * Returns 0 and *out; if the shared file could not be used, *out is still a
 * working per-process table and err (when not NULL) says why - the caller
 * logs it.  < 0 only for -EINVAL (a zero limit) and -ENOMEM; *out is then
 * NULL. */
int mcpgw_quota_new(const char *dir, const char *ns, const struct mcpgw_quota_limits *lim,
                    mcpgw_quota **out, char *err, size_t errlen);

/* Give back this process's row and free.  Holds not released by now are
 * dropped.  NULL-safe. */
void mcpgw_quota_free(mcpgw_quota *q);

/* Whether the table is the host-wide file (false: per process). */
bool mcpgw_quota_shared(const mcpgw_quota *q);

/* New limits for later calls (a config reload).  -EINVAL for a zero
 * limit, leaving the old ones. */
int mcpgw_quota_set_limits(mcpgw_quota *q, const struct mcpgw_quota_limits *lim);

/* Take a hold for one call of key (a token's name; NUL-terminated).
 * 0: *hold holds it until mcpgw_quota_release().  MCPGW_EBUSY: refused,
 * *why (when not NULL) says which limit; *hold is untouched and nothing is
 * held.  q NULL: no limits (0, and *hold stays empty). */
int mcpgw_quota_acquire(mcpgw_quota *q, const char *key, struct mcpgw_quota_hold *hold,
                        struct mcpgw_quota_refusal *why);

/* Give the hold back (the call ended: result, error, timeout, cancel or a
 * client gone).  An empty hold is a no-op, so this may run on every path. */
void mcpgw_quota_release(mcpgw_quota *q, struct mcpgw_quota_hold *hold);

/* Calls in flight for key now, summed over every process (for tests and
 * health).  0 for an unknown key or q NULL. */
unsigned mcpgw_quota_inflight(mcpgw_quota *q, const char *key);

/* Internal, for tests: acquire at a given CLOCK_MONOTONIC time in ns;
 * zero the rows of processes that died (returns how many); entries in
 * use. */
int mcpgw__quota_acquire_at(mcpgw_quota *q, const char *key, uint64_t now_ns,
                            struct mcpgw_quota_hold *hold, struct mcpgw_quota_refusal *why);
int mcpgw__quota_reap(mcpgw_quota *q);
unsigned mcpgw__quota_entries(mcpgw_quota *q);

#endif
