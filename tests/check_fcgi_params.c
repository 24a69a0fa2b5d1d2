/* check_fcgi_params.c - the FastCGI request head check (fcgi/params.c),
 * without a socket.
 *
 * Proves: a well-formed responder head is accepted, and every proper prefix
 * of it (each byte offset) asks for more; lengths split across records and
 * names/values split across records are followed; the CVE-2025-23016 shape
 * (a name or value length near 2^31) is refused on the length alone, before
 * any of its bytes; one pair more than MCPGW_FCGI_PARAMS_MAX, or one byte of
 * names and values more than MCPGW_FCGI_HEAD_BYTES_MAX, is refused while the
 * limits themselves pass; FCGI_GET_VALUES records are left to libfcgi,
 * except one that would overflow its answer or allocate what a length
 * claims, and other management records are refused; other roles,
 * other record types or request ids before the params end, a version other
 * than 1 and a params stream ending inside a pair are malformed; a verdict
 * once reached does not change as more bytes arrive.
 */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"
#include "params.h"

struct bytes {
    unsigned char *p;
    size_t n, cap;
};

/* Also used while the suite is built (typical_len()), outside any test,
 * where ck_assert cannot report. */
static void add(struct bytes *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void add_len(struct bytes *b, uint32_t n, bool four)
{
    unsigned char l[4] = { (unsigned char)(n >> 24 | 0x80), (unsigned char)(n >> 16),
                           (unsigned char)(n >> 8), (unsigned char)n };

    if (n < 0x80 && !four)
        add(b, l + 3, 1);
    else
        add(b, l, 4);
}

static void add_pair(struct bytes *b, const char *name, const char *value)
{
    add_len(b, (uint32_t)strlen(name), false);
    add_len(b, (uint32_t)strlen(value), false);
    add(b, name, strlen(name));
    add(b, value, strlen(value));
}

static void add_record(struct bytes *out, unsigned version, unsigned type, unsigned id,
                       const void *c, size_t clen, size_t plen)
{
    unsigned char h[8] = { (unsigned char)version, (unsigned char)type, (unsigned char)(id >> 8),
                           (unsigned char)id, (unsigned char)(clen >> 8), (unsigned char)clen,
                           (unsigned char)plen, 0 };
    static const unsigned char pad[255];

    add(out, h, 8);
    add(out, c, clen);
    add(out, pad, plen);
}

static void add_begin(struct bytes *out, unsigned id, unsigned role)
{
    unsigned char body[8] = { (unsigned char)(role >> 8), (unsigned char)role, 1 };

    add_record(out, 1, FCGI_T_BEGIN_REQUEST, id, body, 8, 0);
}

/* The params stream s as records of at most chunk bytes, then the empty one. */
static void add_params(struct bytes *out, unsigned id, const struct bytes *s, size_t chunk)
{
    for (size_t off = 0; off < s->n; off += chunk) {
        size_t k = s->n - off < chunk ? s->n - off : chunk;

        add_record(out, 1, FCGI_T_PARAMS, id, s->p + off, k, off % 3);
    }
    add_record(out, 1, FCGI_T_PARAMS, id, NULL, 0, 0);
}

static enum fcgi_head check(const struct bytes *b, struct fcgi_head_info *info)
{
    return fcgi_params_check(b->p, b->n, info);
}

/* A request as mod_proxy_fcgi sends it: a few CGI variables. */
static void typical(struct bytes *out, size_t chunk)
{
    struct bytes s = { 0 };

    add_pair(&s, "REQUEST_METHOD", "GET");
    add_pair(&s, "REQUEST_URI", "/api/v1/servers?x=1");
    add_pair(&s, "QUERY_STRING", "x=1");
    add_pair(&s, "HTTP_AUTHORIZATION", "Bearer mcpgw_abc");
    add_pair(&s, "CONTENT_LENGTH", "");
    add_begin(out, 1, FCGI_ROLE_RESPONDER);
    add_params(out, 1, &s, chunk);
    free(s.p);
}

START_TEST(a_typical_head_is_accepted)
{
    struct bytes b = { 0 };
    struct fcgi_head_info info;
    size_t head;

    typical(&b, 1000);
    head = b.n;
    add_record(&b, 1, FCGI_T_STDIN, 1, "{}", 2, 0);
    ck_assert_int_eq(check(&b, &info), FCGI_HEAD_OK);
    ck_assert_uint_eq(info.req_id, 1);
    ck_assert_uint_eq(info.pairs, 5);
    ck_assert_uint_eq(info.end, head);
    ck_assert_str_eq(fcgi_head_name(FCGI_HEAD_OK), "ok");
    free(b.p);
}
END_TEST

/* Every proper prefix needs more: the check is given what has arrived. */
START_TEST(every_prefix_asks_for_more)
{
    struct bytes b = { 0 };
    size_t cut = (size_t)_i;

    typical(&b, 7);
    if (cut < b.n)
        ck_assert_int_eq(fcgi_params_check(b.p, cut, NULL), FCGI_HEAD_MORE);
    else
        ck_assert_int_eq(fcgi_params_check(b.p, cut, NULL), FCGI_HEAD_OK);
    free(b.p);
}
END_TEST

static size_t typical_len(void)
{
    struct bytes b = { 0 };
    size_t n;

    typical(&b, 7);
    n = b.n;
    free(b.p);
    return n;
}

START_TEST(lengths_split_across_records_are_followed)
{
    struct bytes s = { 0 }, b = { 0 };
    struct fcgi_head_info info;

    /* four-byte lengths for short strings, cut one byte per record */
    add_len(&s, 4, true);
    add_len(&s, 3, true);
    add(&s, "NAMEval", 7);
    add_pair(&s, "A", "");
    add_begin(&b, 9, FCGI_ROLE_RESPONDER);
    add_params(&b, 9, &s, 1);
    ck_assert_int_eq(check(&b, &info), FCGI_HEAD_OK);
    ck_assert_uint_eq(info.pairs, 2);
    ck_assert_uint_eq(info.bytes, 8);
    free(s.p);
    free(b.p);
}
END_TEST

/* CVE-2025-23016: libfcgi would allocate what the length claims. */
START_TEST(a_length_near_2_31_is_refused_on_sight)
{
    static const uint32_t lens[] = { 0x7fffffffu, 0x7ffffff0u, MCPGW_FCGI_HEAD_BYTES_MAX + 1 };

    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        for (int which = 0; which < 2; which++) {
            struct bytes s = { 0 }, b = { 0 };
            struct fcgi_head_info info;

            add_len(&s, which ? 1 : lens[k], true);
            add_len(&s, which ? lens[k] : 1, true);
            /* no bytes of the name or value follow, nor the empty record */
            add_begin(&b, 1, FCGI_ROLE_RESPONDER);
            add_record(&b, 1, FCGI_T_PARAMS, 1, s.p, s.n, 0);
            ck_assert_int_eq(check(&b, &info), FCGI_HEAD_TOO_LARGE);
            ck_assert_uint_eq(info.req_id, 1);
            free(s.p);
            free(b.p);
        }
    }
}
END_TEST

