/* check_buf.c - the bounded buffer and the JSON string writer. */
#include "config.h"

#include <check.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"

START_TEST(growth_stops_at_the_ceiling)
{
    struct mcpgw_buf b;

    mcpgw_buf_init(&b, 10);
    ck_assert_int_eq(mcpgw_buf_add(&b, "0123456789", 10), 0);
    ck_assert_int_eq(mcpgw_buf_addc(&b, 'x'), MCPGW_ETOOBIG);
    ck_assert_uint_eq(b.len, 10);
    ck_assert_str_eq(b.ptr, "0123456789");
    mcpgw_buf_release(&b);
}
END_TEST

/* The inline path (bytes that fit what is allocated) keeps the ceiling for
 * every max, including ones the growth rounding does not reach exactly. */
START_TEST(appends_that_fit_keep_the_ceiling)
{
    for (size_t max = 1; max <= 300; max++) {
        struct mcpgw_buf b;
        size_t i;

        mcpgw_buf_init(&b, max);
        for (i = 0; i < max; i++)
            ck_assert_int_eq(mcpgw_buf_addc(&b, (char)('a' + i % 26)), 0);
        ck_assert_int_eq(mcpgw_buf_addc(&b, 'x'), MCPGW_ETOOBIG);
        ck_assert_int_eq(mcpgw_buf_add(&b, "", 0), 0);
        ck_assert_int_eq(mcpgw_buf_add(&b, NULL, 0), 0);   /* UBSan: no memcpy of NULL */
        ck_assert_uint_eq(b.len, max);
        ck_assert_uint_le(b.cap, max + 1);
        ck_assert_int_eq(b.ptr[max], 0);
        mcpgw_buf_reset(&b);
        ck_assert_int_eq(mcpgw_buf_adds(&b, "0123"), max >= 4 ? 0 : MCPGW_ETOOBIG);
        mcpgw_buf_release(&b);
    }
}
END_TEST

START_TEST(printf_is_atomic_on_overflow)
{
    struct mcpgw_buf b;

    mcpgw_buf_init(&b, 8);
    ck_assert_int_eq(mcpgw_buf_printf(&b, "%d", 1234), 0);
    ck_assert_int_eq(mcpgw_buf_printf(&b, "%s", "56789"), MCPGW_ETOOBIG);
    ck_assert_str_eq(b.ptr, "1234");
    mcpgw_buf_release(&b);
}
END_TEST

START_TEST(integers_as_printf_writes_them)
{
    static const int64_t is[] = { 0, 7, -7, 10, -10, 1764118923456LL, INT64_MAX, INT64_MIN };
    static const uint64_t us[] = { 0, 9, 10, 18446744073709551615ULL };
    struct mcpgw_buf b, want;

    mcpgw_buf_init(&b, 4096);
    mcpgw_buf_init(&want, 4096);
    for (size_t i = 0; i < sizeof(is) / sizeof(is[0]); i++) {
        ck_assert_int_eq(mcpgw_buf_add_i64(&b, is[i]), 0);
        ck_assert_int_eq(mcpgw_buf_printf(&want, "%" PRId64, is[i]), 0);
    }
    for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
        ck_assert_int_eq(mcpgw_buf_add_u64(&b, us[i]), 0);
        ck_assert_int_eq(mcpgw_buf_printf(&want, "%" PRIu64, us[i]), 0);
    }
    ck_assert_str_eq(b.ptr, want.ptr);
    mcpgw_buf_release(&b);
    mcpgw_buf_release(&want);
    /* All or nothing at the ceiling, sign included. */
    mcpgw_buf_init(&b, 4);
    ck_assert_int_eq(mcpgw_buf_add(&b, "ab", 2), 0);
    ck_assert_int_eq(mcpgw_buf_add_i64(&b, -123), MCPGW_ETOOBIG);
    ck_assert_int_eq(mcpgw_buf_add_u64(&b, 123), MCPGW_ETOOBIG);
    ck_assert_uint_eq(b.len, 2);
    mcpgw_buf_release(&b);
}
END_TEST

