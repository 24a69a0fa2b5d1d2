/* codec.h - the typed JSON messages of the real-time protocol.
 *
 * Field names are fixed by our users' client code (docs/protocol.md):
 * every message has "type", "data", "timestamp" (ms since the epoch) and
 * "id" where it answers a request.
 *
 *   client -> server: ping, tool_call {serverId, toolName, params}, auth {token},
 *                     cancel (id = the call's id), list_servers, list_tools {serverId}
 *   server -> client: status {message, clientId, requiresAuth, ...}, pong,
 *                     tool_progress {progress, total, message},
 *                     tool_response {success, result, serverId, toolName},
 *                     error {error, code}
 *   SSE:              connected {type, timestamp, message}, heartbeat {type, timestamp}
 *
 * Decoding never trusts the input: size is checked before parsing, the
 * tokener has a depth cap and validates UTF-8, and every field is
 * type-checked.  Bad input gives a precise error (code "bad_request" or
 * "too_large") and, when it could be read, the message's id so the answer
 * can be matched.
 */
#ifndef MCPGW_CODEC_H
#define MCPGW_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "buf.h"
#include "limits.h"

/* The closed list of error codes (docs/protocol.md).  Any code sent to a
 * client is one of these strings. */
#define MCPGW_CODE_AUTH_REQUIRED      "auth_required"
#define MCPGW_CODE_AUTH_FAILED        "auth_failed"
#define MCPGW_CODE_FORBIDDEN          "forbidden"
#define MCPGW_CODE_BAD_REQUEST        "bad_request"
#define MCPGW_CODE_UNKNOWN_SERVER     "unknown_server"
#define MCPGW_CODE_UNKNOWN_TOOL       "unknown_tool"
#define MCPGW_CODE_TOOL_ERROR         "tool_error"
#define MCPGW_CODE_TIMEOUT            "timeout"
#define MCPGW_CODE_SERVER_UNAVAILABLE "server_unavailable"
#define MCPGW_CODE_TOO_LARGE          "too_large"
#define MCPGW_CODE_RATE_LIMITED       "rate_limited"
#define MCPGW_CODE_CANCELLED          "cancelled"
#define MCPGW_CODE_INTERNAL           "internal"

/* Whether code is on the closed list. */
bool mcpgw_codec_code_valid(const char *code);

enum mcpgw_msg_type {
    MCPGW_MSG_PING = 1,
    MCPGW_MSG_TOOL_CALL,
    MCPGW_MSG_AUTH,
    MCPGW_MSG_CANCEL,
    MCPGW_MSG_LIST_SERVERS,
    MCPGW_MSG_LIST_TOOLS
};

/* A decoded client message.  root, id_owned and store own everything; the
 * other pointers are borrowed from them and live until mcpgw_msg_release(). */
struct mcpgw_msg {
    enum mcpgw_msg_type type;
    json_object *root;
    json_object *id;            /* string or integer as sent; NULL if absent */
    const char *id_str;         /* id as text (a number printed), or NULL */
    const char *server_id;      /* tool_call, list_tools */
    const char *tool_name;      /* tool_call */
    json_object *params;        /* tool_call: an object (absent -> empty object) */
    bool progress;              /* tool_call: data.progress, true when absent: ask the
                                 * server for progress reports */
    const char *token;          /* auth */
    int64_t timestamp;          /* as sent, 0 if absent */
    /* A plain tool_call is decoded without a tree for its envelope: root
     * is then params itself, and these hold the rest. */
    json_object *id_owned;
    char *store;                /* server_id, tool_name (and id_str of an int) */
};

struct mcpgw_codec_limits {
    size_t max_bytes;           /* over: too_large */
    int max_depth;              /* deeper: bad_request */
};

/* Room for any valid id re-serialised: a string id of MCPGW_CALL_ID_MAX
 * bytes that are all control characters (each written as \u00XX), two
 * quotes and the NUL.  Size id_json buffers with this. */
#define MCPGW_CODEC_ID_JSON_SIZE (MCPGW_CALL_ID_MAX * 6 + 3)

/* Why a message was refused.  id_json is the message's "id" re-serialised
 * (e.g. "\"c1\"" or "7"), or empty when none could be read. */
struct mcpgw_codec_error {
    const char *code;           /* MCPGW_CODE_BAD_REQUEST or MCPGW_CODE_TOO_LARGE */
    char message[200];
    char id_json[MCPGW_CODEC_ID_JSON_SIZE];
};

/* Decode one client message of len bytes (need not be NUL-terminated).
 * 0: *msg filled, release with mcpgw_msg_release().
 * MCPGW_ETOOBIG or MCPGW_EPARSE: *err filled, *msg untouched.
 * Requires: "type" a known string; "id" a string (1..128 bytes) or integer for
 * every type but list_servers/ping, where it is optional; tool_call needs
 * data.serverId and data.toolName strings (1..64 / 1..128 bytes) and
 * data.params an object and data.progress a boolean if present; auth needs
 * data.token; list_tools
 * needs data.serverId. */
