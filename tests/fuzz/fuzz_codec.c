/* fuzz_codec.c - client messages in; every accepted one re-encoded.
 *
 * Decoding must never crash or leak, must reject (not truncate) what it
 * cannot take, and an id it reports must itself be valid JSON.  What
 * decodes is fed to the encoders, whose output must parse again.  The
 * member scan agrees with the strict parse on what is valid, and a
 * tool_call decoded without a tree (msg.root is its params) says what the
 * tree says. */
#include "config.h"

#include <assert.h>
#include <json-c/json.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "limits.h"

static void must_parse(const struct mcpgw_buf *b)
{
    json_tokener *tok = json_tokener_new();
    json_object *o;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, b->ptr, (int)b->len);
    assert(o && json_tokener_get_parse_end(tok) == b->len);
    json_object_put(o);
    json_tokener_free(tok);
}

static json_object *member(json_object *o, const char *k)
{
    json_object *v = NULL;

    json_object_object_get_ex(o, k, &v);
    return v;
}

static void same_as_tree(const uint8_t *data, size_t size, const struct mcpgw_codec_limits *lim,
                         const struct mcpgw_msg *msg)
{
    json_object *tree = NULL, *d, *v;

    assert(mcpgw_codec_parse_object((const char *)data, size, lim, &tree, NULL) == 0);
    assert(strcmp(json_object_get_string(member(tree, "type")), "tool_call") == 0);
    assert(json_object_equal(member(tree, "id"), msg->id));
    d = member(tree, "data");
    assert(strcmp(json_object_get_string(member(d, "serverId")), msg->server_id) == 0);
    assert(strcmp(json_object_get_string(member(d, "toolName")), msg->tool_name) == 0);
    v = member(d, "params");
    assert(v ? json_object_equal(v, msg->params) : json_object_object_length(msg->params) == 0);
    v = member(d, "progress");
    assert(msg->progress == (v ? json_object_get_boolean(v) : 1));
    v = member(tree, "timestamp");
    assert(msg->timestamp == (v ? json_object_get_int64(v) : 0));
    json_object_put(tree);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct mcpgw_codec_limits lim = { 4096, 16 };
    struct mcpgw_codec_error err;
    struct mcpgw_msg msg;
    struct mcpgw_buf out;
    char id[MCPGW_CODEC_ID_JSON_SIZE] = "";
    static const char *const keys[] = { "type", "id", "data" };
    struct mcpgw_codec_span sp[3];
    json_object *tree = NULL;
    int scan, parsed;

    if (size <= lim.max_bytes) {
        scan = mcpgw_codec_scan_members((const char *)data, size, lim.max_depth, keys, 3, sp);
        parsed = mcpgw_codec_parse_object((const char *)data, size, &lim, &tree, NULL);
        assert(scan != 0 || parsed == 0);       /* plain: the parse takes it */
        assert(parsed != 0 || scan >= 0);       /* parsed: the scan took it */
        for (size_t k = 0; scan == 0 && k < 3; k++)
            assert((sp[k].len > 0) == json_object_object_get_ex(tree, keys[k], NULL));
        json_object_put(tree);
    }
    if (mcpgw_codec_decode((const char *)data, size, &lim, &msg, &err) < 0) {
        assert(err.code && mcpgw_codec_code_valid(err.code));
        if (err.id_json[0]) {
            json_object *o = json_tokener_parse(err.id_json);

            assert(o);
            json_object_put(o);
        }
        return 0;
    }
    if (msg.type == MCPGW_MSG_TOOL_CALL && msg.root == msg.params)
        same_as_tree(data, size, &lim, &msg);
    mcpgw_buf_init(&out, MCPGW_MESSAGE_BYTES_DEFAULT);
    if (msg.id)
        assert(mcpgw_codec_id_json(msg.id, id, sizeof(id)) == 0);
    if (msg.type == MCPGW_MSG_TOOL_CALL) {
        assert(mcpgw_codec_tool_response(&out, id, 1, true, msg.params, msg.server_id,
                                         msg.tool_name) == 0);
        must_parse(&out);
        mcpgw_buf_reset(&out);
    }
    assert(mcpgw_codec_error(&out, id, 1, MCPGW_CODE_BAD_REQUEST,
                             msg.tool_name ? msg.tool_name : "x") == 0);
    must_parse(&out);
    mcpgw_buf_release(&out);
    mcpgw_msg_release(&msg);
    return 0;
}
