/* check_cors.c - the Origin allow-list (shared with the WebSocket check)
 * and the CORS headers (shared/cors.c).
 *
 * Proves: origins are normalised as browsers serialise them; the default
 * (no allowedOrigins) admits loopback pages only, on any port and scheme
 * http/https; a list admits exactly its entries; [] admits no browser;
 * "null" and malformed origins are refused; a same-origin page is admitted
 * only while authentication is required (not to a DNS-rebinding page on an
 * open gateway); allowed responses name the origin, never credentials.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "cors.h"
#include "err.h"

static struct mcpgw_conf *conf_of(const char *gw)
{
    char json[1024], err[256];
    struct mcpgw_conf *c;

    snprintf(json, sizeof(json), "{\"gateway\":{%s}}", gw);
    ck_assert_msg(mcpgw_conf_parse(json, strlen(json), "t.json", "/tmp", &c, err, sizeof(err)) == 0,
                  "%s", err);
    return c;
}

START_TEST(origins_are_normalised)
{
    char o[MCPGW_ORIGIN_MAX];

    ck_assert_int_eq(mcpgw_origin_normalize("HTTP://LocalHost:80", o, sizeof(o)), 0);
    ck_assert_str_eq(o, "http://localhost");
    ck_assert_int_eq(mcpgw_origin_normalize("https://Example.com:443", o, sizeof(o)), 0);
    ck_assert_str_eq(o, "https://example.com");
    ck_assert_int_eq(mcpgw_origin_normalize("http://[::1]:8080", o, sizeof(o)), 0);
    ck_assert_str_eq(o, "http://[::1]:8080");
    ck_assert_int_eq(mcpgw_origin_normalize("null", o, sizeof(o)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_origin_normalize("http://a.com/", o, sizeof(o)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_origin_normalize("http://a.com:0", o, sizeof(o)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_origin_normalize("http://a.com:70000", o, sizeof(o)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_origin_normalize("http://", o, sizeof(o)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_origin_normalize("http://a b", o, sizeof(o)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_origin_normalize("http://a.com\r\nX: y", o, sizeof(o)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_origin_normalize("http://example.com", o, 8), MCPGW_ETOOBIG);
}
END_TEST

START_TEST(default_admits_loopback_pages_only)
{
    struct mcpgw_conf *c = conf_of("\"requireAuth\":false");

    ck_assert(mcpgw_origin_allowed(c, NULL, "gw:80"));
    ck_assert(mcpgw_origin_allowed(c, "http://localhost:5500", NULL));
    ck_assert(mcpgw_origin_allowed(c, "https://127.0.0.1", NULL));
    ck_assert(mcpgw_origin_allowed(c, "http://127.1.2.3:8080", NULL));
    ck_assert(mcpgw_origin_allowed(c, "http://[::1]:3000", NULL));
    ck_assert(!mcpgw_origin_allowed(c, "http://localhost.evil.com", NULL));
    ck_assert(!mcpgw_origin_allowed(c, "http://127.0.0.1.evil.com", NULL));
    ck_assert(!mcpgw_origin_allowed(c, "file://localhost", NULL));
    ck_assert(!mcpgw_origin_allowed(c, "null", NULL));
    /* an open gateway: a rebinding page is "same origin" and must fail */
    ck_assert(!mcpgw_origin_allowed(c, "http://evil.com:3000", "evil.com:3000"));
    mcpgw_conf_free(c);
}
END_TEST

START_TEST(a_list_admits_its_entries_and_same_origin_with_auth)
{
    struct mcpgw_conf *c = conf_of("\"allowedOrigins\":[\"https://tools.example.com\","
                                   "\"http://localhost:8080\"]");

    ck_assert(mcpgw_origin_allowed(c, "https://tools.example.com", NULL));
    ck_assert(mcpgw_origin_allowed(c, "https://TOOLS.example.com:443", NULL));
    ck_assert(mcpgw_origin_allowed(c, "http://localhost:8080", NULL));
    ck_assert(!mcpgw_origin_allowed(c, "http://localhost:8081", NULL));
    ck_assert(!mcpgw_origin_allowed(c, "http://tools.example.com", NULL));
    /* requireAuth (default): a page from the gateway's own host */
    ck_assert(mcpgw_origin_allowed(c, "https://gw.example.com", "gw.example.com"));
    ck_assert(mcpgw_origin_allowed(c, "https://gw.example.com", "GW.example.com:443"));
    ck_assert(mcpgw_origin_allowed(c, "http://gw.example.com:8080", "gw.example.com:8080"));
    ck_assert(!mcpgw_origin_allowed(c, "http://gw.example.com:8080", "gw.example.com"));
    mcpgw_conf_free(c);
}
END_TEST

START_TEST(empty_list_admits_no_browser)
{
    struct mcpgw_conf *c = conf_of("\"allowedOrigins\":[]");

    ck_assert(mcpgw_origin_allowed(c, NULL, "gw"));
    ck_assert(!mcpgw_origin_allowed(c, "http://localhost", NULL));
    ck_assert(!mcpgw_origin_allowed(c, "https://gw.example.com", "gw.example.com"));
    mcpgw_conf_free(c);
}
END_TEST

START_TEST(cors_headers_name_the_origin_never_credentials)
{
    struct mcpgw_http_header h[8];
    size_t n;

    ck_assert_uint_eq(mcpgw_cors_headers(NULL, h), 0);
    n = mcpgw_cors_headers("http://localhost:5500", h);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(h[0].name, "Access-Control-Allow-Origin");
    ck_assert_str_eq(h[0].value, "http://localhost:5500");
    ck_assert_str_eq(h[1].value, "Origin");
    n = mcpgw_cors_preflight_headers("http://localhost:5500", "POST, OPTIONS", h);
    ck_assert_uint_eq(n, 6);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_ne(h[i].name, "Access-Control-Allow-Credentials");
    ck_assert_str_eq(h[3].value, "POST, OPTIONS");
    ck_assert_ptr_nonnull(strstr(h[4].value, "Authorization"));
    ck_assert_ptr_nonnull(strstr(h[4].value, "Last-Event-ID"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cors");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, origins_are_normalised);
    tcase_add_test(tc, default_admits_loopback_pages_only);
    tcase_add_test(tc, a_list_admits_its_entries_and_same_origin_with_auth);
    tcase_add_test(tc, empty_list_admits_no_browser);
    tcase_add_test(tc, cors_headers_name_the_origin_never_credentials);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
