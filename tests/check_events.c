/* check_events.c - the event stream on the embedded store.
 *
 * The common suite (events_suite.h) on a fresh store directory per test,
 * plus what only the file store has: a torn record left by a writer killed
 * mid-write is truncated by the next writer and never read; a segment
 * sealed by a writer that died before making the next one is continued;
 * a stuck lock costs one bounded wait, then drops at once, then recovers;
 * the store outlives every handle; retention by bytes and by age; a
 * directory emptied under running readers and writers starts over with a
 * gap; a directory that cannot be made is a clear error.
 */
#include "config.h"

static const char *backend_name = "file";

#include "events_suite.h"
#include "events_file.h"
#include "events_internal.h"

#include <dirent.h>
#include <poll.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/file.h>
#include <sys/stat.h>

static char tmpdir[256];

static void backend_keys(char *out, size_t n)
{
    snprintf(out, n, "\"dir\":\"%s/ev\"", tmpdir);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mcpgw-events-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The newest segment file (the active one) into path. */
static void active_segment(char *path, size_t n)
{
    char dir[300], best[64] = "";
    DIR *d;
    struct dirent *de;

    snprintf(dir, sizeof(dir), "%s/ev", tmpdir);
    ck_assert_ptr_nonnull(d = opendir(dir));
    while ((de = readdir(d)))
        if (strlen(de->d_name) == 24 && strstr(de->d_name, ".seg") && strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", de->d_name);
    closedir(d);
    ck_assert(best[0]);
    snprintf(path, n, "%s/%s", dir, best);
}

static uint64_t seg_bytes_total(int *nseg)
{
    char dir[300], path[600];
    DIR *d;
    struct dirent *de;
    struct stat st;
    uint64_t total = 0;

    *nseg = 0;
    snprintf(dir, sizeof(dir), "%s/ev", tmpdir);
    ck_assert_ptr_nonnull(d = opendir(dir));
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, ".seg"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        ck_assert_int_eq(stat(path, &st), 0);
        total += (uint64_t)st.st_size;
        (*nseg)++;
    }
    closedir(d);
    return total;
}

static void append_raw(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_APPEND);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

/* The record format of events_file.c, written independently here. */
static uint32_t crc32_ieee(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? 0xedb88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

static void le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

START_TEST(torn_record_is_truncated_by_the_next_writer)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char id[MCPGW_EVENT_ID_MAX + 1], id2[MCPGW_EVENT_ID_MAX + 1], seg[700];
    unsigned char torn[32 + 20];
    uint64_t last;
    struct stat before, after;

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    pub(ev, "client", "t", 0, id);
    must_read(r, &e, 2000);
    /* What a writer killed mid-write leaves: a header promising 500 bytes
     * of JSON and only some of them. */
    memset(torn, 'j', sizeof(torn));
    memcpy(torn, "EVCR", 4);
    torn[4] = 1;
    torn[5] = 6;
    torn[6] = 0;
    torn[7] = 0;
    le32(torn + 8, 500);
    le32(torn + 12, 0x12345678);
    ck_assert(mcpgw__events_parse_u64(id, strlen(id), &last));
    le64(torn + 16, last + 1);
    active_segment(seg, sizeof(seg));
    ck_assert_int_eq(stat(seg, &before), 0);
    append_raw(seg, torn, sizeof(torn));
    /* Readers see nothing of it. */
    ck_assert_int_eq(mcpgw_events_read(r, &e, 100), 0);
    /* The next writer (here a fresh handle, as a new process) repairs it. */
    {
        mcpgw_events *other = ev_open("");

        pub(other, "client", "after", 1, id2);
        mcpgw_events_close(other);
    }
    {
        uint64_t a, b;

        ck_assert(mcpgw__events_parse_u64(id, strlen(id), &a));
        ck_assert(mcpgw__events_parse_u64(id2, strlen(id2), &b));
        ck_assert_uint_eq(b, a + 1);        /* the torn one never got an id */
    }
    ck_assert_int_eq(stat(seg, &after), 0);
    ck_assert_int_gt(after.st_size, before.st_size);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, id2);
    {
        json_object *o = event_json(&e);

        ck_assert_str_eq(jstr(o, "data", "src"), "after");
        json_object_put(o);
    }
    /* The same handle that wrote before the damage also carries on. */
    pub(ev, "client", "again", 2, id);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, id);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

/* A writer sealed the active segment and died before making the next one:
 * readers wait at the seal, the next writer makes the segment, and the
 * stream goes on without a gap. */
