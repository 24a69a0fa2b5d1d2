/* quota.c - per-token concurrency and rate limits (see quota.h).
 *
 * The file: a header, MCPGW_QUOTA_PROCS process records, then
 * MCPGW_QUOTA_KEYS entries.  An entry is its key (a hash; 0 empty, 1 a
 * tombstone, 2 being evicted), its GCRA time and one in-flight counter per
 * process row, so summing the in-flight count reads a few adjacent cache
 * lines.  The file is sparse: pages of entries never used are never
 * allocated.
 *
 * Memory ordering.  Every atomic below is sequentially consistent.  The hot
 * path increments its row's counter and then re-reads the entry's key; an
 * evictor swaps the key to EVICTING and then sums the counters.  Both write
 * then read, so at least one of them sees the other's write: either the
 * caller sees the key change (and undoes and retries) or the evictor sees
 * the count (and puts the key back).  No call can end up counted on an
 * entry that was handed to another key.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "limits.h"
#include "quota.h"

#define NKEYS MCPGW_QUOTA_KEYS
#define NPROCS MCPGW_QUOTA_PROCS
#define MAGIC UINT64_C(0x31617451776770ad)  /* changes with the layout */
#define TABLE_VERSION 1u

#define KEY_EMPTY 0
#define KEY_TOMB 1
#define KEY_EVICTING 2
#define KEY_FIRST 3

/* OFD lock offsets, past the end of the file (a lock needs no data):
 * one byte for "the table is being changed", one per process row. */
#define LOCK_TABLE ((off_t)1 << 30)
#define LOCK_ROW(p) (LOCK_TABLE + 1 + (off_t)(p))

/* A refused call re-checks dead rows at most this often. */
#define REAP_INTERVAL_NS UINT64_C(1000000000)
/* Retries when an entry changes key under a caller (an eviction racing it). */
#define RETRIES_MAX 64

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "the shared table needs lock-free (address-free) atomics");

struct qhead {
    uint64_t magic;
    uint32_t version, nkeys, nprocs, entry_size;
    uint64_t pad[5];
};

struct qproc {
    _Atomic int32_t pid;        /* the row's owner, 0 free; for reaping and debugging */
    uint32_t pad[15];
};

struct qentry {
    _Atomic uint64_t key;
    _Atomic uint64_t tat;       /* GCRA theoretical arrival time, CLOCK_MONOTONIC ns */
    uint64_t pad[6];
    _Atomic uint32_t n[NPROCS]; /* calls in flight, per process row */
};

struct qtable {
    struct qhead head;
    struct qproc procs[NPROCS];
    struct qentry e[NKEYS];
};

_Static_assert(sizeof(struct qhead) == 64 && sizeof(struct qproc) == 64 &&
               sizeof(struct qentry) % 64 == 0, "cache-line layout");

struct mcpgw_quota {
    struct qtable *t;
    int fd;                     /* the file, -1 for a private table */
    int row;
    uint64_t ns_hash;           /* FNV-1a state after the namespace */
    pthread_mutex_t lock;       /* table changes, among this process's threads */
    _Atomic unsigned max_concurrent, per_second, burst;
    _Atomic uint64_t interval_ns;       /* 1 s / per_second */
    _Atomic uint64_t next_reap;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * UINT64_C(0x100000001b3);
    return h;
}

static uint64_t key_hash(const mcpgw_quota *q, const char *key)
{
    uint64_t h = fnv(q->ns_hash, key, strlen(key));

    /* FNV's low bits are weak: mix before they pick the first slot. */
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return h < KEY_FIRST ? h + KEY_FIRST : h;
}

/* ---- locks ------------------------------------------------------------------ */

static int ofd_lock(int fd, off_t at, bool wait)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1 };

    while (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

static void ofd_unlock(int fd, off_t at)
{
    struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1 };

    (void)fcntl(fd, F_OFD_SETLK, &fl);
}

