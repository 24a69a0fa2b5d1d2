/* check_http.c - request parsing helpers and response heads (shared/http.c).
 *
 * Proves: query values are found and percent-decoded, and bad escapes, NULs
 * and overflows are refused; hostile paths (dot segments, encoded slashes,
 * NUL, "//") are refused; media types and Accept lists are matched the way
 * clients write them; response heads never carry CR/LF; the CGI variable
 * mapping (path from REQUEST_URI, query, CONTENT_LENGTH) including a bad
 * CONTENT_LENGTH; bodies over the cap are refused by announced length and
 * by bytes actually read.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "http.h"

START_TEST(query_values_are_decoded)
{
    char v[64];

    ck_assert_int_eq(mcpgw_http_query_get("a=1&types=tool_call%2Cserver_status&b", "types", v,
                                          sizeof(v)), 23);
    ck_assert_str_eq(v, "tool_call,server_status");
    ck_assert_int_eq(mcpgw_http_query_get("x=a+b%20c", "x", v, sizeof(v)), 5);
    ck_assert_str_eq(v, "a b c");
    ck_assert_int_eq(mcpgw_http_query_get("b", "b", v, sizeof(v)), 0);
    ck_assert_str_eq(v, "");
    ck_assert_int_eq(mcpgw_http_query_get("ab=1", "a", v, sizeof(v)), -1);
    ck_assert_int_eq(mcpgw_http_query_get("", "a", v, sizeof(v)), -1);
    ck_assert_int_eq(mcpgw_http_query_get("a=%zz", "a", v, sizeof(v)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_query_get("a=%2", "a", v, sizeof(v)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_query_get("a=x%00y", "a", v, sizeof(v)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_query_get("a=0123456789", "a", v, 8), MCPGW_ETOOBIG);
    ck_assert_int_eq(mcpgw_http_query_get("a=1;b=2", "b", v, sizeof(v)), 1);
}
END_TEST

START_TEST(paths_are_decoded_and_hostile_ones_refused)
{
    char p[64];

    ck_assert_int_eq(mcpgw_http_path_decode("/api/v1/servers/mem%6Fry/tools", p, sizeof(p)), 28);
    ck_assert_str_eq(p, "/api/v1/servers/memory/tools");
    ck_assert_int_gt(mcpgw_http_path_decode("/api/v1/servers/", p, sizeof(p)), 0);
    ck_assert_str_eq(p, "/api/v1/servers");
    ck_assert_int_eq(mcpgw_http_path_decode("/api/../etc", p, sizeof(p)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_path_decode("/api/%2e%2e/etc", p, sizeof(p)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_path_decode("/api/./v1", p, sizeof(p)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_path_decode("/api//v1", p, sizeof(p)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_path_decode("/a%2Fb", p, sizeof(p)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_path_decode("/a%00b", p, sizeof(p)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_path_decode("/a%4", p, sizeof(p)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_path_decode("relative", p, sizeof(p)), MCPGW_EPARSE);
    ck_assert_int_eq(mcpgw_http_path_decode("/0123456789abcdef", p, 8), MCPGW_ETOOBIG);
}
END_TEST

START_TEST(media_types_and_accept)
{
    ck_assert(mcpgw_http_media_is("application/json", "application/json"));
    ck_assert(mcpgw_http_media_is("Application/JSON; charset=utf-8", "application/json"));
    ck_assert(!mcpgw_http_media_is("application/jsonx", "application/json"));
    ck_assert(!mcpgw_http_media_is("text/plain", "application/json"));
    ck_assert(!mcpgw_http_media_is(NULL, "application/json"));
    ck_assert(mcpgw_http_accepts("text/event-stream", "text/event-stream"));
    ck_assert(mcpgw_http_accepts("application/json, text/event-stream;q=0.5", "text/event-stream"));
    ck_assert(!mcpgw_http_accepts("text/event-stream;q=0", "text/event-stream"));
    ck_assert(!mcpgw_http_accepts("application/json", "text/event-stream"));
    ck_assert(!mcpgw_http_accepts("*/*", "text/event-stream"));
}
END_TEST

START_TEST(response_heads_refuse_line_breaks)
{
    struct mcpgw_buf b;
    struct mcpgw_http_header ok[] = { { "Content-Type", "application/json" } };
    struct mcpgw_http_header bad[] = { { "X-Tool", "a\r\nSet-Cookie: x=1" } };
    struct mcpgw_http_header badname[] = { { "X:Y", "1" } };

    mcpgw_buf_init(&b, 4096);
    ck_assert_int_eq(mcpgw_http_cgi_head(&b, 404, ok, 1), 0);
    ck_assert_str_eq(b.ptr, "Status: 404 Not Found\r\nContent-Type: application/json\r\n\r\n");
    mcpgw_buf_reset(&b);
    ck_assert_int_eq(mcpgw_http_cgi_head(&b, 200, bad, 1), -EINVAL);
    ck_assert_int_eq(mcpgw_http_cgi_head(&b, 200, badname, 1), -EINVAL);
    ck_assert_uint_eq(b.len, 0);
    ck_assert(!mcpgw_http_header_value_ok("a\nb"));
    ck_assert(mcpgw_http_header_value_ok("Bearer realm=\"mcpgw\"\t"));
    mcpgw_buf_release(&b);
}
END_TEST

