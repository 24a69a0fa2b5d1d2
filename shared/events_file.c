/* events_file.c - the embedded event store: segment files appended under a
 * file lock, read without one.
 *
 * WHY THIS DESIGN.  Every gateway process on a host (mcpgw-wsd, each
 * mcpgw-fcgi that mod_fcgid or lighttpd spawned, the CLI) must publish into
 * one ordered stream without a server to run.  SQLite in WAL mode would do,
 * but it is a new dependency and a general database for what is a log; an
 * append-only file is the whole need, and its failure modes are few enough
 * to state and test:
 *  - Order and uniqueness across processes: an append is made under the
 *    store's lock, a robust process-shared mutex mapped from <dir>/lock,
 *    and the writer reads the id of the last record on disk before
 *    numbering its own, so ids are dense and strictly increasing in file
 *    order whoever writes.  When a holder dies the next locker is told
 *    (EOWNERDEAD) and carries on, so kill -9 can never wedge it; the file
 *    remembers the boot it was made in, so a lock left held by a machine
 *    crash is made afresh.  (flock would survive both too, but it cannot
 *    be waited for with a timeout: polling it with LOCK_NB starved the
 *    sleepers of four busy publishers for over 50 ms.)  Tickets beside the
 *    mutex keep a busy publisher from starving the others (lock_timed).
 *  - A kill -9 mid-write leaves a torn record at the tail.  It has no valid
 *    trailer and CRC, so the next writer, under the lock, finds it (a
 *    writer re-checks the tail whenever the file's size is not where its own
 *    last append ended) and truncates it before appending.  A complete record
 *    is never truncated, so a reader that delivered one never sees its id
 *    reused.  Readers treat an incomplete record as "not yet".
 *  - Publishing must not block a tool call: the lock is waited for at most
 *    MCPGW_EVENTS_PUBLISH_WAIT; a stuck holder (a process stopped while
 *    holding it) costs one such wait, then 1 ms per append until the lock
 *    is got again.  The lock is held for one pwrite of the records of one
 *    append (a publisher with many events at hand appends them at once:
 *    one lock, one size check, one write).
 *  - Retention by count, age and bytes without rewriting: the log is split
 *    into segments of about 1/16 of each limit, and whole old segments are
 *    deleted.  Ids being dense, a segment's count is the next one's base
 *    minus its own; a sealed segment's mtime is when its last event was
 *    written.
 *  - Readers are woken by inotify on the directory (IN_MODIFY from every
 *    append), one watch per process, fanned out to each reader's eventfd by
 *    one thread: a per-reader inotify instance would hit the default limit
 *    of 128 per user long before 1,000 readers.
 *  - No fsync per event: the store survives the death of any or all
 *    processes (the page cache holds what was written); an OS crash may lose
 *    the last moments, which is the trade every log without a per-write
 *    flush makes.  A fresh store numbers from the current time in ms
 *    times 1000, so ids do not go back even if the directory is wiped.
 *
 * LAYOUT of the directory:
 *   lock                        the mapped mutex (flock() serialises making it)
 *   <base id, 20 digits>.seg    segments; the newest is the active one
 *   tmp.<pid>.<n>               a segment being made (renamed into place)
 * A segment is a 32-byte header then records:
 *   header: "MCPGWEV1", base id u64, created ms i64, crc32 of bytes 0..23 u32, 0 u32
 *   record: 0 magic u32 | 4 kind u8, type_len u8, sid_len u8, 0 u8 |
 *           8 json_len u32 | 12 crc32 u32 | 16 id u64 | 24 timestamp ms i64 |
 *           payload: type NUL serverId NUL json NUL |
 *           trailer: record length u32, trailer magic u32
 * little-endian; the CRC covers the payload, then bytes 4..11 and 16..31.
 * The trailer lets a writer read the last record from the end.  A segment
 * ends with a SEAL record (no type, sid or json; id = the next segment's
 * base).  Rotation writes the seal first and then creates the next segment
 * (tmp file + rename), so a missing next segment after a seal always means
 * "not created yet" or "deleted by retention" - never a fork in the chain.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "err.h"
#include "events_file.h"
#include "events_internal.h"
#include "limits.h"
#include "log.h"

#define SEG_MAGIC "MCPGWEV1"
#define SEG_HDR 32u
#define REC_HDR 32u
#define REC_TRL 8u
#define REC_MAGIC 0x52435645u           /* "EVCR" */
#define TRL_MAGIC 0x4c525645u           /* "EVRL" */
#define KIND_EVENT 1
#define KIND_SEAL 2
#define REC_MAX (REC_HDR + 255u + 1 + 255u + 1 + MCPGW_EVENT_BYTES_MAX + 1 + REC_TRL)
/* Segments per retention window: retention keeps at least 15/16 of the
 * count and byte limits, and an event lives at most maxAge + maxAge/16. */
#define SEG_DIVISOR 16
#define SEG_BYTES_CAP (4u * 1024 * 1024)
#define READ_CHUNK (64u * 1024)

static const char comp[] = "events";

/* ---- small pieces ---------------------------------------------------------- */