START_TEST(the_pair_and_byte_limits_hold_exactly)
{
    struct bytes s = { 0 }, b = { 0 };
    struct fcgi_head_info info;
    char *big;
    size_t name = MCPGW_FCGI_HEAD_BYTES_MAX / 2;

    for (int i = 0; i < MCPGW_FCGI_PARAMS_MAX; i++)
        add_pair(&s, "HTTP_X", "1");
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_params(&b, 1, &s, 65535);
    ck_assert_int_eq(check(&b, &info), FCGI_HEAD_OK);
    ck_assert_uint_eq(info.pairs, MCPGW_FCGI_PARAMS_MAX);
    /* one more pair */
    b.n = 0;
    add_pair(&s, "HTTP_X", "1");
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_params(&b, 1, &s, 65535);
    ck_assert_int_eq(check(&b, &info), FCGI_HEAD_TOO_LARGE);
    ck_assert_uint_eq(info.pairs, MCPGW_FCGI_PARAMS_MAX + 1);
    /* 10,000 pairs: refused at the first one over */
    for (int i = MCPGW_FCGI_PARAMS_MAX + 1; i < 10000; i++)
        add_pair(&s, "HTTP_X", "1");
    b.n = 0;
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_params(&b, 1, &s, 65535);
    ck_assert_int_eq(check(&b, &info), FCGI_HEAD_TOO_LARGE);
    ck_assert_uint_eq(info.pairs, MCPGW_FCGI_PARAMS_MAX + 1);

    /* names and values of exactly the byte limit, then one byte more */
    big = malloc(MCPGW_FCGI_HEAD_BYTES_MAX + 2);
    ck_assert_ptr_nonnull(big);
    for (int extra = 0; extra < 2; extra++) {
        s.n = b.n = 0;
        add_len(&s, (uint32_t)name, true);
        add_len(&s, (uint32_t)(MCPGW_FCGI_HEAD_BYTES_MAX - name + extra), true);
        memset(big, 'v', MCPGW_FCGI_HEAD_BYTES_MAX + 1);
        add(&s, big, MCPGW_FCGI_HEAD_BYTES_MAX + extra);
        add_begin(&b, 1, FCGI_ROLE_RESPONDER);
        add_params(&b, 1, &s, 65535);
        ck_assert_int_eq(check(&b, &info), extra ? FCGI_HEAD_TOO_LARGE : FCGI_HEAD_OK);
    }
    free(big);
    free(s.p);
    free(b.p);
}
END_TEST

