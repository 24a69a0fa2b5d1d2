#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "err.h"
#include "jsonrpc.h"

int mcpgw__rpc_parse(json_tokener *tok, const char *line, size_t len, struct mcpgw__rpc *m)
{
    json_object *root, *v;
    bool has_id, has_result, has_error;

    memset(m, 0, sizeof(*m));
    json_tokener_reset(tok);
    root = json_tokener_parse_ex(tok, line, (int)len);
    if (!root || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != len) {
        json_object_put(root);
        return MCPGW_EPARSE;
    }
    m->root = root;
    if (!json_object_is_type(root, json_type_object))
        return 0;
    if (!json_object_object_get_ex(root, "jsonrpc", &v) ||
        !json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), "2.0") != 0)
        return 0;
    has_id = json_object_object_get_ex(root, "id", &m->id) && m->id;
    if (json_object_object_get_ex(root, "method", &v)) {
        if (!json_object_is_type(v, json_type_string))
            return 0;
        m->method = json_object_get_string(v);
        json_object_object_get_ex(root, "params", &m->params);
        m->kind = has_id ? MCPGW__RPC_REQUEST : MCPGW__RPC_NOTIFICATION;
        return 0;
    }
    has_result = json_object_object_get_ex(root, "result", &m->result);
    has_error = json_object_object_get_ex(root, "error", &m->error);
    if (has_id && has_result != has_error)
        m->kind = MCPGW__RPC_RESPONSE;
    return 0;
}

void mcpgw__rpc_release(struct mcpgw__rpc *m)
{
    json_object_put(m->root);
    memset(m, 0, sizeof(*m));
}

bool mcpgw__rpc_id_ours(json_object *id, uint64_t *out)
{
    int64_t v;

    if (!id || !json_object_is_type(id, json_type_int))
        return false;
    v = json_object_get_int64(id);
    if (v < 1 || (uint64_t)v > MCPGW__RPC_ID_MAX)
        return false;
    *out = (uint64_t)v;
    return true;
}

bool mcpgw__rpc_tail_id(const char *tail, size_t len, uint64_t *id)
{
    size_t end = len, digits;
    uint64_t v = 0;

    while (end && (tail[end - 1] == ' ' || tail[end - 1] == '\r'))
        end--;
    if (!end || tail[end - 1] != '}')
        return false;
    end--;
    digits = end;
    while (digits && tail[digits - 1] >= '0' && tail[digits - 1] <= '9')
        digits--;
    if (digits == end || end - digits > 16)
        return false;
    if (digits < 5 || memcmp(tail + digits - 5, "\"id\":", 5) != 0)
        return false;
    for (size_t i = digits; i < end; i++)
        v = v * 10 + (uint64_t)(tail[i] - '0');
    if (v < 1 || v > MCPGW__RPC_ID_MAX)
        return false;
    *id = v;
    return true;
}

/* Every writer appends whole or not at all, so a failed write never leaves
 * half a line in a server's output queue. */
#define ATOMIC_BEGIN size_t mark_ = b->len; int rc_
#define TRY(x) do { if ((rc_ = (x)) < 0) goto fail_; } while (0)
#define ATOMIC_END \
    return 0; \
fail_: \
    b->len = mark_; \
    if (b->ptr) \
        b->ptr[mark_] = '\0'; \
    return rc_

int mcpgw__rpc_write_request(struct mcpgw_buf *b, uint64_t id, const char *method,
                             const char *params_json)
{
    ATOMIC_BEGIN;
    TRY(mcpgw_buf_printf(b, "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",\"method\":", id));
    TRY(mcpgw_buf_add_json_str(b, method, strlen(method)));
    if (params_json) {
        TRY(mcpgw_buf_add(b, MCPGW_STRLIT(",\"params\":")));
        TRY(mcpgw_buf_adds(b, params_json));
    }
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT("}\n")));
    ATOMIC_END;
}

int mcpgw__rpc_write_notification(struct mcpgw_buf *b, const char *method,
                                  const char *params_json)
{
    ATOMIC_BEGIN;
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT("{\"jsonrpc\":\"2.0\",\"method\":")));
    TRY(mcpgw_buf_add_json_str(b, method, strlen(method)));
    if (params_json) {
        TRY(mcpgw_buf_add(b, MCPGW_STRLIT(",\"params\":")));
        TRY(mcpgw_buf_adds(b, params_json));
    }
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT("}\n")));
    ATOMIC_END;
}

int mcpgw__rpc_write_result(struct mcpgw_buf *b, const char *id_json, const char *result_json)
{
    ATOMIC_BEGIN;
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT("{\"jsonrpc\":\"2.0\",\"id\":")));
    TRY(mcpgw_buf_adds(b, id_json));
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT(",\"result\":")));
    TRY(mcpgw_buf_adds(b, result_json));
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT("}\n")));
    ATOMIC_END;
}

int mcpgw__rpc_write_error(struct mcpgw_buf *b, const char *id_json, int code, const char *message)
{
    ATOMIC_BEGIN;
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT("{\"jsonrpc\":\"2.0\",\"id\":")));
    TRY(mcpgw_buf_adds(b, id_json));
    TRY(mcpgw_buf_printf(b, ",\"error\":{\"code\":%d,\"message\":", code));
    TRY(mcpgw_buf_add_json_str(b, message, strlen(message)));
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT("}}\n")));
    ATOMIC_END;
}

int mcpgw__rpc_write_tool_call(struct mcpgw_buf *b, uint64_t id, const char *tool,
                               const char *args_json, size_t args_len, uint64_t progress_token)
{
    ATOMIC_BEGIN;
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT("{\"jsonrpc\":\"2.0\",\"id\":")));
    TRY(mcpgw_buf_add_u64(b, id));
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT(",\"method\":\"tools/call\",\"params\":{\"name\":")));
    TRY(mcpgw_buf_add_json_str(b, tool, strlen(tool)));
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT(",\"arguments\":")));
    TRY(mcpgw_buf_add(b, args_json, args_len));
    if (progress_token) {
        TRY(mcpgw_buf_add(b, MCPGW_STRLIT(",\"_meta\":{\"progressToken\":")));
        TRY(mcpgw_buf_add_u64(b, progress_token));
        TRY(mcpgw_buf_addc(b, '}'));
    }
    TRY(mcpgw_buf_add(b, MCPGW_STRLIT("}}\n")));
    ATOMIC_END;
}
