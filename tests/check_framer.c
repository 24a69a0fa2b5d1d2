/* check_framer.c - newline framing: every split point, bounds, oddities. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framer.h"

/* Three messages with the awkward parts real servers send: a raw U+2028
 * inside a string (not a line break), CRLF, an empty line. */
static const char stream[] =
    "{\"id\":1,\"t\":\"a\xe2\x80\xa8" "b\"}\n"
    "{\"id\":2}\r\n"
    "\n"
    "{\"id\":3,\"x\":\"\\n\"}\n";
static const char *const want[] = {
    "{\"id\":1,\"t\":\"a\xe2\x80\xa8" "b\"}", "{\"id\":2}", "{\"id\":3,\"x\":\"\\n\"}"
};

static int drain(struct mcpgw__framer *f, char got[][64], int n)
{
    char *line;
    size_t len;
    int kind;

    while ((kind = mcpgw__framer_next(f, &line, &len)) != MCPGW__FRAME_NONE) {
        ck_assert_int_eq(kind, MCPGW__FRAME_LINE);
        ck_assert_uint_lt(len, 64);
        ck_assert_uint_eq(strlen(line), len);
        memcpy(got[n++], line, len + 1);
    }
    return n;
}

/* Split the stream into two writes at byte _i. */
START_TEST(every_split_point)
{
    struct mcpgw__framer f;
    char got[8][64];
    int n = 0;
    size_t split = (size_t)_i;

    mcpgw__framer_init(&f, 1024);
    ck_assert_int_eq(mcpgw__framer_feed(&f, stream, split), 0);
    n = drain(&f, got, n);
    ck_assert_int_eq(mcpgw__framer_feed(&f, stream + split, sizeof(stream) - 1 - split), 0);
    n = drain(&f, got, n);
    ck_assert_int_eq(n, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(got[i], want[i]);
    ck_assert_uint_eq(mcpgw__framer_pending(&f), 0);
    mcpgw__framer_release(&f);
}
END_TEST

START_TEST(one_byte_at_a_time)
{
    struct mcpgw__framer f;
    char got[8][64];
    int n = 0;

    mcpgw__framer_init(&f, 1024);
    for (size_t i = 0; i < sizeof(stream) - 1; i++) {
        ck_assert_int_eq(mcpgw__framer_feed(&f, stream + i, 1), 0);
        n = drain(&f, got, n);
    }
    ck_assert_int_eq(n, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(got[i], want[i]);
    mcpgw__framer_release(&f);
}
END_TEST

/* An over-long line is dropped without being held in memory, its tail kept
 * for id recovery, and the next line comes through intact. */
START_TEST(oversized_line_is_skipped_and_reported)
{
    struct mcpgw__framer f;
    char chunk[1000], *line;
    size_t len;
    const char *end = "xxxx\",\"jsonrpc\":\"2.0\",\"id\":42}\n{\"id\":7}\n";

    memset(chunk, 'x', sizeof(chunk));
    mcpgw__framer_init(&f, 4096);
    ck_assert_int_eq(mcpgw__framer_feed(&f, "{\"result\":\"", 11), 0);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(mcpgw__framer_feed(&f, chunk, sizeof(chunk)), 0);
        while (mcpgw__framer_next(&f, &line, &len) != MCPGW__FRAME_NONE)
            ck_abort_msg("no line expected yet");
        ck_assert_uint_le(f.cap, 4096 + 1 + 64 * 1024);
    }
    ck_assert_int_eq(mcpgw__framer_feed(&f, end, strlen(end)), 0);
    ck_assert_int_eq(mcpgw__framer_next(&f, &line, &len), MCPGW__FRAME_OVERSIZE);
    ck_assert_uint_eq(mcpgw__framer_skipped(&f), 11 + 100 * 1000 + 30);
    ck_assert_uint_le(len, MCPGW__FRAMER_TAIL);
    ck_assert(len >= 8 && memcmp(line + len - 8, "\"id\":42}", 8) == 0);
    ck_assert_int_eq(mcpgw__framer_next(&f, &line, &len), MCPGW__FRAME_LINE);
    ck_assert_str_eq(line, "{\"id\":7}");
    ck_assert_int_eq(mcpgw__framer_next(&f, &line, &len), MCPGW__FRAME_NONE);
    mcpgw__framer_release(&f);
}
END_TEST

/* A line of exactly max bytes passes; max+1 does not. */
START_TEST(limit_is_exact)
{
    struct mcpgw__framer f;
    char buf[102], *line;
    size_t len;

    mcpgw__framer_init(&f, 100);
    memset(buf, 'a', 100);
    buf[100] = '\n';
    ck_assert_int_eq(mcpgw__framer_feed(&f, buf, 101), 0);
    ck_assert_int_eq(mcpgw__framer_next(&f, &line, &len), MCPGW__FRAME_LINE);
    ck_assert_uint_eq(len, 100);
    memset(buf, 'b', 101);
    buf[101] = '\n';
    ck_assert_int_eq(mcpgw__framer_feed(&f, buf, 102), 0);
    ck_assert_int_eq(mcpgw__framer_next(&f, &line, &len), MCPGW__FRAME_OVERSIZE);
    ck_assert_uint_eq(mcpgw__framer_skipped(&f), 101);
    mcpgw__framer_release(&f);
}
END_TEST

START_TEST(reads_from_a_pipe)
{
    struct mcpgw__framer f;
    int fds[2];
    char *line;
    size_t len;

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(write(fds[1], "{\"a\":1}\n{\"b\"", 12), 12);
    mcpgw__framer_init(&f, 1024);
    ck_assert_int_eq(mcpgw__framer_read(&f, fds[0]), 12);
    ck_assert_int_eq(mcpgw__framer_next(&f, &line, &len), MCPGW__FRAME_LINE);
    ck_assert_str_eq(line, "{\"a\":1}");
    ck_assert_int_eq(mcpgw__framer_next(&f, &line, &len), MCPGW__FRAME_NONE);
    ck_assert_uint_eq(mcpgw__framer_pending(&f), 4);
    close(fds[1]);
    ck_assert_int_eq(mcpgw__framer_read(&f, fds[0]), 0);
    close(fds[0]);
    mcpgw__framer_release(&f);
}
END_TEST

/* Many small lines in one big read: all come out, in order. */
START_TEST(many_lines_in_one_chunk)
{
    struct mcpgw__framer f;
    char buf[64], *line;
    size_t len;
    int next = 0;

    mcpgw__framer_init(&f, 1 << 20);
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(buf, sizeof(buf), "{\"id\":%d}\n", i);

        ck_assert_int_eq(mcpgw__framer_feed(&f, buf, (size_t)n), 0);
        if (i % 1000 == 999) {
            while (mcpgw__framer_next(&f, &line, &len) == MCPGW__FRAME_LINE) {
                snprintf(buf, sizeof(buf), "{\"id\":%d}", next++);
                ck_assert_str_eq(line, buf);
            }
        }
    }
    ck_assert_int_eq(next, 100000);
    mcpgw__framer_release(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("framer");
    TCase *tc = tcase_create("framer");
    SRunner *sr;
    int failed;

    tcase_add_loop_test(tc, every_split_point, 0, (int)sizeof(stream));
    tcase_add_test(tc, one_byte_at_a_time);
    tcase_add_test(tc, oversized_line_is_skipped_and_reported);
    tcase_add_test(tc, limit_is_exact);
    tcase_add_test(tc, reads_from_a_pipe);
    tcase_add_test(tc, many_lines_in_one_chunk);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