static void table_lock(mcpgw_quota *q)
{
    pthread_mutex_lock(&q->lock);
    /* A failing lock (only on a broken file system) leaves the mutex alone
     * in charge: still correct within this process. */
    if (q->fd >= 0)
        (void)ofd_lock(q->fd, LOCK_TABLE, true);
}

static void table_unlock(mcpgw_quota *q)
{
    if (q->fd >= 0)
        ofd_unlock(q->fd, LOCK_TABLE);
    pthread_mutex_unlock(&q->lock);
}

/* ---- entries ---------------------------------------------------------------------- */

static unsigned entry_sum(const struct qentry *e)
{
    unsigned n = 0;

    for (int p = 0; p < NPROCS; p++)
        n += atomic_load(&e->n[p]);
    return n;
}

/* Lock-free lookup: the slot of h, or -1.  A slot being evicted does not
 * end the probe (it is not empty) and does not match (it may be ours, but
 * then the caller's re-check after incrementing catches it). */
static int find(const struct qtable *t, uint64_t h)
{
    for (unsigned k = 0, i = (unsigned)(h % NKEYS); k < NKEYS; k++, i = (i + 1) % NKEYS) {
        uint64_t v = atomic_load(&t->e[i].key);

        if (v == h)
            return (int)i;
        if (v == KEY_EMPTY)
            return -1;
    }
    return -1;
}

/* Make room for h by evicting an idle entry (nothing in flight, allowance
 * full: the same as a fresh one).  Table lock held.  The slot, or -1. */
static int evict_one(struct qtable *t, uint64_t h, uint64_t now)
{
    for (unsigned k = 0, i = (unsigned)(h % NKEYS); k < NKEYS; k++, i = (i + 1) % NKEYS) {
        struct qentry *e = &t->e[i];
        uint64_t v = atomic_load(&e->key);

        if (v < KEY_FIRST || atomic_load(&e->tat) > now || entry_sum(e) != 0)
            continue;
        if (!atomic_compare_exchange_strong(&e->key, &v, KEY_EVICTING))
            continue;
        if (entry_sum(e) == 0)
            return (int)i;
        atomic_store(&e->key, v);   /* a call got in: leave it */
    }
    return -1;
}

static int reap_locked(mcpgw_quota *q);

/* Find or add h.  The slot, or -1 when every entry is busy. */
static int insert(mcpgw_quota *q, uint64_t h, uint64_t now)
{
    struct qtable *t = q->t;
    int freeslot = -1, i = -1;

    table_lock(q);
    for (unsigned k = 0, j = (unsigned)(h % NKEYS); k < NKEYS; k++, j = (j + 1) % NKEYS) {
        struct qentry *e = &t->e[j];
        uint64_t v = atomic_load(&e->key);

        if (v == h) {
            i = (int)j;
            goto out;
        }
        /* Evictions happen only under this lock: one seen now was left by
         * a process that died mid-way. */
        if (v == KEY_EVICTING && atomic_compare_exchange_strong(&e->key, &v, KEY_TOMB))
            v = KEY_TOMB;
        /* A tombstone may still carry a stray increment being undone. */
        if (freeslot < 0 && (v == KEY_EMPTY || v == KEY_TOMB) && entry_sum(e) == 0)
            freeslot = (int)j;
        if (v == KEY_EMPTY)
            break;
    }
    if (freeslot < 0)
        freeslot = evict_one(t, h, now);
    if (freeslot < 0 && reap_locked(q) > 0)
        freeslot = evict_one(t, h, now);
    if (freeslot >= 0) {
        atomic_store(&t->e[freeslot].tat, 0);
        atomic_store(&t->e[freeslot].key, h);
        i = freeslot;
    }
out:
    table_unlock(q);
    return i;
}