static const char *const *vars;

static const char *get_var(void *ud, const char *name)
{
    size_t n = strlen(name);

    (void)ud;
    for (size_t i = 0; vars[i]; i++)
        if (strncmp(vars[i], name, n) == 0 && vars[i][n] == '=')
            return vars[i] + n + 1;
    return NULL;
}

START_TEST(cgi_variables_make_a_request)
{
    static const char *const v1[] = {
        "REQUEST_METHOD=GET", "REQUEST_URI=/gw/api/v1/events?types=server_status",
        "SCRIPT_NAME=/gw/mcpgw.fcgi", "PATH_INFO=/ignored",
        "HTTP_LAST_EVENT_ID=42", "CONTENT_TYPE=application/json", "CONTENT_LENGTH=17",
        "REMOTE_ADDR=127.0.0.1", NULL };
    static const char *const v2[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/api/v1",
                                       "PATH_INFO=/tools/call", "CONTENT_LENGTH=-1", NULL };
    static const char *const v3[] = { "REQUEST_METHOD=GET", "SCRIPT_NAME=/api/v1",
                                       "PATH_INFO=/health", "QUERY_STRING=a=b", NULL };
    struct mcpgw_http_cgi c = { .get = get_var };
    struct mcpgw_http_request req;
    char name[64];

    vars = v1;
    ck_assert_int_eq(mcpgw_http_cgi_request(&c, &req), 0);
    ck_assert_str_eq(req.method, "GET");
    ck_assert_str_eq(req.path, "/gw/api/v1/events");
    ck_assert_str_eq(req.query, "types=server_status");
    ck_assert_str_eq(mcpgw_http_header(&req, "last-event-id"), "42");
    ck_assert_str_eq(mcpgw_http_header(&req, "content-type"), "application/json");
    ck_assert_ptr_null(mcpgw_http_header(&req, "authorization"));
    ck_assert_int_eq(req.content_length, 17);
    vars = v2;
    ck_assert_int_eq(mcpgw_http_cgi_request(&c, &req), MCPGW_EPARSE);
    vars = v3;
    ck_assert_int_eq(mcpgw_http_cgi_request(&c, &req), 0);
    ck_assert_str_eq(req.path, "/api/v1/health");
    ck_assert_str_eq(req.query, "a=b");
    ck_assert_int_eq(req.content_length, -1);
    ck_assert_int_eq(mcpgw_http_cgi_name("x-forwarded-for", name, sizeof(name)), 0);
    ck_assert_str_eq(name, "HTTP_X_FORWARDED_FOR");
}
END_TEST

struct body_src {
    const char *p;
    size_t left, step;
};

static ssize_t read_src(void *ud, char *buf, size_t len)
{
    struct body_src *s = ud;
    size_t n = s->left < len ? s->left : len;

    if (n > s->step)
        n = s->step;
    memcpy(buf, s->p, n);
    s->p += n;
    s->left -= n;
    return (ssize_t)n;
}

START_TEST(bodies_are_capped)
{
    char big[3000];
    struct body_src src;
    struct mcpgw_http_request req = { .read_body = read_src, .body_ud = &src };
    struct mcpgw_buf b;

    memset(big, 'x', sizeof(big));
    mcpgw_buf_init(&b, 2048);
    /* announced too large: refused before reading */
    src = (struct body_src){ big, sizeof(big), 1 };
    req.content_length = 3000;
    ck_assert_int_eq(mcpgw_http_read_body(&req, &b), MCPGW_ETOOBIG);
    ck_assert_uint_eq(src.left, sizeof(big));
    /* unannounced: refused once the bytes pass the cap, one byte at a time */
    req.content_length = -1;
    ck_assert_int_eq(mcpgw_http_read_body(&req, &b), MCPGW_ETOOBIG);
    /* within the cap, delivered one byte per read */
    mcpgw_buf_reset(&b);
    src = (struct body_src){ big, 100, 1 };
    req.content_length = 100;
    ck_assert_int_eq(mcpgw_http_read_body(&req, &b), 0);
    ck_assert_uint_eq(b.len, 100);
    mcpgw_buf_release(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, query_values_are_decoded);
    tcase_add_test(tc, paths_are_decoded_and_hostile_ones_refused);
    tcase_add_test(tc, media_types_and_accept);
    tcase_add_test(tc, response_heads_refuse_line_breaks);
    tcase_add_test(tc, cgi_variables_make_a_request);
    tcase_add_test(tc, bodies_are_capped);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
