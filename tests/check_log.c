/* check_log.c - one line per event, in the documented shape. */
#include "config.h"

#include <check.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "limits.h"
#include "log.h"

static char dir[sizeof("/tmp/check_log.XXXXXX")];
static char path[256];

static void setup(void)
{
    /* mkdtemp fills in the template: start from a fresh one each time, or
     * the second test of a CK_FORK=no run (valgrind) has no XXXXXX left. */
    memcpy(dir, "/tmp/check_log.XXXXXX", sizeof(dir));
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sub/gateway.log", dir);
}

static void teardown(void)
{
    char cmd[300];

    mcpgw_log_close();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *slurp(void)
{
    static char buf[65536];
    FILE *f = fopen(path, "r");
    size_t n;

    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

START_TEST(line_has_time_level_component_message)
{
    regex_t re;
    char *text;

    ck_assert_int_eq(mcpgw_log_open(path, MCPGW_LOG_INFO, false, 0), 0);
    mcpgw_log_info("websocket", "client '%s' connected", "c1");
    text = slurp();
    ck_assert_int_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\."
                             "[0-9]{3}Z INFO  websocket: client 'c1' connected\n$",
                             REG_EXTENDED), 0);
    ck_assert_msg(regexec(&re, text, 0, NULL, 0) == 0, "got: %s", text);
    regfree(&re);
}
END_TEST

START_TEST(level_filters)
{
    ck_assert_int_eq(mcpgw_log_open(path, MCPGW_LOG_WARN, false, 0), 0);
    mcpgw_log_info("dispatch", "hidden");
    mcpgw_log_debug("dispatch", "hidden too");
    mcpgw_log_warn("dispatch", "shown");
    ck_assert_ptr_null(strstr(slurp(), "hidden"));
    ck_assert_ptr_nonnull(strstr(slurp(), "shown"));
}
END_TEST

/* A newline inside a message (a server's stderr, say) must not forge a
 * second log line. */
START_TEST(control_characters_cannot_split_a_line)
{
    char *text;

    ck_assert_int_eq(mcpgw_log_open(path, MCPGW_LOG_INFO, false, 0), 0);
    mcpgw_log_info("server:x", "evil\n2026-01-01T00:00:00.000Z ERROR forged\r");
    text = slurp();
    ck_assert_int_eq((int)(strchr(text, '\n') - text), (int)strlen(text) - 1);
}
END_TEST

START_TEST(long_messages_are_cut)
{
    char *big = malloc(MCPGW_LOG_LINE_MAX * 2);
    char *text;

    memset(big, 'a', MCPGW_LOG_LINE_MAX * 2 - 1);
    big[MCPGW_LOG_LINE_MAX * 2 - 1] = '\0';
    ck_assert_int_eq(mcpgw_log_open(path, MCPGW_LOG_INFO, false, 0), 0);
    mcpgw_log_info("sse", "%s", big);
    text = slurp();
    ck_assert_uint_le(strlen(text), MCPGW_LOG_LINE_MAX);
    ck_assert_ptr_nonnull(strstr(text, "[...]\n"));
    free(big);
}
END_TEST

START_TEST(file_mode_and_levels_parse)
{
    struct stat st;

    ck_assert_int_eq(mcpgw_log_open(path, MCPGW_LOG_INFO, false, 0), 0);
    mcpgw_log_info("fcgi", "x");
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    ck_assert_int_eq(mcpgw_log_level_parse("debug"), MCPGW_LOG_DEBUG);
    ck_assert_int_eq(mcpgw_log_level_parse("error"), MCPGW_LOG_ERROR);
    ck_assert_int_eq(mcpgw_log_level_parse("loud"), -1);
    ck_assert_int_eq(mcpgw_log_level_parse(NULL), -1);
}
END_TEST

START_TEST(reopen_follows_rotation)
{
    char rotated[300];

    ck_assert_int_eq(mcpgw_log_open(path, MCPGW_LOG_INFO, false, 0), 0);
    mcpgw_log_info("fcgi", "before");
    snprintf(rotated, sizeof(rotated), "%s.1", path);
    ck_assert_int_eq(rename(path, rotated), 0);
    ck_assert_int_eq(mcpgw_log_reopen(), 0);
    mcpgw_log_info("fcgi", "after");
    ck_assert_ptr_null(strstr(slurp(), "before"));
    ck_assert_ptr_nonnull(strstr(slurp(), "after"));
}
END_TEST

START_TEST(unwritable_path_is_an_error)
{
    ck_assert_int_lt(mcpgw_log_open("/proc/nonexistent/dir/x.log", MCPGW_LOG_INFO, false, 0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, line_has_time_level_component_message);
    tcase_add_test(tc, level_filters);
    tcase_add_test(tc, control_characters_cannot_split_a_line);
    tcase_add_test(tc, long_messages_are_cut);
    tcase_add_test(tc, file_mode_and_levels_parse);
    tcase_add_test(tc, reopen_follows_rotation);
    tcase_add_test(tc, unwritable_path_is_an_error);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