/* Zero the rows of processes that died.  Table lock held. */
static int reap_locked(mcpgw_quota *q)
{
    struct qtable *t = q->t;
    int reaped = 0;

    if (q->fd < 0)
        return 0;
    for (int p = 0; p < NPROCS; p++) {
        if (p == q->row || atomic_load(&t->procs[p].pid) == 0)
            continue;
        /* Its owner's lock is gone with it: whoever can take it may clear
         * the row.  A process claiming the row at this moment fails to
         * take the lock and moves on to another. */
        if (ofd_lock(q->fd, LOCK_ROW(p), false) < 0)
            continue;
        if (atomic_load(&t->procs[p].pid) != 0) {
            for (int i = 0; i < NKEYS; i++)
                if (atomic_load(&t->e[i].key) != KEY_EMPTY)
                    atomic_store(&t->e[i].n[p], 0);
            atomic_store(&t->procs[p].pid, 0);
            reaped++;
        }
        ofd_unlock(q->fd, LOCK_ROW(p));
    }
    return reaped;
}

int mcpgw__quota_reap(mcpgw_quota *q)
{
    int n;

    table_lock(q);
    n = reap_locked(q);
    table_unlock(q);
    return n;
}

unsigned mcpgw__quota_entries(mcpgw_quota *q)
{
    unsigned n = 0;

    for (int i = 0; i < NKEYS; i++)
        n += atomic_load(&q->t->e[i].key) >= KEY_FIRST;
    return n;
}

/* ---- acquire and release ---------------------------------------------------------- */

int mcpgw__quota_acquire_at(mcpgw_quota *q, const char *key, uint64_t now,
                            struct mcpgw_quota_hold *hold, struct mcpgw_quota_refusal *why)
{
    struct mcpgw_quota_refusal dummy;
    uint64_t h, interval, tau, tat, t;
    unsigned max, burst, rate;
    struct qentry *e;
    bool reaped = false;
    int i;

    if (!q)
        return 0;
    if (!why)
        why = &dummy;
    h = key_hash(q, key);
    max = atomic_load(&q->max_concurrent);
    burst = atomic_load(&q->burst);
    rate = atomic_load(&q->per_second);
    interval = atomic_load(&q->interval_ns);
    for (int tries = 0;; tries++) {
        i = find(q->t, h);
        if (i < 0)
            i = insert(q, h, now);
        if (i < 0 || tries == RETRIES_MAX) {
            *why = (struct mcpgw_quota_refusal){ MCPGW_QUOTA_FULL, NKEYS, 0, 1000 };
            return MCPGW_EBUSY;
        }
        e = &q->t->e[i];
        atomic_fetch_add(&e->n[q->row], 1);
        if (atomic_load(&e->key) == h)
            break;
        atomic_fetch_sub(&e->n[q->row], 1);    /* evicted under us: look again */
        sched_yield();
    }
    while (entry_sum(e) > max) {
        uint64_t due = atomic_load(&q->next_reap);

        /* At the limit: if some of these calls belonged to a process that
         * died, they are not in flight any more. */
        if (reaped || q->fd < 0 || now < due ||
            !atomic_compare_exchange_strong(&q->next_reap, &due, now + REAP_INTERVAL_NS) ||
            mcpgw__quota_reap(q) == 0) {
            atomic_fetch_sub(&e->n[q->row], 1);
            *why = (struct mcpgw_quota_refusal){ MCPGW_QUOTA_CONCURRENCY, max, 0, 1000 };
            return MCPGW_EBUSY;
        }
        reaped = true;
    }
    /* GCRA: a call at now is allowed while the theoretical arrival time is
     * at most tau ahead of now; each call moves it one interval on.  A
     * full allowance (tat <= now) lets burst calls through at once. */
    tau = interval * (burst - 1);
    tat = atomic_load(&e->tat);
    do {
        t = tat > now ? tat : now;
        if (t - now > tau) {
            uint64_t wait = t - now - tau;

            atomic_fetch_sub(&e->n[q->row], 1);
            *why = (struct mcpgw_quota_refusal){
                MCPGW_QUOTA_RATE, rate, burst, (unsigned)((wait + 999999) / 1000000) };
            return MCPGW_EBUSY;
        }
    } while (!atomic_compare_exchange_weak(&e->tat, &tat, t + interval));
    hold->slot = i;
    return 0;
}