START_TEST(sealed_segment_without_a_successor_is_continued)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char id[MCPGW_EVENT_ID_MAX + 1], id2[MCPGW_EVENT_ID_MAX + 1], seg[700], seg2[700];
    unsigned char seal[40];
    uint64_t last, next;
    uint32_t crc;

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    pub(ev, "client", "t", 0, id);
    must_read(r, &e, 2000);
    ck_assert(mcpgw__events_parse_u64(id, strlen(id), &last));
    memset(seal, 0, sizeof(seal));
    memcpy(seal, "EVCR", 4);
    seal[4] = 2;
    le64(seal + 16, last + 1);
    le64(seal + 24, 1764118923000);
    crc = crc32_ieee(0, seal + 4, 8);
    le32(seal + 12, crc32_ieee(crc, seal + 16, 16));
    le32(seal + 32, 40);
    memcpy(seal + 36, "EVRL", 4);
    active_segment(seg, sizeof(seg));
    append_raw(seg, seal, sizeof(seal));
    ck_assert_int_eq(mcpgw_events_read(r, &e, 100), 0);
    {
        mcpgw_events *other = ev_open("");

        pub(other, "client", "next", 1, id2);
        mcpgw_events_close(other);
    }
    ck_assert(mcpgw__events_parse_u64(id2, strlen(id2), &next));
    ck_assert_uint_eq(next, last + 1);
    active_segment(seg2, sizeof(seg2));
    ck_assert_str_ne(seg, seg2);            /* it went into a new segment */
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, id2);
    pub(ev, "client", "more", 2, id);       /* the old handle follows the seal too */
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, id);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

START_TEST(stuck_lock_costs_one_bounded_wait)
{
    mcpgw_events *ev = ev_open("");
    struct mcpgw_events_stats st;
    char lockpath[300], id[MCPGW_EVENT_ID_MAX + 1], c;
    int ready[2], status;
    int64_t t0, t1, t2;
    pid_t pid;

    snprintf(lockpath, sizeof(lockpath), "%s/ev", tmpdir);
    ck_assert_int_eq(pipe(ready), 0);
    pid = fork();                           /* no thread runs here yet */
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* A process that holds the lock and never lets go (stopped). */
        struct mcpgw_conf_events ec = { .dir = lockpath, .max_events = 1000,
                                       .max_bytes = MCPGW_EVENTS_BYTES_DEFAULT,
                                       .max_age_ms = 60000 };
        struct mcpgw__evfile *f;
        char err[200];

        if (mcpgw__evfile_open(&ec, &f, err, sizeof(err)) < 0 || mcpgw__evfile_lock(f) < 0)
            _exit(2);
        if (write(ready[1], "x", 1) != 1)
            _exit(2);
        for (;;)
            pause();
    }
    close(ready[1]);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    t0 = now_ms();
    pub(ev, "tool_call", "stuck", 0, id);
    t1 = now_ms();
    ck_assert_str_eq(id, "");
    ck_assert_int_ge(t1 - t0, MCPGW_EVENTS_PUBLISH_WAIT - 5);
    ck_assert_int_lt(t1 - t0, MCPGW_EVENTS_PUBLISH_WAIT + 500);
    /* While it stays stuck, events are dropped without waiting. */
    for (int i = 0; i < 20; i++)
        pub(ev, "tool_call", "stuck", i, id);
    t2 = now_ms();
    ck_assert_int_lt(t2 - t1, 200);
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_eq(st.dropped, 21);
    /* It dies holding the lock: the next publisher is told and goes on. */
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    pub(ev, "tool_call", "free", 0, id);
    ck_assert(id[0]);
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_eq(st.published, 1);
    mcpgw_events_close(ev);
}
END_TEST

/* Take the reader's wake-up away from it, as if inotify had lost it. */
static void steal_wakeup(mcpgw_events_reader *r)
{
    struct pollfd p = { .fd = mcpgw_events_reader_fd(r), .events = POLLIN };
    uint64_t junk;

    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    ck_assert_int_eq(read(p.fd, &junk, sizeof(junk)), (ssize_t)sizeof(junk));
}

/* A lost wake-up delays an event by about MCPGW_EVENTS_RECHECK_MS, not
 * until the next one: for a reader that waits in read() and for one that
 * polls with read(..., 0) as the event-stream route does. */
START_TEST(lost_wakeup_costs_one_recheck_interval)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    json_object *o;
    int64_t t0;
    int rc = 0;

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    pub(ev, "tool_progress", "A", 0, NULL);
    must_read(r, &e, 5000);
    ck_assert_int_eq(mcpgw_events_read(r, &e, 0), 0);      /* at the end now */

    pub(ev, "tool_progress", "B", 1, NULL);
    steal_wakeup(r);
    ck_assert_int_eq(mcpgw_events_read(r, &e, 0), 0);      /* it does not know yet */
    must_read(r, &e, 5 * MCPGW_EVENTS_RECHECK_MS);
    o = event_json(&e);
    ck_assert_str_eq(jstr(o, "data", "src"), "B");
    json_object_put(o);

    ck_assert_int_eq(mcpgw_events_read(r, &e, 0), 0);
    pub(ev, "tool_progress", "C", 2, NULL);
    steal_wakeup(r);
    t0 = now_ms();
    while (now_ms() - t0 < 5 * MCPGW_EVENTS_RECHECK_MS &&
           (rc = mcpgw_events_read(r, &e, 0)) == 0)
        usleep(20000);
    ck_assert_int_eq(rc, 1);
    o = event_json(&e);
    ck_assert_str_eq(jstr(o, "data", "src"), "C");
    json_object_put(o);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

