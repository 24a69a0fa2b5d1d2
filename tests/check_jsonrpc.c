/* check_jsonrpc.c - classification by shape, id rules, writers. */
#include "config.h"

#include <check.h>
#include <string.h>

#include "err.h"
#include "jsonrpc.h"
#include "limits.h"

static const struct {
    const char *line;
    int rc;
    enum mcpgw__rpc_kind kind;
} shapes[] = {
    { "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", 0, MCPGW__RPC_RESPONSE },
    { "{\"result\":{},\"jsonrpc\":\"2.0\",\"id\":7}", 0, MCPGW__RPC_RESPONSE },
    { "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"x\"}}", 0, MCPGW__RPC_RESPONSE },
    /* servers number their own requests from 0: a request, not a response */
    { "{\"method\":\"roots/list\",\"jsonrpc\":\"2.0\",\"id\":0}", 0, MCPGW__RPC_REQUEST },
    { "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"ping\"}", 0, MCPGW__RPC_REQUEST },
    { "{\"method\":\"notifications/progress\",\"params\":{},\"jsonrpc\":\"2.0\"}", 0, MCPGW__RPC_NOTIFICATION },
    { "{\"jsonrpc\":\"2.0\",\"id\":1}", 0, MCPGW__RPC_INVALID },
    { "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{}}", 0, MCPGW__RPC_INVALID },
    { "{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":{}}", 0, MCPGW__RPC_INVALID },
    { "{\"id\":1,\"result\":{}}", 0, MCPGW__RPC_INVALID },
    { "{\"jsonrpc\":\"2.0\",\"method\":5}", 0, MCPGW__RPC_INVALID },
    { "{\"jsonrpc\":\"2.0\",\"result\":{}}", 0, MCPGW__RPC_INVALID },
    { "[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]", 0, MCPGW__RPC_INVALID },
    { "42", MCPGW_EPARSE, 0 },  /* a bare number: garbage either way */
    { "this is not json", MCPGW_EPARSE, 0 },
    { "{\"jsonrpc\":\"2.0\"", MCPGW_EPARSE, 0 },
    { "{\"a\":1} {\"b\":2}", MCPGW_EPARSE, 0 },
    { "{\"a\":1}x", MCPGW_EPARSE, 0 },
    { "", MCPGW_EPARSE, 0 },
};

START_TEST(classified_by_shape)
{
    json_tokener *tok = json_tokener_new_ex(MCPGW_JSON_DEPTH_DEFAULT);
    struct mcpgw__rpc m;
    int rc;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    rc = mcpgw__rpc_parse(tok, shapes[_i].line, strlen(shapes[_i].line), &m);
    ck_assert_msg(rc == shapes[_i].rc, "%s: rc %d", shapes[_i].line, rc);
    if (rc == 0) {
        ck_assert_msg(m.kind == shapes[_i].kind, "%s: kind %d", shapes[_i].line, m.kind);
        mcpgw__rpc_release(&m);
    }
    json_tokener_free(tok);
}
END_TEST

START_TEST(depth_cap_applies)
{
    json_tokener *tok = json_tokener_new_ex(8);
    struct mcpgw__rpc m;
    char deep[64];

    memset(deep, '[', 20);
    memset(deep + 20, ']', 20);
    deep[40] = '\0';
    ck_assert_int_eq(mcpgw__rpc_parse(tok, deep, 40, &m), MCPGW_EPARSE);
    json_tokener_free(tok);
}
END_TEST

START_TEST(only_our_ids)
{
    json_object *o;
    uint64_t id;

    o = json_object_new_int64(5);
    ck_assert(mcpgw__rpc_id_ours(o, &id) && id == 5);
    json_object_put(o);
    o = json_object_new_int64(0);
    ck_assert(!mcpgw__rpc_id_ours(o, &id));
    json_object_put(o);
    o = json_object_new_int64((int64_t)1 << 53);
    ck_assert(!mcpgw__rpc_id_ours(o, &id));
    json_object_put(o);
    o = json_object_new_string("5");
    ck_assert(!mcpgw__rpc_id_ours(o, &id));
    json_object_put(o);
    o = json_object_new_double(5.0);
    ck_assert(!mcpgw__rpc_id_ours(o, &id));
    json_object_put(o);
    ck_assert(!mcpgw__rpc_id_ours(NULL, &id));
}
END_TEST