START_TEST(management_records_are_skipped)
{
    struct bytes b = { 0 }, s = { 0 };

    add_record(&b, 1, FCGI_T_GET_VALUES, 0, "\x0e\x00" "FCGI_MAX_CONNS", 16, 0);
    add_begin(&b, 3, FCGI_ROLE_RESPONDER);
    add_record(&b, 1, FCGI_T_GET_VALUES, 0, NULL, 0, 5);
    add_pair(&s, "REQUEST_METHOD", "GET");
    add_params(&b, 3, &s, 100);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_OK);
    free(s.p);
    free(b.p);
}
END_TEST

/* libfcgi's answer to FCGI_GET_VALUES allocates what the pairs claim and
 * sprintf()s each known name into a 64-byte stack buffer: four of them
 * overflowed it; its answer to any other management record leaked (both
 * found by tests/fuzz/fuzz_fcgi_params). */
START_TEST(get_values_records_are_checked)
{
    struct bytes b = { 0 }, s = { 0 }, gv = { 0 };
    unsigned char huge[8] = { 0xff, 0, 0, 0, 0x80, 0, 0, 1 };

    add_pair(&s, "REQUEST_METHOD", "GET");
    for (int n = 0; n <= 4; n++) {
        b.n = gv.n = 0;
        for (int i = 0; i < n; i++)
            add_pair(&gv, "FCGI_MPXS_CONNS", "");
        add_record(&b, 1, FCGI_T_GET_VALUES, 0, gv.p, gv.n, 0);
        add_begin(&b, 1, FCGI_ROLE_RESPONDER);
        add_params(&b, 1, &s, 100);
        ck_assert_int_eq(check(&b, NULL), n <= 3 ? FCGI_HEAD_OK : FCGI_HEAD_BAD);
    }
    /* a length past the record (near 2^31), a pair cut by the record's end */
    b.n = 0;
    add_record(&b, 1, FCGI_T_GET_VALUES, 0, huge, sizeof(huge), 0);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    b.n = 0;
    add_record(&b, 1, FCGI_T_GET_VALUES, 0, "\x0e\x00" "FCGI_MAX_CONN", 15, 0);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    /* any other management record: libfcgi leaks answering it, and reads
     * its content as the request's; a begin for id 0 is an error to it */
    for (unsigned type = 0; type < 256; type++) {
        if (type == FCGI_T_GET_VALUES)
            continue;
        b.n = 0;
        add_record(&b, 1, type, 0, NULL, 0, 3);
        add_begin(&b, 1, FCGI_ROLE_RESPONDER);
        add_params(&b, 1, &s, 100);
        ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    }
    b.n = 0;
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_record(&b, 1, 42, 0, "x", 1, 0);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    b.n = 0;
    add_begin(&b, 0, FCGI_ROLE_RESPONDER);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    free(s.p);
    free(gv.p);
    free(b.p);
}
END_TEST