int mcpgw_codec_decode(const char *buf, size_t len, const struct mcpgw_codec_limits *lim,
                       struct mcpgw_msg *msg, struct mcpgw_codec_error *err);

/* Where a member's value lies in a JSON text: len 0 when absent. */
struct mcpgw_codec_span {
    size_t off, len;
};

/* The same strict scan as mcpgw_codec_parse_object (depth cap max_depth,
 * no size cap: the caller has one), of buf as one JSON object, building
 * nothing; spans[k] is where the value of its top-level member keys[k]
 * lies (the last one when a key repeats, as a parse keeps it).  Returns:
 *   0: valid; every span is a valid JSON value that can be copied out as
 *      it stands: no U+2028/U+2029 unescaped (mcpgw_buf_add_json_str
 *      escapes them), no number out of a double's range;
 *   1: valid, but not so: a top-level key written with an escape (it may
 *      name one of keys without matching it byte for byte), or either of
 *      the above: parse it instead;
 *   MCPGW_EPARSE: not valid, or not an object; -EINVAL. */
int mcpgw_codec_scan_members(const char *buf, size_t len, int max_depth,
                             const char *const *keys, size_t nkeys,
                             struct mcpgw_codec_span *spans);

/* The same strict parse, for any JSON object body (REST requests): size
 * first, then a strict RFC 8259 scan, the depth cap, UTF-8 validation, no
 * trailing data, no NaN, numbers in range.  0 and *out a new object (the
 * caller puts it); or MCPGW_ETOOBIG / MCPGW_EPARSE (-ENOMEM, -EINVAL) with
 * *err filled (code too_large / bad_request / internal) and *out NULL. */
int mcpgw_codec_parse_object(const char *buf, size_t len, const struct mcpgw_codec_limits *lim,
                             json_object **out, struct mcpgw_codec_error *err);
void mcpgw_msg_release(struct mcpgw_msg *msg);  /* NULL-safe, idempotent */

/* Encoders append one complete JSON text (no newline) to out.  Each returns
 * 0, or MCPGW_ETOOBIG/-ENOMEM with out unchanged.  id_json is an id already
 * serialised (from mcpgw_codec_id_json or an error's id_json); NULL or "" =
 * no "id" key.  Strings are escaped here; borrowed json_object arguments
 * are not modified. */
int mcpgw_codec_id_json(json_object *id, char *out, size_t outlen);

int mcpgw_codec_status(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                       const char *message, const char *client_id, bool requires_auth,
                       json_object *extra /* more data fields, may be NULL */);
int mcpgw_codec_pong(struct mcpgw_buf *out, const char *id_json, int64_t ts);
int mcpgw_codec_tool_progress(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                              double progress, const double *total /* NULL: none */,
                              const char *message /* NULL: none */);
int mcpgw_codec_tool_response(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                              bool success, json_object *result,
                              const char *server_id, const char *tool_name);
/* The same with the result as JSON text copied as it stands: only a span
 * for which mcpgw_codec_scan_members() returned 0 (-EINVAL if it is not an
 * object). */
int mcpgw_codec_tool_response_text(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                                   bool success, const char *result_json, size_t result_len,
                                   const char *server_id, const char *tool_name);
int mcpgw_codec_error(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                      const char *code, const char *message);
/* Generic: {"type":type,"id":…,"data":data,"timestamp":ts}. */
int mcpgw_codec_message(struct mcpgw_buf *out, const char *type, const char *id_json,
                        int64_t ts, json_object *data);

/* SSE payloads (the JSON after "data: "); they carry type at the top level. */
int mcpgw_codec_sse_connected(struct mcpgw_buf *out, int64_t ts, const char *message);
int mcpgw_codec_sse_heartbeat(struct mcpgw_buf *out, int64_t ts);

/* Any json-c value as JSON text, escaped and depth-capped like every
 * encoder here, without writing into the (borrowed) object. */
int mcpgw_codec_value(struct mcpgw_buf *out, json_object *v);

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t mcpgw_now_ms(void);

/* Once at the start of each thread that parses JSON on a hot path (an
 * event loop, a request worker).  json-c switches LC_NUMERIC to "C" around
 * every parse by copying the thread's locale; the global locale's copy is a
 * malloc, a getenv and a free per parse (about 0.2 us, 3-5 % of the
 * daemon's work per tool call).  A thread that already uses libc's C
 * locale object gets the same object back for nothing.  Nothing else
 * changes: mcpgw never calls setlocale(), so the global locale is "C" too. */
void mcpgw_codec_thread_init(void);

#endif