static const struct {
    const char *tail;
    bool ok;
    uint64_t id;
} tails[] = {
    { "xxxx\",\"jsonrpc\":\"2.0\",\"id\":42}", true, 42 },
    { "\"id\":9007199254740991}", true, 9007199254740991ULL },
    { "\"id\":9007199254740992}", false, 0 },
    { "\"id\":0}", false, 0 },
    { "\"id\":\"42\"}", false, 0 },
    { "\"id\":42}\r", true, 42 },
    { "\"xid\":42", false, 0 },
    { "42}", false, 0 },
    { "", false, 0 },
    { "\"id\":}", false, 0 },
};

START_TEST(tail_id_recovery)
{
    uint64_t id = 0;
    bool ok = mcpgw__rpc_tail_id(tails[_i].tail, strlen(tails[_i].tail), &id);

    ck_assert_msg(ok == tails[_i].ok, "%s", tails[_i].tail);
    if (ok)
        ck_assert_uint_eq(id, tails[_i].id);
}
END_TEST

START_TEST(writers_emit_one_line_each)
{
    struct mcpgw_buf b;

    mcpgw_buf_init(&b, 4096);
    ck_assert_int_eq(mcpgw__rpc_write_tool_call(&b, 3, "na\"me", "{\"a\":1}", 7, 3), 0);
    ck_assert_str_eq(b.ptr, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":"
                     "{\"name\":\"na\\\"me\",\"arguments\":{\"a\":1},\"_meta\":{\"progressToken\":3}}}\n");
    mcpgw_buf_reset(&b);
    ck_assert_int_eq(mcpgw__rpc_write_error(&b, "\"s1\"", -32601, "no\nway"), 0);
    ck_assert_str_eq(b.ptr, "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"error\":{\"code\":-32601,"
                     "\"message\":\"no\\nway\"}}\n");
    mcpgw_buf_reset(&b);
    ck_assert_int_eq(mcpgw__rpc_write_result(&b, "0", "{}"), 0);
    ck_assert_str_eq(b.ptr, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{}}\n");
    mcpgw_buf_reset(&b);
    ck_assert_int_eq(mcpgw__rpc_write_notification(&b, "notifications/initialized", NULL), 0);
    ck_assert_str_eq(b.ptr, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    mcpgw_buf_reset(&b);
    ck_assert_int_eq(mcpgw__rpc_write_request(&b, 9, "tools/list", "{\"cursor\":\"c\"}"), 0);
    ck_assert_str_eq(b.ptr, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/list\","
                     "\"params\":{\"cursor\":\"c\"}}\n");
    mcpgw_buf_release(&b);
}
END_TEST

START_TEST(writers_leave_nothing_on_overflow)
{
    struct mcpgw_buf b;

    mcpgw_buf_init(&b, 40);
    mcpgw_buf_adds(&b, "keep\n");
    ck_assert_int_eq(mcpgw__rpc_write_tool_call(&b, 1, "echo", "{\"message\":\"long enough\"}", 25, 0),
                     MCPGW_ETOOBIG);
    ck_assert_str_eq(b.ptr, "keep\n");
    mcpgw_buf_release(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jsonrpc");
    TCase *tc = tcase_create("jsonrpc");
    SRunner *sr;
    int failed;

    tcase_add_loop_test(tc, classified_by_shape, 0, sizeof(shapes) / sizeof(shapes[0]));
    tcase_add_test(tc, depth_cap_applies);
    tcase_add_test(tc, only_our_ids);
    tcase_add_loop_test(tc, tail_id_recovery, 0, sizeof(tails) / sizeof(tails[0]));
    tcase_add_test(tc, writers_emit_one_line_each);
    tcase_add_test(tc, writers_leave_nothing_on_overflow);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