START_TEST(store_outlives_every_handle)
{
    char ids[3][MCPGW_EVENT_ID_MAX + 1], id[MCPGW_EVENT_ID_MAX + 1];
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    struct mcpgw_event e;

    for (int i = 0; i < 3; i++)
        pub(ev, "client", "old", i, ids[i]);
    mcpgw_events_close(ev);                 /* every process is gone */
    ev = ev_open("");
    ck_assert_int_eq(mcpgw_events_reader_open(ev, ids[0], &r), 0);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, ids[1]);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, ids[2]);
    pub(ev, "client", "new", 3, id);
    ck_assert_int_gt(mcpgw_events_id_cmp(ev, id, ids[2]), 0);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, id);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

START_TEST(retention_by_bytes_keeps_the_store_under_its_size)
{
    mcpgw_events *ev = ev_open("\"maxBytes\":65536");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    json_object *d = json_object_new_object();
    char text[1000], first[MCPGW_EVENT_ID_MAX + 1], oldest[MCPGW_EVENT_ID_MAX + 1];
    int nseg, n = 0;
    uint64_t total;

    memset(text, 'b', sizeof(text) - 1);
    text[sizeof(text) - 1] = 0;
    json_object_object_add(d, "text", json_object_new_string(text));
    ck_assert_int_eq(mcpgw_events_publish(ev, "client", d, first), 0);
    for (int i = 0; i < 400; i++) {
        ck_assert_int_eq(mcpgw_events_publish(ev, "client", d, NULL), 0);
        total = seg_bytes_total(&nseg);
        ck_assert_msg(total <= 65536, "store is %" PRIu64 " bytes after %d events", total, i);
    }
    ck_assert_int_le(nseg, 33);            /* whole segments of ~1/16 of the budget */
    ck_assert_int_eq(mcpgw_events_reader_open(ev, first, &r), 0);
    must_read(r, &e, 2000);
    check_gap(ev, &e, first, oldest);
    while (mcpgw_events_read(r, &e, 100) == 1)
        n++;
    /* Most of the budget holds events (each ~1.1 KiB). */
    ck_assert_int_ge(n, 45);
    json_object_put(d);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

START_TEST(retention_by_age_drops_old_segments)
{
    mcpgw_events *ev = ev_open("\"maxAgeMs\":1000");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char first[MCPGW_EVENT_ID_MAX + 1], late[MCPGW_EVENT_ID_MAX + 1];
    char oldest[MCPGW_EVENT_ID_MAX + 1];

    pub(ev, "client", "old", 0, first);
    for (int i = 1; i < 5; i++)
        pub(ev, "client", "old", i, NULL);
    /* Age is the condition here: let it pass. */
    usleep(1100 * 1000);
    pub(ev, "client", "late", 0, late);
    ck_assert_int_eq(mcpgw_events_reader_open(ev, first, &r), 0);
    must_read(r, &e, 2000);
    check_gap(ev, &e, first, oldest);
    ck_assert_str_eq(oldest, late);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, late);
    ck_assert_int_eq(mcpgw_events_read(r, &e, 50), 0);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

/* One append that rotates the active segment again and again (1,000
 * events, segments of 10): each rotation's sweep must not count or doom
 * again what an earlier sweep of the same append doomed, so retention
 * holds as soon as the doomed files are gone - here after one more
 * publish, since one append deletes at most DOOMED_MAX segments. */
START_TEST(one_append_across_many_rotations_keeps_retention)
{
    enum { N = 1000 };
    mcpgw_events *ev = ev_open("\"maxEvents\":160");
    struct mcpgw__evrec *rec = calloc(N, sizeof(*rec));
    char (*text)[64] = calloc(N, sizeof(*text));
    char first[MCPGW_EVENT_ID_MAX + 1], oldest[MCPGW_EVENT_ID_MAX + 1];
    struct mcpgw_events_stats st;
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    int nseg, n = 0;

    pub(ev, "client", "first", 0, first);
    for (int i = 0; i < N; i++) {
        rec[i].type = "client";
        rec[i].json = text[i];
        rec[i].json_len = (size_t)snprintf(text[i], sizeof(text[i]),
                                           "{\"type\":\"client\",\"timestamp\":1,\"data\":{\"n\":%d}}",
                                           i);
        rec[i].ts = mcpgw__events_now_ms();     /* wall clock, as publishers stamp */
    }
    mcpgw__events_store(ev, rec, N);
    pub(ev, "client", "last", 0, NULL);
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_eq(st.published, N + 2);
    ck_assert_uint_eq(st.dropped, 0);
    seg_bytes_total(&nseg);
    ck_assert_int_le(nseg, 17);            /* 16 sealed at most, and the active one */
    ck_assert_int_eq(mcpgw_events_reader_open(ev, first, &r), 0);
    must_read(r, &e, 2000);
    check_gap(ev, &e, first, oldest);
    while (mcpgw_events_read(r, &e, 100) == 1)
        n++;
    ck_assert_msg(n >= 150 && n <= 170, "%d events after the gap; store %s..%s, %d segments",
                  n, st.oldest, st.newest, nseg);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
    free(rec);
    free(text);
}
END_TEST

static int unlink_segments(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (flag == FTW_F && strstr(path, ".seg"))
        return unlink(path);
    return 0;
}

START_TEST(emptied_directory_starts_over_with_a_gap)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char id[MCPGW_EVENT_ID_MAX + 1], seen[MCPGW_EVENT_ID_MAX + 1], oldest[MCPGW_EVENT_ID_MAX + 1];
    char n1[MCPGW_EVENT_ID_MAX + 1], n2[MCPGW_EVENT_ID_MAX + 1];

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    for (int i = 0; i < 3; i++)
        pub(ev, "client", "old", i, id);
    for (int i = 0; i < 3; i++)
        must_read(r, &e, 2000);
    snprintf(seen, sizeof(seen), "%s", e.id);
    /* Someone cleans up the state directory while everything runs. */
    ck_assert_int_eq(nftw(tmpdir, unlink_segments, 16, FTW_PHYS), 0);
    usleep(1000);                           /* the new store numbers from a later µs */
    pub(ev, "client", "new", 0, n1);
    pub(ev, "client", "new", 1, n2);
    ck_assert_int_gt(mcpgw_events_id_cmp(ev, n1, seen), 0);
    must_read(r, &e, 2000);
    check_gap(ev, &e, seen, oldest);
    ck_assert_str_eq(oldest, n1);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, n1);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, n2);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

