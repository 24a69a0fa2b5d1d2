/* jsonrpc.h - JSON-RPC 2.0 messages on an MCP stdio link (internal).
 *
 * Messages are told apart by shape, never by id: MCP servers number their own
 * requests from 0, overlapping ours (mcp-stdio-facts §8).
 *   method + id          -> request (server asks us: ping, roots/list, ...)
 *   method, no id        -> notification (progress, list_changed, ...)
 *   id + result|error    -> response to one of our requests
 * Anything else, or a "jsonrpc" other than "2.0", is invalid.
 */
#ifndef MCPGW_JSONRPC_H
#define MCPGW_JSONRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "buf.h"

/* Our ids stay below 2^53: servers drop larger ones silently (§8). */
#define MCPGW__RPC_ID_MAX ((UINT64_C(1) << 53) - 1)

enum mcpgw__rpc_kind {
    MCPGW__RPC_INVALID = 0,
    MCPGW__RPC_REQUEST,
    MCPGW__RPC_NOTIFICATION,
    MCPGW__RPC_RESPONSE
};

/* A parsed message.  root owns everything; the rest are borrowed from it. */
struct mcpgw__rpc {
    enum mcpgw__rpc_kind kind;
    json_object *root;
    const char *method;         /* request, notification */
    json_object *id;            /* request, response */
    json_object *params;        /* may be NULL */
    json_object *result;        /* response: exactly one of result/error */
    json_object *error;
};

/* Parse one line with tok (reset here; its depth is the cap).  0 with *m
 * filled (kind may be INVALID for well-formed JSON of the wrong shape; root
 * is then set and must still be released), or MCPGW_EPARSE when the line is
 * not one JSON value (then nothing to release). */
int mcpgw__rpc_parse(json_tokener *tok, const char *line, size_t len, struct mcpgw__rpc *m);
void mcpgw__rpc_release(struct mcpgw__rpc *m);

/* id as one of our integer ids (1 .. MCPGW__RPC_ID_MAX)?  */
bool mcpgw__rpc_id_ours(json_object *id, uint64_t *out);

/* Recover a response id from the last bytes of a line too long to parse:
 * SDK servers serialise responses as {"result":…,"jsonrpc":"2.0","id":N}, so
 * the tail ends with "id":N}.  true and *id, or false. */
bool mcpgw__rpc_tail_id(const char *tail, size_t len, uint64_t *id);

/* Writers append one line, '\n' included.  params_json, result_json: JSON
 * text or NULL.  id_json: the peer's id re-serialised.  0 or a buf error
 * (buffer unchanged). */
int mcpgw__rpc_write_request(struct mcpgw_buf *b, uint64_t id, const char *method,
                             const char *params_json);
int mcpgw__rpc_write_notification(struct mcpgw_buf *b, const char *method,
                                  const char *params_json);
int mcpgw__rpc_write_result(struct mcpgw_buf *b, const char *id_json, const char *result_json);
int mcpgw__rpc_write_error(struct mcpgw_buf *b, const char *id_json, int code, const char *message);
/* tools/call with arguments already serialised, and an optional progress
 * token (0 = none). */
int mcpgw__rpc_write_tool_call(struct mcpgw_buf *b, uint64_t id, const char *tool,
                               const char *args_json, size_t args_len, uint64_t progress_token);

#endif