START_TEST(malformed_heads_are_refused)
{
    struct bytes b = { 0 }, s = { 0 };
    unsigned char half[2] = { 0x80, 0x00 };

    add_pair(&s, "REQUEST_METHOD", "GET");
    /* another role (authorizer) */
    add_begin(&b, 1, 2);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    /* params before any begin */
    b.n = 0;
    add_params(&b, 1, &s, 100);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    /* a begin with a short body */
    b.n = 0;
    add_record(&b, 1, FCGI_T_BEGIN_REQUEST, 1, "\x00\x01", 2, 0);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    /* version 2 */
    b.n = 0;
    add_record(&b, 2, FCGI_T_BEGIN_REQUEST, 1, "\x00\x01\x00\x00\x00\x00\x00\x00", 8, 0);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    /* a second request multiplexed into the head */
    b.n = 0;
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_begin(&b, 2, FCGI_ROLE_RESPONDER);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    /* the body, or an abort, before the params end */
    for (unsigned type = FCGI_T_ABORT_REQUEST; type <= FCGI_T_STDIN; type += 3) {
        b.n = 0;
        add_begin(&b, 1, FCGI_ROLE_RESPONDER);
        add_record(&b, 1, FCGI_T_PARAMS, 1, s.p, s.n, 0);
        add_record(&b, 1, type, 1, "x", 1, 0);
        ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    }
    /* params of another request id */
    b.n = 0;
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_params(&b, 2, &s, 100);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    /* the stream ends inside a four-byte length, after a name length, and
     * inside a value */
    b.n = 0;
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_record(&b, 1, FCGI_T_PARAMS, 1, half, 2, 0);
    add_record(&b, 1, FCGI_T_PARAMS, 1, NULL, 0, 0);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    b.n = 0;
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_record(&b, 1, FCGI_T_PARAMS, 1, "\x04", 1, 0);
    add_record(&b, 1, FCGI_T_PARAMS, 1, NULL, 0, 0);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    b.n = 0;
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_record(&b, 1, FCGI_T_PARAMS, 1, s.p, s.n - 1, 0);
    add_record(&b, 1, FCGI_T_PARAMS, 1, NULL, 0, 0);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    /* padding on the empty record that ends the params: libfcgi would
     * read it as a record header (of request id 0) */
    b.n = 0;
    add_begin(&b, 1, FCGI_ROLE_RESPONDER);
    add_record(&b, 1, FCGI_T_PARAMS, 1, s.p, s.n, 0);
    add_record(&b, 1, FCGI_T_PARAMS, 1, NULL, 0, 8);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_BAD);
    free(s.p);
    free(b.p);
}
END_TEST

/* What fcgi_head_ok() relies on: appending bytes never changes a verdict. */
START_TEST(a_verdict_stands_as_bytes_arrive)
{
    struct bytes b = { 0 };
    enum fcgi_head first;

    add_begin(&b, 1, 2);
    first = check(&b, NULL);
    ck_assert_int_eq(first, FCGI_HEAD_BAD);
    typical(&b, 5);
    ck_assert_int_eq(check(&b, NULL), first);
    b.n = 0;
    typical(&b, 5);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_OK);
    add_record(&b, 7, 200, 4, "garbage", 7, 0);
    ck_assert_int_eq(check(&b, NULL), FCGI_HEAD_OK);
    free(b.p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fcgi_params");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, a_typical_head_is_accepted);
    tcase_add_loop_test(tc, every_prefix_asks_for_more, 0, (int)typical_len() + 1);
    tcase_add_test(tc, lengths_split_across_records_are_followed);
    tcase_add_test(tc, a_length_near_2_31_is_refused_on_sight);
    tcase_add_test(tc, the_pair_and_byte_limits_hold_exactly);
    tcase_add_test(tc, management_records_are_skipped);
    tcase_add_test(tc, get_values_records_are_checked);
    tcase_add_test(tc, malformed_heads_are_refused);
    tcase_add_test(tc, a_verdict_stands_as_bytes_arrive);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