/* CRC-32 (IEEE), continued from crc (0 to start): zlib's, which reads
 * several bytes per step (a byte-wise table took 8 % of the daemon's CPU
 * at 40,000 events/s). */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n > 0) {
        uInt k = n > UINT_MAX ? UINT_MAX : (uInt)n;

        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;

    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void seg_name(char *out, size_t n, uint64_t base)
{
    snprintf(out, n, "%020" PRIu64 ".seg", base);
}

static bool parse_seg_name(const char *name, uint64_t *base)
{
    size_t len = strlen(name);
    uint64_t v = 0;

    if (len != 24 || strcmp(name + 20, ".seg") != 0)
        return false;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        if (v > (UINT64_MAX - (uint64_t)(name[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *base = v;
    return true;
}

/* A parsed record; pointers into the buffer it was parsed from. */
struct rec {
    int kind;
    uint64_t id;
    int64_t ts;
    const char *type, *sid, *json;
    size_t type_len, sid_len, json_len;
    size_t size;
};

/* Length of the record whose header is at p (REC_HDR bytes), or 0 if the
 * header cannot be one. */
static size_t rec_total(const unsigned char *p)
{
    size_t json_len = get32(p + 8);

    if (get32(p) != REC_MAGIC || (p[4] != KIND_EVENT && p[4] != KIND_SEAL) || p[7] != 0 ||
        json_len > MCPGW_EVENT_BYTES_MAX)
        return 0;
    if (p[4] == KIND_SEAL)
        return p[5] || p[6] || json_len ? 0 : REC_HDR + REC_TRL;
    return REC_HDR + p[5] + 1 + p[6] + 1 + json_len + 1 + REC_TRL;
}

static uint32_t rec_crc(const unsigned char *p, size_t payload_len)
{
    uint32_t crc = crc32_update(0, p + REC_HDR, payload_len);

    crc = crc32_update(crc, p + 4, 8);
    return crc32_update(crc, p + 16, 16);
}

/* Parse the record at p with avail bytes: 1 and *r, 0 if avail is short
 * of it, -1 if it is not a valid record. */
static int rec_parse(const unsigned char *p, size_t avail, struct rec *r)
{
    size_t total, payload;
    const unsigned char *t;

    if (avail < REC_HDR)
        return 0;
    if (!(total = rec_total(p)))
        return -1;
    if (avail < total)
        return 0;
    payload = total - REC_HDR - REC_TRL;
    t = p + total - REC_TRL;
    if (get32(t) != total || get32(t + 4) != TRL_MAGIC || get32(p + 12) != rec_crc(p, payload))
        return -1;
    memset(r, 0, sizeof(*r));
    r->kind = p[4];
    r->id = get64(p + 16);
    r->ts = (int64_t)get64(p + 24);
    r->size = total;
    if (r->kind == KIND_EVENT) {
        const char *q = (const char *)p + REC_HDR;

        r->type_len = p[5];
        r->sid_len = p[6];
        r->json_len = get32(p + 8);
        if (r->type_len == 0 || q[r->type_len] || q[r->type_len + 1 + r->sid_len] ||
            q[r->type_len + r->sid_len + 2 + r->json_len])
            return -1;
        r->type = q;
        r->sid = q + r->type_len + 1;
        r->json = r->sid + r->sid_len + 1;
    }
    return 1;
}

/* A window of one segment file's bytes: [boff, boff + blen) of fd.
 * lazy (readers): once a read found the end of the file, reading past the
 * window is skipped while quiet stays set - the reader clears it when its
 * wake-up fd says something was written since. */
struct cur {
    int fd;
    unsigned char *buf;
    size_t cap;
    uint64_t boff;
    size_t blen;
    bool lazy, quiet;
};

static void cur_release(struct cur *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    c->fd = -1;
    c->buf = NULL;
    c->cap = c->blen = 0;
}

static void cur_set_fd(struct cur *c, int fd)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = fd;
    c->blen = 0;
    c->quiet = false;
}

/* Make [off, off + need) present.  1, 0 (the file is shorter), -errno.
 * Anything not already present is read afresh from off, so bytes of an
 * incomplete record are never trusted from an earlier read. */
static int cur_fill(struct cur *c, uint64_t off, size_t need)
{
    size_t want = need > READ_CHUNK ? need : READ_CHUNK;
    size_t got = 0;
    ssize_t n;

    if (off >= c->boff && off + need <= c->boff + c->blen)
        return 1;
    if (c->quiet && off >= c->boff)
        return 0;                   /* nothing was written since we saw the end */
    if (want > c->cap) {
        unsigned char *nb = realloc(c->buf, want);

        if (!nb)
            return -ENOMEM;
        c->buf = nb;
        c->cap = want;
    }
    c->boff = off;
    c->blen = 0;
    while (got < c->cap) {
        n = pread(c->fd, c->buf + got, c->cap - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) {
            c->quiet = c->lazy;
            break;
        }
        got += (size_t)n;
        if (got >= need)
            break;
    }
    if (got < c->cap)
        c->quiet = c->lazy;         /* a short read: we are at the end */
    c->blen = got;
    return got >= need ? 1 : 0;
}

/* The record at off: 1 and *r (pointers into c->buf, valid until the next
 * cur_ call), 0 if it is not all there yet, -1 if it is not a record,
 * -errno. */
static int cur_record(struct cur *c, uint64_t off, struct rec *r)
{
    size_t total;
    int rc;

    for (int pass = 0; pass < 2; pass++) {
        if ((rc = cur_fill(c, off, REC_HDR)) <= 0)
            goto out;
        total = rec_total(c->buf + (off - c->boff));
        if (total && (rc = cur_fill(c, off, total)) <= 0)
            goto out;
        rc = rec_parse(c->buf + (off - c->boff), c->blen - (size_t)(off - c->boff), r);
        if (rc > 0)
            return 1;
        /* Bytes may have been read in two different preads around a
         * writer's repair of a torn tail: read once more in one go. */
        c->blen = 0;
    }
out:
    if (rc <= 0)
        c->blen = 0;
    return rc;
}

/* Check a segment's header. 0, -1 (not a valid header; short counts). */
static int seg_check_header(struct cur *c, uint64_t base, int64_t *created)
{
    const unsigned char *p;
    int rc = cur_fill(c, 0, SEG_HDR);

    if (rc < 0)
        return rc;
    if (rc == 0)
        return -1;
    p = c->buf;
    if (memcmp(p, SEG_MAGIC, 8) != 0 || get64(p + 8) != base ||
        get32(p + 24) != crc32_update(0, p, 24))
        return -1;
    if (created)
        *created = (int64_t)get64(p + 16);
    return 0;
}

/* The last complete record of the segment in c, of size bytes: sets
 * *end (SEG_HDR when there is none) and, when there is one, *last.
 * Tries the trailer first; if that does not lead to a valid record (a
 * torn tail, or an append in progress when no lock is held), scans from
 * the start.  0, or -errno. */
static int seg_last(struct cur *c, uint64_t size, uint64_t *end, struct rec *last, bool *any)
{
    uint64_t off = SEG_HDR;
    struct rec r;
    int rc;

    *any = false;
    *end = SEG_HDR;
    if (size <= SEG_HDR)
        return 0;
    if (size >= SEG_HDR + REC_HDR + REC_TRL) {
        if ((rc = cur_fill(c, size - REC_TRL, REC_TRL)) < 0)
            return rc;
        if (rc > 0) {
            const unsigned char *t = c->buf + (size - REC_TRL - c->boff);
            uint32_t total = get32(t);

            if (get32(t + 4) == TRL_MAGIC && total >= REC_HDR + REC_TRL &&
                total <= size - SEG_HDR && total <= REC_MAX &&
                (rc = cur_record(c, size - total, &r)) != 0) {
                if (rc < 0 && rc != -1)
                    return rc;
                if (rc > 0 && r.size == total) {
                    *last = r;
                    *any = true;
                    *end = size;
                    return 0;
                }
            }
        }
    }
    for (;;) {
        rc = cur_record(c, off, &r);
        if (rc < -1)
            return rc;
        if (rc <= 0)
            return 0;
        /* Keep what is needed of the last one (the buffer moves on). */
        *last = r;
        last->type = last->sid = last->json = NULL;
        *any = true;
        off += r.size;
        *end = off;
        if (r.kind == KIND_SEAL)
            return 0;
    }
}

/* Segment bases in dirfd, ascending.  0 and *out (malloc'd, n entries),
 * or -errno.  *tmps (if not NULL) says whether tmp files were seen. */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static int list_segments(int dirfd, uint64_t **out, size_t *n, bool *tmps)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    uint64_t *v = NULL, base;
    size_t len = 0, cap = 0;
    struct dirent *de;
    DIR *d;

    *out = NULL;
    *n = 0;
    if (tmps)
        *tmps = false;
    if (fd < 0)
        return -errno;
    if (!(d = fdopendir(fd))) {
        int rc = -errno;

        close(fd);
        return rc;
    }
    while ((de = readdir(d))) {
        if (tmps && strncmp(de->d_name, "tmp.", 4) == 0)
            *tmps = true;
        if (!parse_seg_name(de->d_name, &base))
            continue;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            uint64_t *nv = realloc(v, ncap * sizeof(*v));

            if (!nv) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = nv;
            cap = ncap;
        }
        v[len++] = base;
    }
    closedir(d);
    if (len)
        qsort(v, len, sizeof(*v), cmp_u64);
    *out = v;
    *n = len;
    return 0;
}

static int open_seg(int dirfd, uint64_t base, int flags)
{
    char name[32];

    seg_name(name, sizeof(name), base);
    return openat(dirfd, name, flags | O_CLOEXEC);
}

/* ---- the store ------------------------------------------------------------- */

struct reader_list {
    struct mcpgw__evfile_reader **v;
    size_t n, cap;
};

struct mcpgw__evfile {
    char *dir;
    int dirfd, lockfd;
    struct shared_lock *sl;     /* mapped <dir>/lock */
    uint64_t max_events, max_bytes, seg_events, seg_bytes;
    int64_t max_age, seg_age;

    /* The writer's view, under the store's lock. */
    struct cur w;               /* the active segment (O_RDWR) */
    uint64_t w_base, w_end, w_last;     /* base, valid end, last id (base-1: none) */
    int64_t w_created, w_last_ts;       /* the segment's creation, its last event's time */
    bool w_synced;
    bool stuck;                 /* __atomic: the last lock wait timed out */
    int64_t sweep_due;          /* wall ms: look for expired segments then */
    unsigned tmp_seq;
    struct mcpgw_buf wbuf;      /* the records being appended */

    /* Readers' wake-ups. */
    pthread_mutex_t nmu;
    struct reader_list readers;
    pthread_t thr;
    bool thr_started;
    int ifd, stopfd;
};

struct mcpgw__evfile_reader {
    struct mcpgw__evfile *f;
    int efd;
    int poked;                  /* __atomic: efd was written and not drained since */
    struct cur c;               /* current segment; fd -1 until positioned */
    uint64_t base, off;         /* segment and read position */
    uint64_t next;              /* id expected next */
    char last[MCPGW_EVENT_ID_MAX + 1];  /* the id delivered last (or asked after) */
    bool from_now;              /* positioned lazily: everything from the first segment */
    bool have_after;
    uint64_t after;             /* the id asked after */
    bool reset;                 /* the store was replaced: gap from last, then all */
    bool gap_pending;
    char gap_requested[MCPGW_EVENT_ID_MAX + 1], gap_oldest[24], gap_id[24];
    char type[256], sid[256];
    struct mcpgw_buf scratch;
    int64_t quiet_since;        /* mono ns the reader last found the end, 0: not */
    int64_t last_ts;            /* the stamp (wall ms) of the event given last */
    bool missed_logged;
};

/* The store's lock: a robust, process-shared mutex in <dir>/lock, mapped
 * by every handle.  A timed wait is what makes publishing bounded (flock
 * has no timeout, and polling it starves sleepers under load); robustness
 * is what makes kill -9 of a holder harmless (the next locker gets
 * EOWNERDEAD, and the torn tail it may find is repaired by w_sync).  A
 * mutex left locked by a machine that crashed would wedge the store, so the
 * file records the boot it was made in and is made afresh after a reboot. */
#define LOCK_MAGIC "MCPGWLK3"
#define LOCK_FILE_SIZE (32 * 1024)
#define TURN_STALL_US 500
#define STARVE_US 2000
#define TICKET_RING 4096
#define SPIN_MAX 2000

struct shared_lock {
    char magic[8];
    char boot[40];
    uint32_t ready;             /* __atomic: mutex and boot are set */
    uint32_t next, serving;     /* __atomic: tickets given, ticket whose turn it is */
    uint32_t sleepers;          /* __atomic: waiting on serving in futex_wait */
    uint32_t starving;          /* __atomic: newcomers take tickets too */
    pthread_mutex_t mu;
    uint32_t gave_up[TICKET_RING];      /* ticket + 1 of a waiter that gave up */
};
_Static_assert(sizeof(struct shared_lock) <= LOCK_FILE_SIZE, "lock file too small");


static void boot_id(char *out, size_t n)
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    ssize_t len = fd >= 0 ? read(fd, out, n - 1) : -1;

    if (fd >= 0)
        close(fd);
    if (len < 0)
        len = 0;
    out[len] = 0;
    out[strcspn(out, "\n")] = 0;
}

static bool lock_usable(const struct shared_lock *sl, const char *boot)
{
    return __atomic_load_n(&sl->ready, __ATOMIC_ACQUIRE) &&
           memcmp(sl->magic, LOCK_MAGIC, 8) == 0 && strcmp(sl->boot, boot) == 0;
}

/* Map the lock, making it if it is new or from another boot.  The making
 * is serialised with flock(), which is held only for that. */
static int lock_map(struct mcpgw__evfile *f, char *err, size_t errlen)
{
    struct shared_lock *sl;
    pthread_mutexattr_t a;
    struct stat st;
    char boot[40];
    int rc = 0;

    if ((f->lockfd = openat(f->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0640)) < 0 ||
        fstat(f->lockfd, &st) < 0 ||
        (st.st_size < LOCK_FILE_SIZE && ftruncate(f->lockfd, LOCK_FILE_SIZE) < 0)) {
        rc = -errno;
        snprintf(err, errlen, "cannot open '%s/lock': %s", f->dir, strerror(errno));
        return rc;
    }
    sl = mmap(NULL, LOCK_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->lockfd, 0);
    if (sl == MAP_FAILED) {
        rc = -errno;
        snprintf(err, errlen, "cannot map '%s/lock': %s", f->dir, strerror(errno));
        return rc;
    }
    f->sl = sl;
    boot_id(boot, sizeof(boot));
    if (lock_usable(sl, boot))
        return 0;
    if (flock(f->lockfd, LOCK_EX) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot lock '%s/lock': %s", f->dir, strerror(errno));
        return rc;
    }
    if (!lock_usable(sl, boot)) {
        __atomic_store_n(&sl->ready, 0, __ATOMIC_RELEASE);
        if ((rc = -pthread_mutexattr_init(&a)) == 0) {
            pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
            pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
            rc = -pthread_mutex_init(&sl->mu, &a);
            pthread_mutexattr_destroy(&a);
        }
        if (rc == 0) {
            sl->next = sl->serving = sl->sleepers = sl->starving = 0;
            memset(sl->gave_up, 0, sizeof(sl->gave_up));
            memcpy(sl->magic, LOCK_MAGIC, 8);
            snprintf(sl->boot, sizeof(sl->boot), "%s", boot);
            __atomic_store_n(&sl->ready, 1, __ATOMIC_RELEASE);
        } else {
            snprintf(err, errlen, "cannot make the lock in '%s/lock': %s", f->dir,
                     strerror(-rc));
        }
    }
    flock(f->lockfd, LOCK_UN);
    return rc;
}

static void futex_wait(uint32_t *addr, uint32_t val, int64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };

    syscall(SYS_futex, addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake_all(uint32_t *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* The ticket this thread took for the lock it holds, if it took one (a
 * thread holds at most one store's lock at a time). */
static __thread uint32_t my_ticket;
static __thread bool my_has_ticket;

/* Who gets the lock.  A mutex alone lets a publisher that unlocks and
 * relocks at once win every time: four publishers in tight loops starved
 * a fifth for over 200 ms.  Strict turns instead make every publisher wait
 * for the slowest-scheduled one on a busy machine (7,000 events/s instead
 * of 90,000).  So, as Go's sync.Mutex does: normally a publisher just tries
 * the mutex; one that finds it busy takes a ticket, and tickets take turns
 * in order; a ticket holder that waited longer than STARVE_US puts the lock
 * in "starving" mode, where newcomers take tickets too, until a ticket
 * holder gets the lock quickly again.  The mutex does the excluding (and
 * tells of a holder that died); tickets only order who tries.
 * A waiter that gives up marks its ticket, and whoever moves the turn
 * skips marked tickets; a ticket whose owner died without marking it, or
 * is not on a CPU, holds the line for TURN_STALL_US, then the next waiter
 * skips it (a skipped waiter still goes before any later ticket). */
static void turn_skip_marked(struct shared_lock *sl, uint32_t s)
{
    for (;;) {
        uint32_t *mark = &sl->gave_up[s % TICKET_RING];

        if (__atomic_load_n(mark, __ATOMIC_SEQ_CST) != s + 1 ||
            !__atomic_compare_exchange_n(&sl->serving, &s, s + 1, false, __ATOMIC_SEQ_CST,
                                         __ATOMIC_SEQ_CST))
            break;
        __atomic_store_n(mark, 0, __ATOMIC_SEQ_CST);
        s++;
    }
    if (__atomic_load_n(&sl->sleepers, __ATOMIC_SEQ_CST))
        futex_wake_all(&sl->serving);
}

/* Ticket t's turn is over (it held the lock, or had the turn and gave up). */
static void turn_end(struct shared_lock *sl, uint32_t t)
{
    uint32_t s = t;

    __atomic_compare_exchange_n(&sl->serving, &s, t + 1, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    turn_skip_marked(sl, t + 1);
}

/* Ticket t gives up before its turn came. */
static void turn_give_up(struct shared_lock *sl, uint32_t t)
{
    __atomic_store_n(&sl->gave_up[t % TICKET_RING], t + 1, __ATOMIC_SEQ_CST);
    turn_skip_marked(sl, __atomic_load_n(&sl->serving, __ATOMIC_SEQ_CST));
}

static int lock_timed(struct mcpgw__evfile *f)
{
    struct shared_lock *sl = f->sl;
    /* While the last wait timed out, wait only a little: a lock that is
     * merely busy is got within that, a stuck one costs each event 1 ms. */
    int wait_ms = __atomic_load_n(&f->stuck, __ATOMIC_RELAXED) ? 1 : MCPGW_EVENTS_PUBLISH_WAIT;
    int64_t now, deadline, changed, start;
    uint32_t t = 0, seen;
    struct timespec ts;
    int rc, spins = 0;

    if (!__atomic_load_n(&sl->starving, __ATOMIC_RELAXED)) {
        rc = pthread_mutex_trylock(&sl->mu);
        if (rc == 0 || rc == EOWNERDEAD) {
            my_has_ticket = false;
            goto got;
        }
    }
    start = now = changed = mono_ns();
    deadline = now + (int64_t)wait_ms * 1000000;
    t = __atomic_fetch_add(&sl->next, 1, __ATOMIC_SEQ_CST);
    seen = __atomic_load_n(&sl->serving, __ATOMIC_SEQ_CST);

    for (;;) {
        uint32_t s = __atomic_load_n(&sl->serving, __ATOMIC_SEQ_CST);
        int64_t left;

        if ((int32_t)(t - s) <= 0)
            break;
        now = mono_ns();
        if (s != seen) {
            seen = s;
            changed = now;
        }
        if ((left = deadline - now) <= 0) {
            turn_give_up(sl, t);
            goto timeout;
        }
        if (now - start >= (int64_t)STARVE_US * 1000)
            __atomic_store_n(&sl->starving, 1, __ATOMIC_RELAXED);
        if (now - changed >= (int64_t)TURN_STALL_US * 1000) {
            /* The ticket whose turn it is went quiet: its owner died
             * waiting, or holds the lock and is stopped (then the mutex
             * below makes us wait for it anyway). */
            if (__atomic_compare_exchange_n(&sl->serving, &s, s + 1, false, __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST))
                turn_skip_marked(sl, s + 1);
            changed = now;
            continue;
        }
        /* The holder needs microseconds: if it runs on another CPU, a
         * short spin beats a sleep and a wake-up. */
        if (spins < SPIN_MAX) {
            spins++;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        spins = 0;
        __atomic_add_fetch(&sl->sleepers, 1, __ATOMIC_SEQ_CST);
        futex_wait(&sl->serving, s, left < TURN_STALL_US * 1000 ? left : TURN_STALL_US * 1000);
        __atomic_sub_fetch(&sl->sleepers, 1, __ATOMIC_SEQ_CST);
    }
    /* Our turn: the mutex may still be held by a newcomer that got in
     * first.  Wait in short steps, so that a long wait turns on starving
     * mode (and newcomers queue behind us) before the deadline. */
    while ((rc = pthread_mutex_trylock(&sl->mu)) == EBUSY) {
        int64_t step = deadline - mono_ns();

        if (step > 1000000)
            step = 1000000;
        if (step < 100000)
            step = 100000;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)step;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        rc = pthread_mutex_timedlock(&sl->mu, &ts);
        if (rc != ETIMEDOUT)
            break;
        now = mono_ns();
        if (now >= deadline)
            break;
        if (now - start >= (int64_t)STARVE_US * 1000)
            __atomic_store_n(&sl->starving, 1, __ATOMIC_RELAXED);
    }
    my_ticket = t;
    my_has_ticket = true;
    now = mono_ns();
    if (rc == 0 || rc == EOWNERDEAD)
        __atomic_store_n(&sl->starving, now - start >= (int64_t)STARVE_US * 1000,
                         __ATOMIC_RELAXED);
got:
    if (rc == EOWNERDEAD) {
        mcpgw_log_warn(comp, "a publisher died holding the lock of '%s'; recovering", f->dir);
        pthread_mutex_consistent(&sl->mu);
        f->w_synced = false;        /* look at the tail it may have torn */
        rc = 0;
    }
    if (rc != 0) {
        turn_end(sl, t);
        if (rc == ETIMEDOUT)
            goto timeout;
        return -rc;
    }
    __atomic_store_n(&f->stuck, false, __ATOMIC_RELAXED);
    return 0;
timeout:
    __atomic_store_n(&f->stuck, true, __ATOMIC_RELAXED);
    return MCPGW_EBUSY;
}

static void unlock(struct mcpgw__evfile *f)
{
    pthread_mutex_unlock(&f->sl->mu);
    if (my_has_ticket)
        turn_end(f->sl, my_ticket);
}

/* Make a new segment with this base; the caller holds the lock.  Returns
 * the fd (O_RDWR) or -errno. */
static int seg_create(struct mcpgw__evfile *f, uint64_t base, int64_t created)
{
    char tmp[64], name[32];
    unsigned char h[SEG_HDR];
    int fd, rc;

    snprintf(tmp, sizeof(tmp), "tmp.%ld.%u", (long)getpid(), f->tmp_seq++);
    seg_name(name, sizeof(name), base);
    fd = openat(f->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    memset(h, 0, sizeof(h));
    memcpy(h, SEG_MAGIC, 8);
    put64(h + 8, base);
    put64(h + 16, (uint64_t)created);
    put32(h + 24, crc32_update(0, h, 24));
    if (pwrite(fd, h, SEG_HDR, 0) != (ssize_t)SEG_HDR) {
        rc = errno ? -errno : -EIO;
        goto fail;
    }
    if (renameat(f->dirfd, tmp, f->dirfd, name) < 0) {
        rc = -errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    unlinkat(f->dirfd, tmp, 0);
    return rc;
}

static void w_set(struct mcpgw__evfile *f, int fd, uint64_t base, int64_t created)
{
    cur_set_fd(&f->w, fd);
    f->w_base = base;
    f->w_created = created;
    f->w_end = SEG_HDR;
    f->w_last = base - 1;
    f->w_last_ts = created;
}

/* The writer's segment has size bytes that this handle did not write:
 * find its valid end (truncating a torn tail) and follow seals to the
 * active segment. */
static int w_follow(struct mcpgw__evfile *f, uint64_t size)
{
    struct rec last;
    struct stat st;
    uint64_t end;
    bool any;
    int rc, fd;

    for (;;) {
        f->w.blen = 0;
        if ((rc = seg_last(&f->w, size, &end, &last, &any)) < 0)
            return rc;
        if (end < size) {
            char name[32];

            seg_name(name, sizeof(name), f->w_base);
            mcpgw_log_warn(comp, "truncating a torn record (%" PRIu64 " bytes) at the end of '%s/%s'",
                           size - end, f->dir, name);
            if (ftruncate(f->w.fd, (off_t)end) < 0)
                return -errno;
            f->w.blen = 0;
        }
        f->w_end = end;
        f->w_last = any && last.kind == KIND_EVENT ? last.id : f->w_base - 1;
        f->w_last_ts = any && last.kind == KIND_EVENT ? last.ts : f->w_created;
        if (!any || last.kind != KIND_SEAL)
            return 0;
        /* Sealed: the active segment is the next one (made now if the
         * sealing writer died before making it). */
        fd = open_seg(f->dirfd, last.id, O_RDWR);
        if (fd < 0 && errno != ENOENT)
            return -errno;
        if (fd < 0) {
            if ((fd = seg_create(f, last.id, mcpgw__events_now_ms())) < 0)
                return fd;
        }
        w_set(f, fd, last.id, 0);
        if (seg_check_header(&f->w, last.id, &f->w_created) != 0) {
            mcpgw_log_error(comp, "segment %" PRIu64 " in '%s' has a bad header", last.id, f->dir);
            return -EIO;
        }
        if (fstat(fd, &st) < 0)
            return -errno;
        size = (uint64_t)st.st_size;
    }
}

/* Start from the directory: the newest segment, or a new store. */
static int w_from_dir(struct mcpgw__evfile *f)
{
    uint64_t *bases, base;
    size_t n;
    struct stat st;
    int fd, rc;

    f->w_synced = false;
    cur_set_fd(&f->w, -1);
    if ((rc = list_segments(f->dirfd, &bases, &n, NULL)) < 0)
        return rc;
    if (n == 0) {
        int64_t now = mcpgw__events_now_ms();

        free(bases);
        base = (uint64_t)now * 1000;
        if ((fd = seg_create(f, base, now)) < 0)
            return fd;
        w_set(f, fd, base, now);
        f->w_synced = true;
        return 0;
    }
    base = bases[n - 1];
    free(bases);
    if ((fd = open_seg(f->dirfd, base, O_RDWR)) < 0)
        return -errno;
    w_set(f, fd, base, 0);
    if ((rc = seg_check_header(&f->w, base, &f->w_created)) != 0) {
        char name[32], aside[48];

        if (rc < -1)
            return rc;
        /* Not ours or damaged: keep it for a person to look at, and go on
         * with a new segment numbered after it and after now. */
        seg_name(name, sizeof(name), base);
        snprintf(aside, sizeof(aside), "%s.corrupt", name);
        mcpgw_log_error(comp, "segment '%s/%s' has a bad header; moved aside to '%s'",
                        f->dir, name, aside);
        cur_set_fd(&f->w, -1);
        if (renameat(f->dirfd, name, f->dirfd, aside) < 0)
            return -errno;
        {
            int64_t now = mcpgw__events_now_ms();
            uint64_t nb = (uint64_t)now * 1000 > base + 1 ? (uint64_t)now * 1000 : base + 1;

            if ((fd = seg_create(f, nb, now)) < 0)
                return fd;
            w_set(f, fd, nb, now);
        }
        f->w_synced = true;
        return 0;
    }
    if (fstat(fd, &st) < 0)
        return -errno;
    if ((rc = w_follow(f, (uint64_t)st.st_size)) < 0)
        return rc;
    f->w_synced = true;
    return 0;
}

/* Under the lock: make the writer's view match the disk. */
static int w_sync(struct mcpgw__evfile *f)
{
    struct stat st;
    int rc;

    if (!f->w_synced || f->w.fd < 0)
        return w_from_dir(f);
    if (fstat(f->w.fd, &st) < 0)
        return -errno;
    if (st.st_nlink == 0)
        return w_from_dir(f);       /* the directory was emptied under us */
    if ((uint64_t)st.st_size == f->w_end)
        return 0;
    if ((rc = w_follow(f, (uint64_t)st.st_size)) < 0)
        f->w_synced = false;
    return rc;
}

/* Delete the oldest sealed segments while keeping them would break a
 * limit once the active segment holds reserve_count events and
 * reserve_bytes bytes, or while they are older than maxAge.  Also
 * removes tmp files that a writer killed mid-rotation left (any tmp file
 * is stale while we hold the lock). */
/* Segments a sweep chose to delete: unlinked after the lock is given back,
 * since an unlink can wait on the filesystem's journal (on ext4 with
 * -o discard, for a long time) and other publishers must not. */
#define DOOMED_MAX 64
struct doomed {
    uint64_t base[DOOMED_MAX];
    size_t n;
};

static void doomed_unlink(struct mcpgw__evfile *f, struct doomed *d)
{
    char name[32];

    for (size_t i = 0; i < d->n; i++) {
        seg_name(name, sizeof(name), d->base[i]);
        if (unlinkat(f->dirfd, name, 0) < 0 && errno != ENOENT)
            mcpgw_log_warn(comp, "cannot delete '%s/%s': %s", f->dir, name, strerror(errno));
    }
    d->n = 0;
}

static bool doomed_has(const struct doomed *d, uint64_t base)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->base[i] == base)
            return true;
    return false;
}

static void w_sweep(struct mcpgw__evfile *f, int64_t now, uint64_t reserve_count,
                    uint64_t reserve_bytes, struct doomed *d)
{
    uint64_t *bases, count, bytes = 0;
    size_t n, i, first = 0;
    int64_t *mtimes = NULL;
    uint64_t *sizes = NULL;
    bool tmps;
    char name[32];
    struct stat st;

    f->sweep_due = now + f->seg_age;
    if (list_segments(f->dirfd, &bases, &n, &tmps) < 0)
        return;
    if (tmps) {
        int fd = openat(f->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;

        if (!dir && fd >= 0)
            close(fd);
        while (dir && (de = readdir(dir)))
            if (strncmp(de->d_name, "tmp.", 4) == 0)
                unlinkat(f->dirfd, de->d_name, 0);
        if (dir)
            closedir(dir);
    }
    /* Only segments before the active one are candidates. */
    while (n && bases[n - 1] > f->w_base)
        n--;
    if (n <= 1 || bases[n - 1] != f->w_base)
        goto out;
    n--;                            /* n sealed segments: bases[0..n-1] */
    /* An earlier sweep of the same append (one that rotated more than
     * once) may have doomed the oldest already: they are as good as gone. */
    while (first < n && doomed_has(d, bases[first]))
        first++;
    if (first == n)
        goto out;
    mtimes = calloc(n, sizeof(*mtimes));
    sizes = calloc(n, sizeof(*sizes));
    if (!mtimes || !sizes)
        goto out;
    for (i = first; i < n; i++) {
        seg_name(name, sizeof(name), bases[i]);
        if (fstatat(f->dirfd, name, &st, 0) < 0) {
            sizes[i] = 0;
            mtimes[i] = now;
            continue;
        }
        sizes[i] = (uint64_t)st.st_size;
        mtimes[i] = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        bytes += sizes[i];
    }
    count = f->w_base - bases[first];
    for (i = first; i < n; i++) {
        if (count + reserve_count <= f->max_events && bytes + reserve_bytes <= f->max_bytes &&
            mtimes[i] + f->max_age > now) {
            if (mtimes[i] + f->max_age < f->sweep_due)
                f->sweep_due = mtimes[i] + f->max_age;
            break;
        }
        if (d->n == DOOMED_MAX) {
            f->sweep_due = now;     /* the rest on the next publish */
            break;
        }
        d->base[d->n++] = bases[i];
        count -= (i + 1 < n ? bases[i + 1] : f->w_base) - bases[i];
        bytes -= sizes[i];
    }
out:
    free(bases);
    free(mtimes);
    free(sizes);
}

static void rec_seal(unsigned char *p, uint64_t next, int64_t ts)
{
    memset(p, 0, REC_HDR);
    put32(p, REC_MAGIC);
    p[4] = KIND_SEAL;
    put64(p + 16, next);
    put64(p + 24, (uint64_t)ts);
    put32(p + 12, rec_crc(p, 0));
    put32(p + REC_HDR, REC_HDR + REC_TRL);
    put32(p + REC_HDR + 4, TRL_MAGIC);
}

static int pwrite_all(int fd, const unsigned char *p, size_t n, uint64_t off)
{
    size_t done = 0;
    ssize_t w;

    while (done < n) {
        w = pwrite(fd, p + done, n - done, (off_t)(off + done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        done += (size_t)w;
    }
    return 0;
}

/* Seal the active segment and start the next; the caller holds the lock. */
static int w_rotate(struct mcpgw__evfile *f, int64_t now, size_t need, struct doomed *d)
{
    unsigned char seal[REC_HDR + REC_TRL];
    uint64_t next = f->w_last + 1;
    int fd, rc;

    rec_seal(seal, next, now);
    if ((rc = pwrite_all(f->w.fd, seal, sizeof(seal), f->w_end)) < 0) {
        if (ftruncate(f->w.fd, (off_t)f->w_end) < 0)
            f->w_synced = false;
        return rc;
    }
    f->w_end += sizeof(seal);
    /* Retention by age looks at a sealed segment's mtime: make it the time
     * of its last event, not of the seal written at the next publish. */
    {
        struct timespec times[2] = { { 0, UTIME_OMIT },
                                     { f->w_last_ts / 1000, (f->w_last_ts % 1000) * 1000000L } };

        if (futimens(f->w.fd, times) < 0)
            mcpgw_log_debug(comp, "cannot set a segment's time: %s", strerror(errno));
    }
    if ((fd = seg_create(f, next, now)) < 0) {
        /* Sealed but not continued: the next writer makes it. */
        f->w_synced = false;
        return fd;
    }
    w_set(f, fd, next, now);
    w_sweep(f, now, f->seg_events, (need > f->seg_bytes ? need : f->seg_bytes) + SEG_HDR, d);
    return 0;
}

/* Bytes the record of e takes, or 0 when it cannot be stored. */
static size_t rec_size(const struct mcpgw__evrec *e)
{
    size_t tl = strlen(e->type), sl = e->server_id ? strlen(e->server_id) : 0;

    if (tl == 0 || tl > 255 || sl > 255 || e->json_len > MCPGW_EVENT_BYTES_MAX)
        return 0;
    return REC_HDR + tl + 1 + sl + 1 + e->json_len + 1 + REC_TRL;
}

/* e's record, numbered id, at p (rec_size(e) bytes). */
static void rec_build(unsigned char *p, size_t total, const struct mcpgw__evrec *e, uint64_t id)
{
    size_t tl = strlen(e->type), sl = e->server_id ? strlen(e->server_id) : 0;
    uint32_t crc;

    memset(p, 0, REC_HDR);
    put32(p, REC_MAGIC);
    p[4] = KIND_EVENT;
    p[5] = (unsigned char)tl;
    p[6] = (unsigned char)sl;
    put32(p + 8, (uint32_t)e->json_len);
    put64(p + 16, id);
    put64(p + 24, (uint64_t)e->ts);
    memcpy(p + REC_HDR, e->type, tl + 1);
    if (sl)
        memcpy(p + REC_HDR + tl + 1, e->server_id, sl);
    p[REC_HDR + tl + 1 + sl] = 0;
    memcpy(p + REC_HDR + tl + sl + 2, e->json, e->json_len);
    p[REC_HDR + tl + sl + 2 + e->json_len] = 0;
    put32(p + total - REC_TRL, (uint32_t)total);
    put32(p + total - REC_TRL + 4, TRL_MAGIC);
    crc = crc32_update(0, p + REC_HDR, total - REC_HDR - REC_TRL);
    crc = crc32_update(crc, p + 4, 8);
    put32(p + 12, crc32_update(crc, p + 16, 16));
}

/* Whether the active segment is full before one more record of total bytes
 * stamped ts; the caller holds the lock. */
static bool w_full(const struct mcpgw__evfile *f, size_t total, int64_t ts)
{
    uint64_t count = f->w_last + 1 - f->w_base;

    return count > 0 && (count >= f->seg_events || f->w_end - SEG_HDR + total > f->seg_bytes ||
                         ts - f->w_created >= f->seg_age);
}

int mcpgw__evfile_append_many(struct mcpgw__evfile *f, const struct mcpgw__evrec *e, size_t n,
                              size_t *done, uint64_t *last_id)
{
    struct doomed doomed = { .n = 0 };
    size_t i = 0;
    int rc;

    *done = 0;
    for (size_t k = 0; k < n; k++)
        if (!rec_size(&e[k]))
            return MCPGW_ETOOBIG;
    if (n == 0)
        return 0;
    if ((rc = lock_timed(f)) < 0)
        return rc;
    if ((rc = w_sync(f)) < 0)
        goto out;
    /* Records go out in runs, one pwrite each: a run ends where the active
     * segment must rotate, or at MCPGW_EVENTS_WRITE_BATCH bytes. */
    while (i < n) {
        size_t first = i, total;

        mcpgw_buf_reset(&f->wbuf);
        if (w_full(f, rec_size(&e[i]), e[i].ts)) {
            if ((rc = w_rotate(f, e[i].ts, rec_size(&e[i]), &doomed)) < 0)
                goto out;
        } else if (e[i].ts >= f->sweep_due) {
            w_sweep(f, e[i].ts, f->seg_events, f->seg_bytes + SEG_HDR, &doomed);
        }
        while (i < n) {
            uint64_t at = f->w_end + f->wbuf.len, id = f->w_last + 1 + (i - first);
            unsigned char *p;

            total = rec_size(&e[i]);
            if (i > first && (f->wbuf.len + total > MCPGW_EVENTS_WRITE_BATCH ||
                              id - f->w_base >= f->seg_events ||
                              at - SEG_HDR + total > f->seg_bytes ||
                              e[i].ts - f->w_created >= f->seg_age))
                break;
            if ((rc = mcpgw_buf_reserve(&f->wbuf, total)) < 0)
                goto out;
            p = (unsigned char *)f->wbuf.ptr + f->wbuf.len;
            rec_build(p, total, &e[i], id);
            f->wbuf.len += total;
            i++;
        }
        if ((rc = pwrite_all(f->w.fd, (unsigned char *)f->wbuf.ptr, f->wbuf.len, f->w_end)) < 0) {
            /* Leave no partial record behind us (ENOSPC, EIO). */
            if (ftruncate(f->w.fd, (off_t)f->w_end) < 0)
                f->w_synced = false;
            goto out;
        }
        f->w_end += f->wbuf.len;
        f->w_last += i - first;
        f->w_last_ts = e[i - 1].ts;
        *done = i;
        if (last_id)
            *last_id = f->w_last;
    }
out:
    unlock(f);
    doomed_unlink(f, &doomed);
    return rc;
}

int mcpgw__evfile_lock(struct mcpgw__evfile *f)
{
    return lock_timed(f);
}

void mcpgw__evfile_unlock(struct mcpgw__evfile *f)
{
    unlock(f);
}

void mcpgw__evfile_forget(struct mcpgw__evfile *f)
{
    if (lock_timed(f) < 0)
        return;
    f->w_synced = false;
    cur_set_fd(&f->w, -1);
    unlock(f);
}

int mcpgw__evfile_bounds(struct mcpgw__evfile *f, uint64_t *oldest, uint64_t *newest)
{
    uint64_t *bases;
    size_t n;
    int rc;

    *oldest = *newest = 0;
    if ((rc = lock_timed(f)) < 0)
        return rc;
    if ((rc = w_sync(f)) < 0)
        goto out;
    if ((rc = list_segments(f->dirfd, &bases, &n, NULL)) < 0)
        goto out;
    if (n && f->w_last >= bases[0]) {
        *oldest = bases[0];
        *newest = f->w_last;
    }
    free(bases);
out:
    unlock(f);
    return rc;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int mcpgw__evfile_open(const struct mcpgw_conf_events *c, struct mcpgw__evfile **out,
                       char *err, size_t errlen)
{
    struct mcpgw__evfile *f;
    int rc;

    *out = NULL;
    if (!c->dir || c->dir[0] != '/') {
        snprintf(err, errlen, "events.dir must be an absolute path");
        return MCPGW_ECONFIG;
    }
    if (!(f = calloc(1, sizeof(*f))))
        return -ENOMEM;
    f->dirfd = f->lockfd = f->ifd = f->stopfd = -1;
    f->w.fd = -1;
    pthread_mutex_init(&f->nmu, NULL);
    f->max_events = c->max_events > 0 ? (uint64_t)c->max_events : MCPGW_EVENTS_COUNT_DEFAULT;
    f->max_bytes = c->max_bytes > 0 ? c->max_bytes : MCPGW_EVENTS_BYTES_DEFAULT;
    f->max_age = c->max_age_ms > 0 ? c->max_age_ms : MCPGW_EVENTS_AGE_DEFAULT;
    f->seg_events = f->max_events / SEG_DIVISOR ? f->max_events / SEG_DIVISOR : 1;
    f->seg_bytes = f->max_bytes / SEG_DIVISOR < SEG_BYTES_CAP ? f->max_bytes / SEG_DIVISOR
                                                              : SEG_BYTES_CAP;
    f->seg_age = f->max_age / SEG_DIVISOR ? f->max_age / SEG_DIVISOR : 1;
    mcpgw_buf_init(&f->wbuf, MCPGW_EVENTS_WRITE_BATCH + REC_MAX);
    if (!(f->dir = strdup(c->dir))) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = mkdir_p(f->dir, 0750)) < 0) {
        snprintf(err, errlen, "cannot create '%s': %s", f->dir, strerror(-rc));
        goto fail;
    }
    if ((f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open '%s': %s", f->dir, strerror(errno));
        goto fail;
    }
    if ((rc = lock_map(f, err, errlen)) < 0)
        goto fail;
    /* Make sure a store exists so readers have a segment to open; if the
     * lock is busy a publisher will do it. */
    if (lock_timed(f) == 0) {
        rc = w_sync(f);
        unlock(f);
        if (rc < 0) {
            snprintf(err, errlen, "cannot use the event store in '%s': %s", f->dir,
                     mcpgw_strerror(rc));
            goto fail;
        }
    }
    f->stuck = false;
    *out = f;
    return 0;
fail:
    mcpgw__evfile_close(f);
    return rc;
}

void mcpgw__evfile_close(struct mcpgw__evfile *f)
{
    if (!f)
        return;
    if (f->thr_started) {
        uint64_t one = 1;

        if (write(f->stopfd, &one, sizeof(one)) < 0)
            mcpgw_log_error(comp, "cannot stop the readers' thread: %s", strerror(errno));
        pthread_join(f->thr, NULL);
    }
    if (f->ifd >= 0)
        close(f->ifd);
    if (f->stopfd >= 0)
        close(f->stopfd);
    cur_release(&f->w);
    if (f->sl)
        munmap(f->sl, LOCK_FILE_SIZE);
    if (f->lockfd >= 0)
        close(f->lockfd);
    if (f->dirfd >= 0)
        close(f->dirfd);
    free(f->readers.v);
    mcpgw_buf_release(&f->wbuf);
    free(f->dir);
    pthread_mutex_destroy(&f->nmu);
    free(f);
}

/* ---- readers' wake-ups ------------------------------------------------------ */

static void poke_readers(struct mcpgw__evfile *f)
{
    uint64_t one = 1;

    pthread_mutex_lock(&f->nmu);
    for (size_t i = 0; i < f->readers.n; i++) {
        struct mcpgw__evfile_reader *r = f->readers.v[i];

        /* One wake-up is enough until the reader has taken it. */
        if (__atomic_exchange_n(&r->poked, 1, __ATOMIC_SEQ_CST))
            continue;
        if (write(r->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            mcpgw_log_debug(comp, "cannot wake a reader: %s", strerror(errno));
    }
    pthread_mutex_unlock(&f->nmu);
}

static void *notifier(void *arg)
{
    struct mcpgw__evfile *f = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    for (;;) {
        struct pollfd p[2] = { { .fd = f->stopfd, .events = POLLIN },
                               { .fd = f->ifd, .events = POLLIN } };
        /* Without inotify (instances exhausted) readers are woken on a
         * short timer instead: slower, never silent. */
        int n = poll(p, f->ifd >= 0 ? 2 : 1, f->ifd >= 0 ? -1 : 20);

        if (n < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            break;
        if (f->ifd >= 0 && p[1].revents) {
            while (read(f->ifd, buf, sizeof(buf)) > 0)
                ;
        }
        poke_readers(f);
    }
    return NULL;
}

/* Register r for wake-ups, starting the thread with the first reader. */
static int readers_add(struct mcpgw__evfile *f, struct mcpgw__evfile_reader *r)
{
    int rc = 0;

    pthread_mutex_lock(&f->nmu);
    if (!f->thr_started) {
        if ((f->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
            rc = -errno;
            goto out;
        }
        f->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (f->ifd < 0 ||
            inotify_add_watch(f->ifd, f->dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO |
                              IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
            mcpgw_log_warn(comp, "cannot watch '%s' (%s): readers poll every 20 ms", f->dir,
                           strerror(errno));
            if (f->ifd >= 0)
                close(f->ifd);
            f->ifd = -1;
        }
        if ((rc = -pthread_create(&f->thr, NULL, notifier, f)) < 0) {
            close(f->stopfd);
            f->stopfd = -1;
            if (f->ifd >= 0)
                close(f->ifd);
            f->ifd = -1;
            goto out;
        }
        f->thr_started = true;
    }
    if (f->readers.n == f->readers.cap) {
        size_t ncap = f->readers.cap ? f->readers.cap * 2 : 16;
        struct mcpgw__evfile_reader **nv = realloc(f->readers.v, ncap * sizeof(*nv));

        if (!nv) {
            rc = -ENOMEM;
            goto out;
        }
        f->readers.v = nv;
        f->readers.cap = ncap;
    }
    f->readers.v[f->readers.n++] = r;
out:
    pthread_mutex_unlock(&f->nmu);
    return rc;
}

static void readers_del(struct mcpgw__evfile *f, struct mcpgw__evfile_reader *r)
{
    pthread_mutex_lock(&f->nmu);
    for (size_t i = 0; i < f->readers.n; i++) {
        if (f->readers.v[i] == r) {
            f->readers.v[i] = f->readers.v[--f->readers.n];
            break;
        }
    }
    pthread_mutex_unlock(&f->nmu);
}

/* ---- readers ---------------------------------------------------------------- */

static void r_open_at(struct mcpgw__evfile_reader *r, int fd, uint64_t base, uint64_t off)
{
    cur_set_fd(&r->c, fd);
    r->base = base;
    r->off = off;
}

static void r_gap(struct mcpgw__evfile_reader *r, uint64_t oldest)
{
    r->gap_pending = true;
    snprintf(r->gap_requested, sizeof(r->gap_requested), "%s", r->last);
    mcpgw__events_u64(r->gap_oldest, oldest);
    mcpgw__events_u64(r->gap_id, oldest - 1);
}

/* The last id in the store and where the newest segment's data ends, read
 * without the lock.  *fd gets the newest segment opened, or -1 if there
 * is no segment. */
static int r_newest(struct mcpgw__evfile_reader *r, uint64_t *newest, uint64_t *end,
                    uint64_t *base, bool *sealed)
{
    uint64_t *bases;
    size_t n;
    struct stat st;
    struct rec last;
    bool any;
    int rc, fd;

    *sealed = false;
    if ((rc = list_segments(r->f->dirfd, &bases, &n, NULL)) < 0)
        return rc;
    if (n == 0) {
        free(bases);
        r_open_at(r, -1, 0, 0);
        return 0;
    }
    *base = bases[n - 1];
    free(bases);
    if ((fd = open_seg(r->f->dirfd, *base, O_RDONLY)) < 0)
        return errno == ENOENT ? -EAGAIN : -errno;
    r_open_at(r, fd, *base, SEG_HDR);
    if (fstat(fd, &st) < 0)
        return -errno;
    if ((rc = seg_last(&r->c, (uint64_t)st.st_size, end, &last, &any)) < 0)
        return rc;
    *newest = *base - 1;
    if (any && last.kind == KIND_EVENT)
        *newest = last.id;
    if (any && last.kind == KIND_SEAL) {
        *sealed = true;
        *newest = last.id - 1;
        *end -= REC_HDR + REC_TRL;      /* stand on the seal: it leads on */
    }
    return 1;
}

/* Position a reader that is not yet positioned.  1 positioned, 0 nothing
 * to position on yet (no segment), -errno. */
static int r_position(struct mcpgw__evfile_reader *r)
{
    uint64_t newest = 0, end = 0, base = 0, *bases;
    size_t n, i;
    bool sealed;
    int rc, fd;

    for (int tries = 0; tries < 8; tries++) {
        rc = r_newest(r, &newest, &end, &base, &sealed);
        if (rc == -EAGAIN)
            continue;               /* the newest was deleted as we looked */
        if (rc <= 0)
            return rc;
        if (!r->have_after && !r->from_now) {
            /* From now: stand at the end. */
            r->off = end;
            r->next = newest + 1;
            mcpgw__events_u64(r->last, newest);
            return 1;
        }
        if ((rc = list_segments(r->f->dirfd, &bases, &n, NULL)) < 0)
            return rc;
        if (n == 0) {
            free(bases);
            continue;
        }
        if (r->from_now) {
            /* The store was empty when we opened: all of it is new. */
            base = bases[0];
            free(bases);
            if ((fd = open_seg(r->f->dirfd, base, O_RDONLY)) < 0)
                continue;
            r_open_at(r, fd, base, SEG_HDR);
            r->next = base;
            mcpgw__events_u64(r->last, base - 1);
            return 1;
        }
        if (r->after > newest) {
            /* An id this store never gave (a wiped store, another
             * deployment, a forged header): everything it holds is new
             * to the client, after a gap that says so. */
            base = bases[0];
            free(bases);
            if ((fd = open_seg(r->f->dirfd, base, O_RDONLY)) < 0)
                continue;
            r_open_at(r, fd, base, SEG_HDR);
            if (!r->reset)
                mcpgw__events_u64(r->last, r->after);
            r->reset = false;
            r_gap(r, base);
            r->next = base;
            snprintf(r->last, sizeof(r->last), "%s", r->gap_id);
            return 1;
        }
        /* The segment holding after + 1, or the oldest (then the first
         * record's id shows the gap). */
        for (i = n; i > 1 && bases[i - 1] > r->after + 1; i--)
            ;
        base = bases[i - 1];
        free(bases);
        if ((fd = open_seg(r->f->dirfd, base, O_RDONLY)) < 0)
            continue;               /* deleted by retention meanwhile */
        r_open_at(r, fd, base, SEG_HDR);
        r->next = r->after + 1;
        mcpgw__events_u64(r->last, r->after);
        return 1;
    }
    return -EAGAIN;
}

/* After a seal: move to the segment with base next; if it is gone, to the
 * oldest one after it.  1 moved, 0 not there yet, -errno. */
static int r_next_segment(struct mcpgw__evfile_reader *r, uint64_t next)
{
    uint64_t *bases;
    size_t n, i;
    int fd, rc;

    for (int tries = 0; tries < 8; tries++) {
        if ((fd = open_seg(r->f->dirfd, next, O_RDONLY)) >= 0) {
            r_open_at(r, fd, next, SEG_HDR);
            return 1;
        }
        if (errno != ENOENT)
            return -errno;
        if ((rc = list_segments(r->f->dirfd, &bases, &n, NULL)) < 0)
            return rc;
        for (i = 0; i < n && bases[i] <= r->base; i++)
            ;
        if (i == n) {
            free(bases);
            return 0;               /* the sealing writer has not made it yet */
        }
        next = bases[i];
        free(bases);
    }
    return -EAGAIN;
}

/* Is there a segment newer than the reader's?  (Then an invalid record is
 * damage, not a tail being written.) */
static bool r_superseded(struct mcpgw__evfile_reader *r, uint64_t *newer)
{
    uint64_t *bases;
    size_t n, i;
    bool yes = false;

    if (list_segments(r->f->dirfd, &bases, &n, NULL) < 0)
        return false;
    for (i = 0; i < n; i++) {
        if (bases[i] > r->base) {
            *newer = bases[i];
            yes = true;
            break;
        }
    }
    free(bases);
    return yes;
}

static int r_try(struct mcpgw__evfile_reader *r, struct mcpgw_event *e)
{
    struct rec rec;
    struct stat st;
    bool was_quiet;
    int rc;

    if (r->c.fd < 0 && (rc = r_position(r)) <= 0)
        return rc;
    for (;;) {
        if (r->gap_pending) {
            r->gap_pending = false;
            r->last_ts = mcpgw__events_now_ms();
            rc = mcpgw__events_gap(e, &r->scratch, r->gap_id, r->gap_requested, r->gap_oldest);
            if (rc < 0)
                return rc;
            return 1;
        }
        was_quiet = r->c.quiet;
        rc = cur_record(&r->c, r->off, &rec);
        if (rc < -1)
            return rc;
        if (rc == -1) {
            uint64_t newer;
            char name[32];

            if (!r_superseded(r, &newer))
                return 0;           /* a torn tail a writer will repair */
            seg_name(name, sizeof(name), r->base);
            mcpgw_log_error(comp, "damaged record at offset %" PRIu64 " of '%s/%s': skipping "
                            "to the next segment", r->off, r->f->dir, name);
            if ((rc = r_next_segment(r, newer)) <= 0)
                return rc;
            continue;
        }
        if (rc == 0) {
            /* Nothing more here.  If the file is gone and unsealed, the
             * directory was emptied: start over on what is there now. */
            if (was_quiet)
                return 0;           /* nothing happened since we last looked */
            if (fstat(r->c.fd, &st) < 0)
                return -errno;
            if (st.st_nlink > 0)
                return 0;
            /* A seal written just before retention deleted the file
             * would be there now. */
            r->c.quiet = false;
            if ((rc = cur_record(&r->c, r->off, &rec)) != 0)
                continue;
            r->from_now = false;
            r->have_after = true;
            r->after = UINT64_MAX - 1;     /* "never given": gap, then all */
            r->reset = true;
            cur_set_fd(&r->c, -1);
            if ((rc = r_position(r)) <= 0)
                return rc;
            continue;
        }
        if (rec.kind == KIND_SEAL) {
            if ((rc = r_next_segment(r, rec.id)) <= 0)
                return rc;
            continue;
        }
        if (rec.id < r->next) {
            r->off += rec.size;
            continue;
        }
        if (rec.id > r->next) {
            /* Retention deleted what came between. */
            r_gap(r, rec.id);
            r->next = rec.id;
            snprintf(r->last, sizeof(r->last), "%s", r->gap_id);
            continue;
        }
        memcpy(r->type, rec.type, rec.type_len + 1);
        memcpy(r->sid, rec.sid, rec.sid_len + 1);
        mcpgw__events_u64(e->id, rec.id);
        e->type = r->type;
        e->json = rec.json;
        e->json_len = rec.json_len;
        e->server_id = rec.sid_len ? r->sid : NULL;
        e->is_tool_event = mcpgw__events_is_tool_type(r->type);
        r->off += rec.size;
        r->next = rec.id + 1;
        r->last_ts = rec.ts;
        snprintf(r->last, sizeof(r->last), "%s", e->id);
        return 1;
    }
}

/* No wake-up since the reader found the end: past MCPGW_EVENTS_RECHECK_MS,
 * read the file anyway.  What this finds was mostly stored moments ago,
 * its wake-up on the way (the notifier thread is a thread like any other;
 * under valgrind it is late by seconds).  An event stored half a recheck
 * interval ago or more means a wake-up late enough to look into, or lost:
 * said once per reader. */
static int r_recheck(struct mcpgw__evfile_reader *r, struct mcpgw_event *e)
{
    int64_t now = mono_ns(), waited;
    int rc;

    if (!r->quiet_since) {
        r->quiet_since = now;
        return 0;
    }
    if (now - r->quiet_since < (int64_t)MCPGW_EVENTS_RECHECK_MS * 1000000)
        return 0;
    r->quiet_since = now;
    r->c.quiet = false;
    rc = r_try(r, e);
    if (rc <= 0)
        return rc;
    r->quiet_since = 0;
    waited = mcpgw__events_now_ms() - r->last_ts;
    if (!r->missed_logged && waited >= MCPGW_EVENTS_RECHECK_MS / 2) {
        r->missed_logged = true;
        mcpgw_log_warn(comp, "a reader of '%s' found event %s, stored %" PRId64 " ms ago, "
                       "without a wake-up: reading on a %d ms timer", r->f->dir, e->id,
                       waited, MCPGW_EVENTS_RECHECK_MS);
    }
    return rc;
}

int mcpgw__evfile_read(struct mcpgw__evfile_reader *r, struct mcpgw_event *e, int timeout_ms)
{
    int64_t deadline = timeout_ms > 0 ? mono_ns() + (int64_t)timeout_ms * 1000000 : 0;
    uint64_t junk;
    int rc;

    for (;;) {
        if ((rc = r_try(r, e)) != 0) {
            r->quiet_since = 0;
            return rc;
        }
        /* Drain, then look again, so an append after the look still
         * wakes the poll below.  A wake-up means the files may have grown:
         * read past what was the end. */
        __atomic_store_n(&r->poked, 0, __ATOMIC_SEQ_CST);
        if (read(r->efd, &junk, sizeof(junk)) > 0) {
            r->c.quiet = false;
            r->quiet_since = 0;
            if ((rc = r_try(r, e)) != 0)
                return rc;
        } else if (errno != EAGAIN && errno != EINTR) {
            return -errno;
        } else if (r->c.quiet && (rc = r_recheck(r, e)) != 0) {
            return rc;
        }
        if (timeout_ms == 0)
            return 0;
        {
            struct pollfd p = { .fd = r->efd, .events = POLLIN };
            int wait = -1;

            if (timeout_ms > 0) {
                int64_t left = deadline - mono_ns();

                if (left <= 0)
                    return 0;
                wait = (int)((left + 999999) / 1000000);
            }
            if (wait < 0 || wait > MCPGW_EVENTS_RECHECK_MS)
                wait = MCPGW_EVENTS_RECHECK_MS;     /* r_recheck's turn */
            if (poll(&p, 1, wait) < 0 && errno != EINTR)
                return -errno;
        }
    }
}

int mcpgw__evfile_reader_open(struct mcpgw__evfile *f, const char *last_id,
                              struct mcpgw__evfile_reader **out)
{
    struct mcpgw__evfile_reader *r;
    int rc;

    *out = NULL;
    if (!(r = calloc(1, sizeof(*r))))
        return -ENOMEM;
    r->f = f;
    r->c.fd = -1;
    r->c.lazy = true;
    mcpgw_buf_init(&r->scratch, 1024);
    if ((r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rc = -errno;
        free(r);
        return rc;
    }
    if (last_id && last_id[0]) {
        if (!mcpgw__events_parse_u64(last_id, strlen(last_id), &r->after) ||
            r->after == UINT64_MAX) {
            rc = -EINVAL;
            goto fail;
        }
        r->have_after = true;
    }
    /* Watch before looking: whatever is appended after the look wakes us. */
    if ((rc = readers_add(f, r)) < 0)
        goto fail_noreg;
    rc = r_position(r);
    if (rc < 0)
        goto fail;
    if (rc == 0 && !r->have_after)
        r->from_now = true;         /* no segment yet: everything will be new */
    *out = r;
    return 0;
fail:
    readers_del(f, r);
fail_noreg:
    cur_release(&r->c);
    close(r->efd);
    mcpgw_buf_release(&r->scratch);
    free(r);
    return rc;
}

void mcpgw__evfile_reader_close(struct mcpgw__evfile_reader *r)
{
    if (!r)
        return;
    readers_del(r->f, r);
    cur_release(&r->c);
    close(r->efd);
    mcpgw_buf_release(&r->scratch);
    free(r);
}

int mcpgw__evfile_reader_fd(const struct mcpgw__evfile_reader *r)
{
    return r->efd;
}