int mcpgw_quota_acquire(mcpgw_quota *q, const char *key, struct mcpgw_quota_hold *hold,
                        struct mcpgw_quota_refusal *why)
{
    return q ? mcpgw__quota_acquire_at(q, key, mono_ns(), hold, why) : 0;
}

void mcpgw_quota_release(mcpgw_quota *q, struct mcpgw_quota_hold *hold)
{
    if (!q || !hold || hold->slot < 0)
        return;
    atomic_fetch_sub(&q->t->e[hold->slot].n[q->row], 1);
    hold->slot = -1;
}

const char *mcpgw_quota_describe(const struct mcpgw_quota_refusal *why, const char *key,
                                 char *out, size_t outlen)
{
    switch (why->why) {
    case MCPGW_QUOTA_CONCURRENCY:
        snprintf(out, outlen, "token '%s' has %u calls in flight, its limit "
                 "(gateway.tokenLimits.maxConcurrentCalls)", key, why->limit);
        break;
    case MCPGW_QUOTA_RATE:
        snprintf(out, outlen, "token '%s' is over its rate of %u calls per second with a burst "
                 "of %u (gateway.tokenLimits); retry in %u ms", key, why->limit, why->burst,
                 why->retry_after_ms);
        break;
    default:
        snprintf(out, outlen, "too many tokens are calling at once (%u)", why->limit);
        break;
    }
    return out;
}

unsigned mcpgw_quota_inflight(mcpgw_quota *q, const char *key)
{
    int i;

    if (!q)
        return 0;
    i = find(q->t, key_hash(q, key));
    return i < 0 ? 0 : entry_sum(&q->t->e[i]);
}

/* ---- the table ---------------------------------------------------------------------- */

static bool limits_ok(const struct mcpgw_quota_limits *lim)
{
    return lim && lim->max_concurrent >= 1 && lim->per_second >= 1 && lim->burst >= 1;
}

int mcpgw_quota_set_limits(mcpgw_quota *q, const struct mcpgw_quota_limits *lim)
{
    if (!limits_ok(lim))
        return -EINVAL;
    atomic_store(&q->max_concurrent, lim->max_concurrent);
    atomic_store(&q->burst, lim->burst);
    atomic_store(&q->per_second, lim->per_second);
    atomic_store(&q->interval_ns, UINT64_C(1000000000) / lim->per_second);
    return 0;
}

/* Map <dir>/quota and claim a row.  0, or -errno/MCPGW_ECONFIG with the
 * reason in err. */