START_TEST(consume_moves_the_rest_forward)
{
    struct mcpgw_buf b;

    mcpgw_buf_init(&b, 100);
    mcpgw_buf_adds(&b, "hello world");
    mcpgw_buf_consume(&b, 6);
    ck_assert_str_eq(b.ptr, "world");
    mcpgw_buf_consume(&b, 100);
    ck_assert_uint_eq(b.len, 0);
    mcpgw_buf_release(&b);
}
END_TEST

static const struct {
    const char *in;
    size_t len;
    const char *out;
} json_str_cases[] = {
    { "plain", 5, "\"plain\"" },
    { "q\"b\\", 4, "\"q\\\"b\\\\\"" },
    { "a\nb\rc\td", 7, "\"a\\nb\\rc\\td\"" },
    { "\x01\x1f", 2, "\"\\u0001\\u001f\"" },
    { "nul\0x", 5, "\"nul\\u0000x\"" },
    { "caf\xc3\xa9", 5, "\"caf\xc3\xa9\"" },
    { "\xe2\x80\xa8\xe2\x80\xa9", 6, "\"\\u2028\\u2029\"" },
    { "\xff", 1, "\"\xef\xbf\xbd\"" },
    { "\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"" },              /* overlong '/' */
    { "\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" }, /* surrogate */
    { "\xf4\x90\x80\x80", 4, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" },
    { "\xe2\x82", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"" },             /* truncated */
    { "\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\"" },
    { "", 0, "\"\"" },
};

START_TEST(json_str_escapes_and_repairs)
{
    struct mcpgw_buf b;

    mcpgw_buf_init(&b, 1000);
    ck_assert_int_eq(mcpgw_buf_add_json_str(&b, json_str_cases[_i].in, json_str_cases[_i].len), 0);
    ck_assert_str_eq(b.ptr, json_str_cases[_i].out);
    mcpgw_buf_release(&b);
}
END_TEST

/* Whatever bytes come in, what goes out parses as JSON with UTF-8 checks. */
START_TEST(json_str_output_always_parses)
{
    struct mcpgw_buf b;
    unsigned seed = 12345;
    char in[64];

    mcpgw_buf_init(&b, 10000);
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = (size_t)(rand_r(&seed) % sizeof(in));
        json_tokener *tok = json_tokener_new();
        json_object *o;

        for (size_t i = 0; i < n; i++)
            in[i] = (char)rand_r(&seed);
        mcpgw_buf_reset(&b);
        ck_assert_int_eq(mcpgw_buf_add_json_str(&b, in, n), 0);
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, b.ptr, (int)b.len);
        ck_assert_msg(o && json_object_is_type(o, json_type_string), "bad output %s", b.ptr);
        json_object_put(o);
        json_tokener_free(tok);
    }
    mcpgw_buf_release(&b);
}
END_TEST

START_TEST(json_str_is_atomic_on_overflow)
{
    struct mcpgw_buf b;

    mcpgw_buf_init(&b, 8);
    mcpgw_buf_adds(&b, "ab");
    ck_assert_int_eq(mcpgw_buf_add_json_str(&b, "0123456789", 10), MCPGW_ETOOBIG);
    ck_assert_str_eq(b.ptr, "ab");
    mcpgw_buf_release(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("buf");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, growth_stops_at_the_ceiling);
    tcase_add_test(tc, appends_that_fit_keep_the_ceiling);
    tcase_add_test(tc, printf_is_atomic_on_overflow);
    tcase_add_test(tc, integers_as_printf_writes_them);
    tcase_add_test(tc, consume_moves_the_rest_forward);
    tcase_add_loop_test(tc, json_str_escapes_and_repairs, 0,
                        sizeof(json_str_cases) / sizeof(json_str_cases[0]));
    tcase_add_test(tc, json_str_output_always_parses);
    tcase_add_test(tc, json_str_is_atomic_on_overflow);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