START_TEST(unusable_directory_is_a_clear_error)
{
    char file[300], keys[400], json[1024], err[512];
    struct mcpgw_conf *conf;
    mcpgw_events *ev = NULL;
    int fd;

    snprintf(file, sizeof(file), "%s/plainfile", tmpdir);
    ck_assert_int_ge(fd = open(file, O_CREAT | O_WRONLY, 0600), 0);
    close(fd);
    snprintf(keys, sizeof(keys), "\"dir\":\"%s/sub/ev\"", file);
    snprintf(json, sizeof(json), "{\"gateway\":{\"events\":{%s}}}", keys);
    ck_assert_int_eq(mcpgw_conf_parse(json, strlen(json), "t.json", "/tmp", &conf, err,
                                      sizeof(err)), 0);
    ck_assert_int_eq(mcpgw_events_open(conf, &ev, err, sizeof(err)), -ENOTDIR);
    ck_assert_ptr_null(ev);
    ck_assert_msg(strstr(err, "plainfile/sub/ev") && strstr(err, "cannot create"),
                  "message: %s", err);
    mcpgw_conf_free(conf);
}
END_TEST

int main(int argc, char **argv)
{
    Suite *s;
    TCase *tc;
    const char *b = getenv("top_builddir");
    SRunner *sr;
    int failed;

    if (argc > 1 && strcmp(argv[1], "--publisher") == 0)
        return publisher_main(argc, argv);
    s = suite_create("events");
    tc = tcase_create("file");
    snprintf(fake_mcp, sizeof(fake_mcp), "%s/tests/fake_mcp", b ? b : ".");
    signal(SIGPIPE, SIG_IGN);
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    add_common_tests(tc);
    tcase_add_test(tc, torn_record_is_truncated_by_the_next_writer);
    tcase_add_test(tc, sealed_segment_without_a_successor_is_continued);
    tcase_add_test(tc, stuck_lock_costs_one_bounded_wait);
    tcase_add_test(tc, store_outlives_every_handle);
    tcase_add_test(tc, lost_wakeup_costs_one_recheck_interval);
    tcase_add_test(tc, retention_by_bytes_keeps_the_store_under_its_size);
    tcase_add_test(tc, retention_by_age_drops_old_segments);
    tcase_add_test(tc, one_append_across_many_rotations_keeps_retention);
    tcase_add_test(tc, emptied_directory_starts_over_with_a_gap);
    tcase_add_test(tc, unusable_directory_is_a_clear_error);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