static int open_shared(mcpgw_quota *q, const char *dir, char *err, size_t errlen)
{
    char path[4096];
    struct stat st;
    struct qtable *t = MAP_FAILED;
    int fd = -1, rc, start;
    bool locked = false;

    if (snprintf(path, sizeof(path), "%s/quota", dir) >= (int)sizeof(path)) {
        snprintf(err, errlen, "state directory path too long");
        return -ENAMETOOLONG;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(err, errlen, "cannot create '%s': %s", dir, strerror(errno));
        return rc;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return rc;
    }
    if ((rc = ofd_lock(fd, LOCK_TABLE, true)) < 0) {
        snprintf(err, errlen, "cannot lock '%s': %s", path, strerror(-rc));
        goto fail;
    }
    locked = true;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot stat '%s': %s", path, strerror(errno));
        goto fail;
    }
    /* Anyone who may write the table may lift or lower anyone's limits. */
    if (!S_ISREG(st.st_mode) || (st.st_mode & 022) || st.st_uid != geteuid()) {
        rc = MCPGW_ECONFIG;
        snprintf(err, errlen, "'%s' is not a regular file of ours, writable by us alone", path);
        goto fail;
    }
    if (st.st_size == 0 && ftruncate(fd, (off_t)sizeof(*t)) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot size '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (st.st_size != 0 && st.st_size != (off_t)sizeof(*t)) {
        rc = MCPGW_ECONFIG;
        snprintf(err, errlen, "'%s' has another layout (%lld bytes; another version's?)", path,
                 (long long)st.st_size);
        goto fail;
    }
    t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (t == MAP_FAILED) {
        rc = -errno;
        snprintf(err, errlen, "cannot map '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (t->head.magic == 0) {
        t->head.version = TABLE_VERSION;
        t->head.nkeys = NKEYS;
        t->head.nprocs = NPROCS;
        t->head.entry_size = (uint32_t)sizeof(struct qentry);
        t->head.magic = MAGIC;
    } else if (t->head.magic != MAGIC || t->head.version != TABLE_VERSION ||
               t->head.nkeys != NKEYS || t->head.nprocs != NPROCS || t->head.entry_size != sizeof(struct qentry)) {
        rc = MCPGW_ECONFIG;
        snprintf(err, errlen, "'%s' has another layout (another version's?)", path);
        goto fail;
    }
    start = (int)(getpid() % NPROCS);
    for (int k = 0; k < NPROCS; k++) {
        int p = (start + k) % NPROCS;

        if (ofd_lock(fd, LOCK_ROW(p), false) < 0)
            continue;
        /* The row's last owner died without giving it back: its calls
         * ended with it. */
        if (atomic_load(&t->procs[p].pid) != 0)
            for (int i = 0; i < NKEYS; i++)
                if (atomic_load(&t->e[i].key) != KEY_EMPTY)
                    atomic_store(&t->e[i].n[p], 0);
        atomic_store(&t->procs[p].pid, (int32_t)getpid());
        q->row = p;
        q->t = t;
        q->fd = fd;
        ofd_unlock(fd, LOCK_TABLE);
        return 0;
    }
    rc = -EAGAIN;
    snprintf(err, errlen, "all %d process rows of '%s' are taken", NPROCS, path);
fail:
    if (t != MAP_FAILED)
        munmap(t, sizeof(*t));
    if (locked)
        ofd_unlock(fd, LOCK_TABLE);
    close(fd);
    return rc;
}

int mcpgw_quota_new(const char *dir, const char *ns, const struct mcpgw_quota_limits *lim,
                    mcpgw_quota **out, char *err, size_t errlen)
{
    char why[4608] = "";
    mcpgw_quota *q;

    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!limits_ok(lim))
        return -EINVAL;
    if (!(q = calloc(1, sizeof(*q))))
        return -ENOMEM;
    q->fd = -1;
    pthread_mutex_init(&q->lock, NULL);
    mcpgw_quota_set_limits(q, lim);
    ns = ns ? ns : "";
    q->ns_hash = fnv(UINT64_C(0xcbf29ce484222325), ns, strlen(ns) + 1);
    if (dir && open_shared(q, dir, why, sizeof(why)) < 0 && err && errlen)
        snprintf(err, errlen, "per-token limits hold per process: %s", why);
    if (!q->t) {
        /* Untouched pages of an anonymous mapping cost nothing. */
        void *m = mmap(NULL, sizeof(struct qtable), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (m == MAP_FAILED) {
            pthread_mutex_destroy(&q->lock);
            free(q);
            return -ENOMEM;
        }
        q->t = m;
        q->row = 0;
    }
    *out = q;
    return 0;
}

bool mcpgw_quota_shared(const mcpgw_quota *q)
{
    return q && q->fd >= 0;
}

void mcpgw_quota_free(mcpgw_quota *q)
{
    if (!q)
        return;
    if (q->fd >= 0) {
        /* Leave the row clean for the next owner, then let it go. */
        table_lock(q);
        for (int i = 0; i < NKEYS; i++)
            if (atomic_load(&q->t->e[i].key) != KEY_EMPTY)
                atomic_store(&q->t->e[i].n[q->row], 0);
        atomic_store(&q->t->procs[q->row].pid, 0);
        ofd_unlock(q->fd, LOCK_ROW(q->row));
        table_unlock(q);
        close(q->fd);
    }
    munmap(q->t, sizeof(struct qtable));
    pthread_mutex_destroy(&q->lock);
    free(q);
}
