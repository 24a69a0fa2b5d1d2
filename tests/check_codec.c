#include "config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "err.h"
#include "limits.h"

/* Every input is copied into a heap block of exactly its length (no NUL
 * after it), so ASan catches any read past the end: messages arrive as
 * length-carrying buffers, never C strings. */
static int dec(const char *in, size_t len, const struct mcpgw_codec_limits *lim,
               struct mcpgw_msg *m, struct mcpgw_codec_error *e)
{
    char *copy = malloc(len ? len : 1);
    int rc;

    ck_assert_ptr_nonnull(copy);
    if (len)
        memcpy(copy, in, len);
    rc = mcpgw_codec_decode(copy, len, lim, m, e);
    free(copy);
    return rc;
}

static int decs(const char *in, struct mcpgw_msg *m, struct mcpgw_codec_error *e)
{
    return dec(in, strlen(in), NULL, m, e);
}

/* An oracle for UTF-8 written differently from the codec's (decode the
 * code point, then check its range), so the two cannot share a bug. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i], cp, need, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0)
            need = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            need = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            need = 3, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if (n - i - 1 < need)
            return false;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

static bool has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return true;
    return false;
}

/* Parse encoder output the strict way a client would, and check it is
 * one whole JSON text in valid UTF-8 with no raw control characters. */
static json_object *reparse(const char *s, size_t len)
{
    struct json_tokener *tok = json_tokener_new_ex(MCPGW_JSON_DEPTH_MAX + 8);
    json_object *o;

    ck_assert_ptr_nonnull(tok);
    ck_assert_msg(utf8_valid((const unsigned char *)s, len), "not UTF-8: %s", s);
    /* (One assertion, not one per byte: each costs Check a write.) */
    ck_assert_msg(!has_control(s, len), "raw control byte in %s", s);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)len);
    ck_assert_msg(o != NULL, "json-c refused %s: %s", s,
                  json_tokener_error_desc(json_tokener_get_error(tok)));
    ck_assert_int_eq(json_tokener_get_error(tok), json_tokener_success);
    ck_assert_uint_eq(json_tokener_get_parse_end(tok), len);
    json_tokener_free(tok);
    return o;
}

/* An id_json alone is a bare scalar: json-c needs the terminating NUL to
 * know a number has ended. */
static json_object *reparse_id(const char *s)
{
    struct json_tokener *tok = json_tokener_new_ex(2);
    json_object *o;

    ck_assert_ptr_nonnull(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)strlen(s) + 1);
    ck_assert_msg(json_tokener_get_error(tok) == json_tokener_success, "id_json %s", s);
    json_tokener_free(tok);
    return o;
}

static json_object *field(json_object *o, const char *key, json_type t)
{
    json_object *v = NULL;

    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no '%s'", key);
    ck_assert_msg(json_object_is_type(v, t), "'%s' is a %s", key,
                  json_type_to_name(json_object_get_type(v)));
    return v;
}

static void keys_are(json_object *o, const char *const *keys)
{
    struct json_object_iterator it = json_object_iter_begin(o);
    struct json_object_iterator end = json_object_iter_end(o);
    size_t i = 0;

    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it), i++) {
        ck_assert_ptr_nonnull(keys[i]);
        ck_assert_str_eq(json_object_iter_peek_name(&it), keys[i]);
    }
    ck_assert_ptr_null(keys[i]);
}

static json_object *parse_plain(const char *s)
{
    json_object *o = json_tokener_parse(s);

    ck_assert_ptr_nonnull(o);
    return o;
}

#define A8 "aaaaaaaa"
#define A40 A8 A8 A8 A8 A8
#define A64 A8 A8 A8 A8 A8 A8 A8 A8
#define A128 A64 A64
#define A512 A128 A128 A128 A128

/* The users' client code, byte for byte as JSON.stringify writes it. */
static const char example[] =
    "{\"type\":\"tool_call\",\"id\":\"search-1\",\"data\":{\"serverId\":\"memory\","
    "\"toolName\":\"search_nodes\",\"params\":{\"query\":\"x\"}},\"timestamp\":1764118923456}";

/* -- decoding: every client message ------------------------------------------ */

START_TEST(decode_users_tool_call)
{
    struct mcpgw_msg m;
    struct mcpgw_codec_error e;
    json_object *q;

    ck_assert_int_eq(decs(example, &m, &e), 0);
    ck_assert_int_eq(m.type, MCPGW_MSG_TOOL_CALL);
    ck_assert_ptr_nonnull(m.root);
    ck_assert(json_object_is_type(m.id, json_type_string));
    ck_assert_str_eq(m.id_str, "search-1");
    ck_assert_str_eq(m.server_id, "memory");
    ck_assert_str_eq(m.tool_name, "search_nodes");
    ck_assert(json_object_is_type(m.params, json_type_object));
    q = field(m.params, "query", json_type_string);
    ck_assert_str_eq(json_object_get_string(q), "x");
    ck_assert_int_eq(json_object_object_length(m.params), 1);
    ck_assert(m.progress);      /* absent: progress reports are wanted */
    ck_assert_ptr_null(m.token);
    ck_assert_int_eq(m.timestamp, 1764118923456LL);
    /* On success err is left cleared. */
    ck_assert_ptr_null(e.code);
    ck_assert_str_eq(e.message, "");
    ck_assert_str_eq(e.id_json, "");
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_tool_call_progress_flag)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(decs("{\"type\":\"tool_call\",\"id\":1,\"data\":{\"serverId\":\"s\","
                          "\"toolName\":\"t\",\"progress\":false}}", &m, NULL), 0);
    ck_assert(!m.progress);
    mcpgw_msg_release(&m);
    ck_assert_int_eq(decs("{\"type\":\"tool_call\",\"id\":1,\"data\":{\"serverId\":\"s\","
                          "\"toolName\":\"t\",\"progress\":true}}", &m, NULL), 0);
    ck_assert(m.progress);
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_tool_call_params_absent_or_null_become_owned_empty_object)
{
    static const char *const ins[] = {
        "{\"type\":\"tool_call\",\"id\":1,\"data\":{\"serverId\":\"s\",\"toolName\":\"t\"}}",
        "{\"type\":\"tool_call\",\"id\":1,\"data\":{\"serverId\":\"s\",\"toolName\":\"t\","
        "\"params\":null}}",
    };

    for (size_t i = 0; i < 2; i++) {
        struct mcpgw_msg m;
        json_object *data, *p;

        ck_assert_int_eq(decs(ins[i], &m, NULL), 0);
        ck_assert(json_object_is_type(m.params, json_type_object));
        ck_assert_int_eq(json_object_object_length(m.params), 0);
        /* The message owns it (valgrind proves the release frees it): as
         * root itself (a plain call) or inside root's data. */
        if (m.root != m.params) {
            data = field(m.root, "data", json_type_object);
            p = field(data, "params", json_type_object);
            ck_assert_ptr_eq(p, m.params);
        }
        mcpgw_msg_release(&m);
    }
}
END_TEST

START_TEST(decode_ping_with_and_without_id)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(decs("{\"type\":\"ping\"}", &m, NULL), 0);
    ck_assert_int_eq(m.type, MCPGW_MSG_PING);
    ck_assert_ptr_null(m.id);
    ck_assert_ptr_null(m.id_str);
    ck_assert_int_eq(m.timestamp, 0);
    mcpgw_msg_release(&m);

    ck_assert_int_eq(decs("{\"type\":\"ping\",\"id\":\"p-1\",\"data\":{},\"timestamp\":5}", &m,
                          NULL), 0);
    ck_assert_int_eq(m.type, MCPGW_MSG_PING);
    ck_assert_str_eq(m.id_str, "p-1");
    ck_assert_int_eq(m.timestamp, 5);
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_auth)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(decs("{\"type\":\"auth\",\"id\":\"a1\",\"data\":{\"token\":\"mcpgw_x_1\"},"
                          "\"timestamp\":1}", &m, NULL), 0);
    ck_assert_int_eq(m.type, MCPGW_MSG_AUTH);
    ck_assert_str_eq(m.id_str, "a1");
    ck_assert_str_eq(m.token, "mcpgw_x_1");
    ck_assert_ptr_null(m.server_id);
    ck_assert_ptr_null(m.params);
    mcpgw_msg_release(&m);
    /* The longest token allowed. */
    ck_assert_int_eq(decs("{\"type\":\"auth\",\"id\":\"a1\",\"data\":{\"token\":\"" A512 "\"}}", &m,
                          NULL), 0);
    ck_assert_uint_eq(strlen(m.token), MCPGW_TOKEN_BYTES_MAX);
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_cancel_carries_the_calls_id)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(decs("{\"type\":\"cancel\",\"id\":\"search-1\",\"timestamp\":2}", &m, NULL), 0);
    ck_assert_int_eq(m.type, MCPGW_MSG_CANCEL);
    ck_assert_str_eq(m.id_str, "search-1");
    mcpgw_msg_release(&m);
    ck_assert_int_eq(decs("{\"type\":\"cancel\",\"id\":42,\"data\":{}}", &m, NULL), 0);
    ck_assert_str_eq(m.id_str, "42");
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_list_servers_and_list_tools)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(decs("{\"type\":\"list_servers\"}", &m, NULL), 0);
    ck_assert_int_eq(m.type, MCPGW_MSG_LIST_SERVERS);
    ck_assert_ptr_null(m.id);
    mcpgw_msg_release(&m);
    ck_assert_int_eq(decs("{\"type\":\"list_servers\",\"id\":\"l1\"}", &m, NULL), 0);
    ck_assert_str_eq(m.id_str, "l1");
    mcpgw_msg_release(&m);
    ck_assert_int_eq(decs("{\"type\":\"list_tools\",\"id\":\"t1\",\"data\":{\"serverId\":\"memory\"}}",
                          &m, NULL), 0);
    ck_assert_int_eq(m.type, MCPGW_MSG_LIST_TOOLS);
    ck_assert_str_eq(m.id_str, "t1");
    ck_assert_str_eq(m.server_id, "memory");
    ck_assert_ptr_null(m.tool_name);
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_integer_ids_get_decimal_id_str)
{
    static const struct { const char *in, *id_str; } t[] = {
        { "{\"type\":\"ping\",\"id\":0}", "0" },
        { "{\"type\":\"ping\",\"id\":-5}", "-5" },
        { "{\"type\":\"ping\",\"id\":-0}", "0" },
        { "{\"type\":\"ping\",\"id\":9223372036854775807}", "9223372036854775807" },
        { "{\"type\":\"ping\",\"id\":-9223372036854775808}", "-9223372036854775808" },
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct mcpgw_msg m;
        char idj[MCPGW_CODEC_ID_JSON_SIZE];

        ck_assert_int_eq(decs(t[i].in, &m, NULL), 0);
        ck_assert(json_object_is_type(m.id, json_type_int));
        ck_assert_str_eq(m.id_str, t[i].id_str);
        ck_assert_int_eq(mcpgw_codec_id_json(m.id, idj, sizeof(idj)), 0);
        ck_assert_str_eq(idj, t[i].id_str);
        mcpgw_msg_release(&m);
    }
}
END_TEST

START_TEST(decode_string_id_limits_and_escapes)
{
    struct mcpgw_msg m;
    char idj[MCPGW_CODEC_ID_JSON_SIZE], in[2048];
    int n;

    /* 128 bytes: the longest id. */
    ck_assert_int_eq(decs("{\"type\":\"ping\",\"id\":\"" A128 "\"}", &m, NULL), 0);
    ck_assert_uint_eq(strlen(m.id_str), MCPGW_CALL_ID_MAX);
    mcpgw_msg_release(&m);

    /* Escapes are decoded; the id re-serialises to the same JSON value. */
    ck_assert_int_eq(decs("{\"type\":\"ping\",\"id\":\"q\\\"b\\\\\\u00e9\\ud83d\\ude00\"}", &m, NULL), 0);
    ck_assert_str_eq(m.id_str, "q\"b\\\xc3\xa9\xf0\x9f\x98\x80");
    ck_assert_int_eq(mcpgw_codec_id_json(m.id, idj, sizeof(idj)), 0);
    ck_assert_str_eq(idj, "\"q\\\"b\\\\\xc3\xa9\xf0\x9f\x98\x80\"");
    mcpgw_msg_release(&m);

    /* The worst case, 128 control characters, still fits id_json. */
    n = snprintf(in, sizeof(in), "{\"type\":\"ping\",\"id\":\"");
    for (int i = 0; i < MCPGW_CALL_ID_MAX; i++)
        n += snprintf(in + n, sizeof(in) - (size_t)n, "\\u0001");
    snprintf(in + n, sizeof(in) - (size_t)n, "\"}");
    ck_assert_int_eq(decs(in, &m, NULL), 0);
    ck_assert_int_eq(mcpgw_codec_id_json(m.id, idj, sizeof(idj)), 0);
    ck_assert_uint_eq(strlen(idj), MCPGW_CODEC_ID_JSON_SIZE - 1);
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_ignores_unknown_keys_and_takes_last_duplicate)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(decs("{\"v\":2,\"type\":\"tool_call\",\"id\":\"c\",\"client\":{\"x\":[1]},"
                          "\"data\":{\"toolName\":\"t\",\"extra\":true,\"serverId\":\"s\"}}", &m, NULL), 0);
    ck_assert_str_eq(m.server_id, "s");
    ck_assert_str_eq(m.tool_name, "t");
    mcpgw_msg_release(&m);
    /* Duplicate keys: the last one wins, as in JSON.parse. */
    ck_assert_int_eq(decs("{\"type\":\"bogus\",\"type\":\"ping\",\"id\":\"a\",\"id\":\"b\"}", &m, NULL),
                     0);
    ck_assert_int_eq(m.type, MCPGW_MSG_PING);
    ck_assert_str_eq(m.id_str, "b");
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_timestamp_forms)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(decs("{\"type\":\"ping\",\"timestamp\":1.5e12}", &m, NULL), 0);
    ck_assert_int_eq(m.timestamp, 1500000000000LL);
    mcpgw_msg_release(&m);
    ck_assert_int_eq(decs("{\"type\":\"ping\",\"timestamp\":-3}", &m, NULL), 0);
    ck_assert_int_eq(m.timestamp, -3);
    mcpgw_msg_release(&m);
    ck_assert_int_eq(decs("{\"type\":\"ping\",\"timestamp\":1e300}", &m, NULL), 0);
    ck_assert_int_eq(m.timestamp, INT64_MAX);
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_whitespace_around_and_inside_is_fine)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(decs(" \t\r\n{ \"type\" :\n\"tool_call\" , \"id\" : \"c\" , \"data\" : { "
                          "\"serverId\" : \"s\" , \"toolName\" : \"t\" , \"params\" : { \"a\" : [ 1 , "
                          "2.5 , true , false , null , \"x\" ] } } }\r\n\t ", &m, NULL), 0);
    ck_assert_str_eq(m.tool_name, "t");
    ck_assert_int_eq(json_object_array_length(field(m.params, "a", json_type_array)), 6);
    mcpgw_msg_release(&m);
}
END_TEST

/* The strict scan and json-c must agree on everything valid: a text the
 * scan accepts and json-c refused would come back as -ENOMEM. */
START_TEST(decode_accepts_every_rfc8259_form)
{
    static const char in[] =
        "{\"type\":\"tool_call\",\"id\":\"f\",\"data\":{\"serverId\":\"s\",\"toolName\":\"t\","
        "\"params\":{\"n\":[0,-0,1E5,1e-5,1.5E+2,-0.0e0,123456789012345678,-9223372036854775808,"
        "18446744073709551615,0.1e309,1e-400],"
        "\"s\":\"\\/\\b\\f\\r\\t\\n\\\"\\\\\\u00FF\\u00e9\\uD83D\\uDE00 \x7f"
        "\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\","
        "\"\":{},\"e\":[[],{}],\"l\":[true,false,null]}}}";
    struct mcpgw_msg m;
    json_object *n, *str;

    ck_assert_int_eq(decs(in, &m, NULL), 0);
    n = field(m.params, "n", json_type_array);
    ck_assert_int_eq(json_object_array_length(n), 11);
    ck_assert_int_eq(json_object_get_int64(json_object_array_get_idx(n, 7)), INT64_MIN);
    ck_assert_uint_eq(json_object_get_uint64(json_object_array_get_idx(n, 8)), UINT64_MAX);
    ck_assert_double_eq(json_object_get_double(json_object_array_get_idx(n, 10)), 0);
    str = field(m.params, "s", json_type_string);
    ck_assert_str_eq(json_object_get_string(str),
                     "/\b\f\r\t\n\"\\\xc3\xbf\xc3\xa9\xf0\x9f\x98\x80 \x7f\xc2\x80\xdf\xbf"
                     "\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
    mcpgw_msg_release(&m);
}
END_TEST

START_TEST(decode_release_is_null_safe_and_idempotent)
{
    struct mcpgw_msg m;

    mcpgw_msg_release(NULL);
    ck_assert_int_eq(decs(example, &m, NULL), 0);
    mcpgw_msg_release(&m);
    ck_assert_ptr_null(m.root);
    mcpgw_msg_release(&m);
}
END_TEST

static size_t put_prefix(char *in)
{
    static const char prefix[] = "{\"type\":\"ping\",\"x\":";

    memcpy(in, prefix, sizeof(prefix) - 1);
    return sizeof(prefix) - 1;
}

START_TEST(decode_null_limits_mean_defaults)
{
    char *in;
    size_t n = 0;
    struct mcpgw_msg m;
    struct mcpgw_codec_error e;

    /* MCPGW_JSON_DEPTH_DEFAULT levels pass, one more does not. */
    in = malloc(64 + 2 * MCPGW_JSON_DEPTH_DEFAULT);
    ck_assert_ptr_nonnull(in);
    n = put_prefix(in);
    for (int i = 1; i < MCPGW_JSON_DEPTH_DEFAULT; i++)
        in[n++] = '[';
    for (int i = 1; i < MCPGW_JSON_DEPTH_DEFAULT; i++)
        in[n++] = ']';
    in[n++] = '}';
    ck_assert_int_eq(dec(in, n, NULL, &m, &e), 0);
    mcpgw_msg_release(&m);

    n = put_prefix(in);
    for (int i = 0; i < MCPGW_JSON_DEPTH_DEFAULT; i++)
        in[n++] = '[';
    for (int i = 0; i < MCPGW_JSON_DEPTH_DEFAULT; i++)
        in[n++] = ']';
    in[n++] = '}';
    ck_assert_int_eq(dec(in, n, NULL, &m, &e), MCPGW_EPARSE);
    ck_assert_str_eq(e.message, "nesting deeper than " "64");
    free(in);
}
END_TEST

START_TEST(decode_limits_over_the_hard_caps_are_lowered)
{
    struct mcpgw_codec_limits lim = { SIZE_MAX, 100000 };
    struct mcpgw_codec_error e;
    struct mcpgw_msg m;
    size_t big = (size_t)MCPGW_MESSAGE_BYTES_MAX + 1, n;
    char *in = malloc(big), msg[200];

    /* Refused by length alone: the bytes are never read. */
    ck_assert_ptr_nonnull(in);
    ck_assert_int_eq(mcpgw_codec_decode(in, big, &lim, &m, &e), MCPGW_ETOOBIG);
    snprintf(msg, sizeof(msg), "message of %zu bytes is over the limit of %zu bytes", big,
             (size_t)MCPGW_MESSAGE_BYTES_MAX);
    ck_assert_str_eq(e.message, msg);
    ck_assert_str_eq(e.code, MCPGW_CODE_TOO_LARGE);

    n = put_prefix(in);
    for (int i = 0; i < MCPGW_JSON_DEPTH_MAX; i++)
        in[n++] = '[';
    for (int i = 0; i < MCPGW_JSON_DEPTH_MAX; i++)
        in[n++] = ']';
    in[n++] = '}';
    ck_assert_int_eq(dec(in, n, &lim, &m, &e), MCPGW_EPARSE);
    snprintf(msg, sizeof(msg), "nesting deeper than %d", MCPGW_JSON_DEPTH_MAX);
    ck_assert_str_eq(e.message, msg);
    free(in);
}
END_TEST

/* -- decoding: the bad-input table ------------------------------------------------ */

struct bad {
    const char *what;
    const char *in;
    int len;                /* -1: strlen(in) */
    int rc;
    const char *code;
    const char *message;
    const char *id_json;
    size_t max_bytes;       /* 0: default */
    int max_depth;          /* 0: default */
};

#define BR MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST
#define TC_DATA "\"data\":{\"serverId\":\"s\",\"toolName\":\"t\"}"

static const struct bad bad[] = {
    { "not JSON", "hello", -1, BR, "invalid JSON at byte 0: unexpected character", "", 0, 0 },
    { "empty", "", 0, BR, "empty message", "", 0, 0 },
    { "whitespace only", " \t\r\n ", -1, BR, "empty message", "", 0, 0 },
    { "array", "[{\"type\":\"ping\"}]", -1, BR, "message must be a JSON object", "", 0, 0 },
    { "string", "\"ping\"", -1, BR, "message must be a JSON object", "", 0, 0 },
    { "number", "42", -1, BR, "message must be a JSON object", "", 0, 0 },
    { "null", "null", -1, BR, "message must be a JSON object", "", 0, 0 },
    { "true", " true ", -1, BR, "message must be a JSON object", "", 0, 0 },
    { "missing type", "{\"id\":\"a\"}", -1, BR, "missing 'type'", "\"a\"", 0, 0 },
    { "type number", "{\"type\":7,\"id\":3}", -1, BR, "missing 'type'", "3", 0, 0 },
    { "type null", "{\"type\":null}", -1, BR, "missing 'type'", "", 0, 0 },
    { "unknown type", "{\"type\":\"subscribe\",\"id\":\"s1\"}", -1, BR,
      "unknown message type 'subscribe'", "\"s1\"", 0, 0 },
    { "type is case-sensitive", "{\"type\":\"PING\"}", -1, BR, "unknown message type 'PING'", "", 0, 0 },
    { "unknown type, long, cut", "{\"type\":\"" A64 "\"}", -1, BR,
      "unknown message type '" A40 "...'", "", 0, 0 },
    { "unknown type, control chars shown escaped", "{\"type\":\"a\\nb\\u0001\\u0000\"}", -1, BR,
      "unknown message type 'a\\x0ab\\x01\\x00'", "", 0, 0 },
    { "type with a NUL after a known name", "{\"type\":\"ping\\u0000\"}", -1, BR,
      "unknown message type 'ping\\x00'", "", 0, 0 },
    { "tool_call without id", "{\"type\":\"tool_call\"," TC_DATA "}", -1, BR, "missing 'id'", "", 0, 0 },
    { "auth without id", "{\"type\":\"auth\",\"data\":{\"token\":\"x\"}}", -1, BR, "missing 'id'", "",
      0, 0 },
    { "cancel without id", "{\"type\":\"cancel\"}", -1, BR, "missing 'id'", "", 0, 0 },
    { "list_tools without id", "{\"type\":\"list_tools\",\"data\":{\"serverId\":\"s\"}}", -1, BR,
      "missing 'id'", "", 0, 0 },
    { "id float", "{\"type\":\"tool_call\",\"id\":1.5," TC_DATA "}", -1, BR,
      "'id' must be a string or an integer", "", 0, 0 },
    { "id 1.0 is a float", "{\"type\":\"ping\",\"id\":1.0}", -1, BR,
      "'id' must be a string or an integer", "", 0, 0 },
    { "id 1e2 is a float", "{\"type\":\"ping\",\"id\":1e2}", -1, BR,
      "'id' must be a string or an integer", "", 0, 0 },
    { "id bool", "{\"type\":\"tool_call\",\"id\":true," TC_DATA "}", -1, BR,
      "'id' must be a string or an integer", "", 0, 0 },
    { "id null", "{\"type\":\"tool_call\",\"id\":null," TC_DATA "}", -1, BR,
      "'id' must be a string or an integer", "", 0, 0 },
    { "id object", "{\"type\":\"tool_call\",\"id\":{\"a\":1}," TC_DATA "}", -1, BR,
      "'id' must be a string or an integer", "", 0, 0 },
    { "id array", "{\"type\":\"tool_call\",\"id\":[1]," TC_DATA "}", -1, BR,
      "'id' must be a string or an integer", "", 0, 0 },
    { "id bad on an optional-id type too", "{\"type\":\"ping\",\"id\":false}", -1, BR,
      "'id' must be a string or an integer", "", 0, 0 },
    { "id above int64", "{\"type\":\"ping\",\"id\":9223372036854775808}", -1, BR,
      "'id' must be a string or an integer", "", 0, 0 },
    { "id too long", "{\"type\":\"tool_call\",\"id\":\"" A128 "a\"," TC_DATA "}", -1, BR,
      "'id' must be 1 to 128 bytes", "", 0, 0 },
    { "id empty string", "{\"type\":\"tool_call\",\"id\":\"\"," TC_DATA "}", -1, BR,
      "'id' must be 1 to 128 bytes", "", 0, 0 },
    { "id with U+0000", "{\"type\":\"tool_call\",\"id\":\"a\\u0000b\"," TC_DATA "}", -1, BR,
      "'id' must not contain \\u0000", "", 0, 0 },
    { "tool_call without data", "{\"type\":\"tool_call\",\"id\":\"c1\"}", -1, BR, "missing 'data'",
      "\"c1\"", 0, 0 },
    { "data array", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":[]}", -1, BR,
      "'data' must be an object", "\"c1\"", 0, 0 },
    { "data null", "{\"type\":\"tool_call\",\"id\":7,\"data\":null}", -1, BR,
      "'data' must be an object", "7", 0, 0 },
    { "data a string on ping", "{\"type\":\"ping\",\"data\":\"x\"}", -1, BR,
      "'data' must be an object", "", 0, 0 },
    { "serverId missing", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"toolName\":\"t\"}}", -1,
      BR, "missing 'data.serverId'", "\"c1\"", 0, 0 },
    { "serverId empty", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"\","
      "\"toolName\":\"t\"}}", -1, BR, "'data.serverId' must be 1 to 64 bytes", "\"c1\"", 0, 0 },
    { "serverId too long", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"" A64 "a\","
      "\"toolName\":\"t\"}}", -1, BR, "'data.serverId' must be 1 to 64 bytes", "\"c1\"", 0, 0 },
    { "serverId number", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":5,"
      "\"toolName\":\"t\"}}", -1, BR, "'data.serverId' must be a string", "\"c1\"", 0, 0 },
    { "serverId with U+0000", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":"
      "\"m\\u0000x\",\"toolName\":\"t\"}}", -1, BR, "'data.serverId' must not contain \\u0000",
      "\"c1\"", 0, 0 },
    { "toolName missing", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"s\"}}", -1,
      BR, "missing 'data.toolName'", "\"c1\"", 0, 0 },
    { "toolName too long", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"s\","
      "\"toolName\":\"" A128 "a\"}}", -1, BR, "'data.toolName' must be 1 to 128 bytes", "\"c1\"", 0, 0 },
    { "toolName null", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"s\","
      "\"toolName\":null}}", -1, BR, "'data.toolName' must be a string", "\"c1\"", 0, 0 },
    { "params array", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"s\","
      "\"toolName\":\"t\",\"params\":[]}}", -1, BR, "'data.params' must be an object", "\"c1\"", 0, 0 },
    { "params string", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"s\","
      "\"toolName\":\"t\",\"params\":\"{}\"}}", -1, BR, "'data.params' must be an object", "\"c1\"",
      0, 0 },
    { "params number", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"s\","
      "\"toolName\":\"t\",\"params\":0}}", -1, BR, "'data.params' must be an object", "\"c1\"", 0, 0 },
    { "progress string", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"s\","
      "\"toolName\":\"t\",\"progress\":\"no\"}}", -1, BR, "'data.progress' must be true or false",
      "\"c1\"", 0, 0 },
    { "progress null", "{\"type\":\"tool_call\",\"id\":\"c1\",\"data\":{\"serverId\":\"s\","
      "\"toolName\":\"t\",\"progress\":null}}", -1, BR, "'data.progress' must be true or false",
      "\"c1\"", 0, 0 },
    { "auth without token", "{\"type\":\"auth\",\"id\":\"a1\",\"data\":{}}", -1, BR,
      "missing 'data.token'", "\"a1\"", 0, 0 },
    { "auth without data", "{\"type\":\"auth\",\"id\":\"a1\"}", -1, BR, "missing 'data'", "\"a1\"",
      0, 0 },
    { "auth token empty", "{\"type\":\"auth\",\"id\":\"a1\",\"data\":{\"token\":\"\"}}", -1, BR,
      "'data.token' must be 1 to 512 bytes", "\"a1\"", 0, 0 },
    { "auth token too long", "{\"type\":\"auth\",\"id\":\"a1\",\"data\":{\"token\":\"" A512 "a\"}}", -1,
      BR, "'data.token' must be 1 to 512 bytes", "\"a1\"", 0, 0 },
    { "auth token a number", "{\"type\":\"auth\",\"id\":\"a1\",\"data\":{\"token\":123}}", -1, BR,
      "'data.token' must be a string", "\"a1\"", 0, 0 },
    { "list_tools without serverId", "{\"type\":\"list_tools\",\"id\":\"t1\",\"data\":{}}", -1, BR,
      "missing 'data.serverId'", "\"t1\"", 0, 0 },
    { "list_tools without data", "{\"type\":\"list_tools\",\"id\":\"t1\"}", -1, BR, "missing 'data'",
      "\"t1\"", 0, 0 },
    { "timestamp a string", "{\"type\":\"ping\",\"id\":\"p\",\"timestamp\":\"now\"}", -1, BR,
      "'timestamp' must be a number", "\"p\"", 0, 0 },
    { "timestamp null", "{\"type\":\"ping\",\"timestamp\":null}", -1, BR,
      "'timestamp' must be a number", "", 0, 0 },
    { "depth limit + 1", "{\"type\":\"ping\",\"data\":{\"a\":{\"b\":[{}]}}}", -1, BR,
      "nesting deeper than 4", "", 0, 4 },
    { "depth limit + 1 with a scalar inside", "{\"type\":\"ping\",\"data\":{\"a\":{\"b\":[[1]]}}}", -1,
      BR, "nesting deeper than 4", "", 0, 4 },
    { "max_bytes + 1", "{\"type\":\"ping\",\"id\":\"p\"} ", -1, MCPGW_ETOOBIG, MCPGW_CODE_TOO_LARGE,
      "message of 25 bytes is over the limit of 24 bytes", "", 24, 0 },
    { "trailing garbage", "{\"type\":\"ping\"} x", -1, BR, "trailing data after the message", "", 0, 0 },
    { "two objects", "{\"type\":\"ping\"}{\"type\":\"ping\"}", -1, BR,
      "trailing data after the message", "", 0, 0 },
    { "NUL after the object", "{\"type\":\"ping\"}\0", 16, BR, "trailing data after the message", "",
      0, 0 },
    { "embedded NUL in a string", "{\"type\":\"pi\0ng\"}", 16, BR, "invalid JSON at byte 11: NUL byte",
      "", 0, 0 },
    { "embedded NUL between tokens", "{\"type\":\0\"ping\"}", 16, BR, "invalid JSON at byte 8: NUL byte",
      "", 0, 0 },
    { "invalid UTF-8", "{\"type\":\"ping\",\"x\":\"\xff\"}", -1, BR,
      "invalid JSON at byte 20: invalid UTF-8", "", 0, 0 },
    { "overlong UTF-8 (2 bytes)", "{\"type\":\"ping\",\"x\":\"\xc0\xaf\"}", -1, BR,
      "invalid JSON at byte 20: invalid UTF-8", "", 0, 0 },
    { "overlong UTF-8 (3 bytes)", "{\"type\":\"ping\",\"x\":\"\xe0\x80\xaf\"}", -1, BR,
      "invalid JSON at byte 20: invalid UTF-8", "", 0, 0 },
    { "UTF-8 encoded surrogate", "{\"type\":\"ping\",\"x\":\"\xed\xa0\x80\"}", -1, BR,
      "invalid JSON at byte 20: invalid UTF-8", "", 0, 0 },
    { "UTF-8 above U+10FFFF", "{\"type\":\"ping\",\"x\":\"\xf4\x90\x80\x80\"}", -1, BR,
      "invalid JSON at byte 20: invalid UTF-8", "", 0, 0 },
    { "UTF-8 cut short", "{\"type\":\"ping\",\"x\":\"\xe2\x82\"}", -1, BR,
      "invalid JSON at byte 20: invalid UTF-8", "", 0, 0 },
    { "UTF-8 outside strings", "{\"type\":\"ping\",\xc3\xa9:1}", -1, BR,
      "invalid JSON at byte 15: unexpected character", "", 0, 0 },
    { "lone surrogate escape", "{\"type\":\"ping\",\"x\":\"\\ud800\"}", -1, BR,
      "invalid JSON at byte 20: unpaired surrogate escape", "", 0, 0 },
    { "lone low surrogate escape", "{\"type\":\"ping\",\"x\":\"\\udc00\"}", -1, BR,
      "invalid JSON at byte 20: unpaired surrogate escape", "", 0, 0 },
    { "high surrogate then a letter", "{\"type\":\"ping\",\"x\":\"\\ud800\\u0041\"}", -1, BR,
      "invalid JSON at byte 20: unpaired surrogate escape", "", 0, 0 },
    { "raw control character in a string", "{\"type\":\"ping\",\"x\":\"a\x01\"}", -1, BR,
      "invalid JSON at byte 21: control character in a string", "", 0, 0 },
    { "raw newline in a string", "{\"type\":\"ping\",\"x\":\"a\nb\"}", -1, BR,
      "invalid JSON at byte 21: control character in a string", "", 0, 0 },
    { "single quotes", "{'type':'ping'}", -1, BR, "invalid JSON at byte 1: unexpected character", "",
      0, 0 },
    { "NaN", "{\"type\":\"ping\",\"x\":NaN}", -1, BR, "invalid JSON at byte 19: unexpected character",
      "", 0, 0 },
    { "Infinity", "{\"type\":\"ping\",\"x\":-Infinity}", -1, BR,
      "invalid JSON at byte 20: invalid number", "", 0, 0 },
    { "trailing comma", "{\"type\":\"ping\",}", -1, BR, "invalid JSON at byte 15: unexpected character",
      "", 0, 0 },
    { "leading zero", "{\"type\":\"ping\",\"x\":01}", -1, BR,
      "invalid JSON at byte 20: unexpected character", "", 0, 0 },
    { "fraction without digits", "{\"type\":\"ping\",\"x\":1.}", -1, BR,
      "invalid JSON at byte 21: invalid number", "", 0, 0 },
    { "bad escape", "{\"type\":\"ping\",\"x\":\"\\x41\"}", -1, BR,
      "invalid JSON at byte 20: invalid escape", "", 0, 0 },
    { "bad \\u escape", "{\"type\":\"ping\",\"x\":\"\\u00zz\"}", -1, BR,
      "invalid JSON at byte 20: invalid \\u escape", "", 0, 0 },
    { "U+0000 in a key", "{\"type\":\"ping\",\"a\\u0000b\":1}", -1, BR,
      "invalid JSON at byte 17: \\u0000 in an object key", "", 0, 0 },
    { "unterminated string", "{\"type\":\"ping", -1, BR,
      "invalid JSON at byte 13: unexpected end of message", "", 0, 0 },
    { "integer beyond 64 bits", "{\"type\":\"ping\",\"x\":18446744073709551616}", -1, BR,
      "invalid JSON at byte 19: integer out of range", "", 0, 0 },
    { "negative integer beyond 64 bits", "{\"type\":\"ping\",\"x\":-9223372036854775809}", -1, BR,
      "invalid JSON at byte 19: integer out of range", "", 0, 0 },
    { "number beyond double", "{\"type\":\"ping\",\"id\":\"p\",\"x\":1e400}", -1, BR,
      "invalid JSON: number out of range", "", 0, 0 },
    { "byte order mark", "\xef\xbb\xbf{\"type\":\"ping\"}", -1, BR,
      "invalid JSON at byte 0: unexpected character", "", 0, 0 },
    { "comment", "{\"type\":\"ping\" /* hi */}", -1, BR,
      "invalid JSON at byte 15: unexpected character", "", 0, 0 },
    { "true misspelled", "{\"type\":\"ping\",\"x\":tru}", -1, BR,
      "invalid JSON at byte 22: unexpected character", "", 0, 0 },
    { "missing colon", "{\"type\" \"ping\"}", -1, BR, "invalid JSON at byte 8: unexpected character",
      "", 0, 0 },
    { "mismatched brackets", "{\"type\":\"ping\",\"x\":[1}", -1, BR,
      "invalid JSON at byte 21: unexpected character", "", 0, 0 },
};

START_TEST(decode_bad_input_table)
{
    const struct bad *b = &bad[_i];
    struct mcpgw_codec_limits lim = {
        b->max_bytes ? b->max_bytes : MCPGW_MESSAGE_BYTES_DEFAULT,
        b->max_depth ? b->max_depth : MCPGW_JSON_DEPTH_DEFAULT,
    };
    size_t len = b->len < 0 ? strlen(b->in) : (size_t)b->len;
    struct mcpgw_msg m, before;
    struct mcpgw_codec_error e;
    int rc;

    memset(&m, 0xa5, sizeof(m));
    before = m;
    rc = dec(b->in, len, &lim, &m, &e);
    ck_assert_msg(rc == b->rc, "%s: rc %d, want %d (%s)", b->what, rc, b->rc, e.message);
    ck_assert_msg(e.code && strcmp(e.code, b->code) == 0, "%s: code %s", b->what, e.code);
    ck_assert_msg(strcmp(e.message, b->message) == 0, "%s: message \"%s\", want \"%s\"", b->what,
                  e.message, b->message);
    ck_assert_msg(strcmp(e.id_json, b->id_json) == 0, "%s: id_json '%s', want '%s'", b->what,
                  e.id_json, b->id_json);
    ck_assert_msg(memcmp(&m, &before, sizeof(m)) == 0, "%s: msg was touched", b->what);
    ck_assert(mcpgw_codec_code_valid(e.code));
}
END_TEST

START_TEST(decode_exactly_at_limits_passes)
{
    static const char in[] = "{\"type\":\"ping\",\"id\":\"p\"}";
    static const char D1[] = "{\"type\":\"ping\"}";
    static const char D2[] = "{\"type\":\"ping\",\"data\":{}}";
    static const char D4E[] = "{\"type\":\"ping\",\"data\":{\"a\":{\"b\":[]}}}";
    static const char D4[] = "{\"type\":\"ping\",\"data\":{\"a\":{\"b\":[1]}}}";
    static const char D5[] = "{\"type\":\"ping\",\"data\":{\"a\":{\"b\":[{}]}}}";
    struct mcpgw_codec_limits lim = { sizeof(in) - 1, 4 };
    struct mcpgw_msg m;
    struct mcpgw_codec_error e;

    /* max_bytes exactly (the table has max_bytes + 1). */
    ck_assert_uint_eq(sizeof(in) - 1, 24);
    ck_assert_int_eq(dec(in, sizeof(in) - 1, &lim, &m, &e), 0);
    mcpgw_msg_release(&m);

    /* Depth 4 exactly, the innermost container empty and then holding a
     * scalar (json-c counts the scalar as a level; we do not). */
    lim.max_bytes = MCPGW_MESSAGE_BYTES_DEFAULT;
    ck_assert_int_eq(dec(D4E, strlen(D4E), &lim, &m, &e), 0);
    mcpgw_msg_release(&m);
    ck_assert_int_eq(dec(D4, strlen(D4), &lim, &m, &e), 0);
    mcpgw_msg_release(&m);
    ck_assert_int_eq(dec(D5, strlen(D5), &lim, &m, &e), MCPGW_EPARSE);
    ck_assert_str_eq(e.message, "nesting deeper than 4");
    lim.max_depth = 1;
    ck_assert_int_eq(dec(D1, strlen(D1), &lim, &m, &e), 0);
    mcpgw_msg_release(&m);
    ck_assert_int_eq(dec(D2, strlen(D2), &lim, &m, &e), MCPGW_EPARSE);
    ck_assert_str_eq(e.message, "nesting deeper than 1");
}
END_TEST

START_TEST(decode_err_may_be_null)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(decs("{\"type\":\"nope\"}", &m, NULL), MCPGW_EPARSE);
    ck_assert_int_eq(decs("[", &m, NULL), MCPGW_EPARSE);
}
END_TEST

/* 100,000 levels: refused at level 65 after reading 65 bytes, long before
 * json-c could recurse or allocate anything. */
START_TEST(decode_100000_deep_is_refused_fast)
{
    enum { DEEP = 100000 };
    static const char *const opens[] = { "[", "{\"a\":" };
    struct timespec t0, t1;

    for (size_t k = 0; k < 2; k++) {
        size_t ol = strlen(opens[k]), n = 0;
        char *in = malloc(DEEP * (ol + 1) + 1);
        struct mcpgw_msg m;
        struct mcpgw_codec_error e;
        double ms;

        ck_assert_ptr_nonnull(in);
        for (int i = 0; i < DEEP; i++, n += ol)
            memcpy(in + n, opens[k], ol);
        for (int i = 0; i < DEEP; i++)
            in[n++] = k ? '}' : ']';
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ck_assert_int_eq(mcpgw_codec_decode(in, n, NULL, &m, &e), MCPGW_EPARSE);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        ck_assert_str_eq(e.message, "nesting deeper than 64");
        ck_assert_msg(ms < 50, "took %.1f ms", ms);
        /* Unclosed too. */
        ck_assert_int_eq(mcpgw_codec_decode(in, n / 2, NULL, &m, &e), MCPGW_EPARSE);
        ck_assert_str_eq(e.message, "nesting deeper than 64");
        free(in);
    }
}
END_TEST

/* Messages arrive whole, but a truncated one must give a clean error at
 * every cut, never a crash or a read past the end. */
START_TEST(decode_every_prefix_is_a_clean_error)
{
    size_t n = (size_t)_i;
    struct mcpgw_msg m;
    struct mcpgw_codec_error e;
    char want[80];

    memset(&m, 0, sizeof(m));
    ck_assert_int_eq(dec(example, n, NULL, &m, &e), MCPGW_EPARSE);
    ck_assert_str_eq(e.code, MCPGW_CODE_BAD_REQUEST);
    if (n == 0)
        snprintf(want, sizeof(want), "empty message");
    else
        snprintf(want, sizeof(want), "invalid JSON at byte %zu: unexpected end of message", n);
    ck_assert_str_eq(e.message, want);
    ck_assert_ptr_null(m.root);
}
END_TEST

static const char pretty[] =
    "{\n  \"type\": \"tool_call\",\n  \"id\": 17,\n  \"data\": {\n    \"serverId\": \"everything\",\n"
    "    \"toolName\": \"get-sum\",\n    \"params\": { \"a\": -2.5e+3, \"b\": [true, false, null],"
    " \"c\": \"\\u00e9\\n\" }\n  },\n  \"timestamp\": 0\n}";

START_TEST(decode_every_prefix_of_a_pretty_message_is_a_clean_error)
{
    size_t n = (size_t)_i;
    struct mcpgw_msg m;
    struct mcpgw_codec_error e;
    int rc;

    rc = dec(pretty, n, NULL, &m, &e);
    ck_assert_int_eq(rc, MCPGW_EPARSE);
    ck_assert_str_eq(e.code, MCPGW_CODE_BAD_REQUEST);
    ck_assert(strncmp(e.message, "invalid JSON at byte ", 21) == 0 ||
              strcmp(e.message, "empty message") == 0);
}
END_TEST

START_TEST(decode_pretty_message_whole)
{
    struct mcpgw_msg m;

    ck_assert_int_eq(dec(pretty, strlen(pretty), NULL, &m, NULL), 0);
    ck_assert_str_eq(m.id_str, "17");
    ck_assert_str_eq(m.tool_name, "get-sum");
    ck_assert_double_eq(json_object_get_double(field(m.params, "a", json_type_double)), -2500.0);
    ck_assert_str_eq(json_object_get_string(field(m.params, "c", json_type_string)), "\xc3\xa9\n");
    mcpgw_msg_release(&m);
}
END_TEST

/* Mutated valid messages: the decoder says yes with every field sound, or
 * no with a bad_request and a readable reason; nothing else. */
START_TEST(decode_mutation_fuzz)
{
    static const char *const seeds[] = {
        example,
        "{\"type\":\"auth\",\"id\":9,\"data\":{\"token\":\"mcpgw_abc\"}}",
        "{\"type\":\"list_tools\",\"id\":\"x\",\"data\":{\"serverId\":\"m\"},\"timestamp\":1.5}",
        "{\"type\":\"ping\",\"id\":\"\\ud83d\\ude00\\u2028\"}",
        "{\"type\":\"cancel\",\"id\":\"c\",\"data\":{\"a\":[1,-2.5e3,\"\xc3\xa9\",{}]}}",
    };
    static const unsigned char spice[] = { '{', '}', '[', ']', '"', '\\', ':', ',', 0, 0xff, 0xc3,
                                           0xed, 'u', '0', '-', 'e', '.', ' ', '\n', 0x01 };
    unsigned seed = 12345;

    srand(seed);
    for (int iter = 0; iter < 10000; iter++) {
        const char *s = seeds[rand() % 5];
        size_t n = strlen(s);
        unsigned char buf[512];
        int muts = 1 + rand() % 4, rc;
        struct mcpgw_msg m;
        struct mcpgw_codec_error e;

        memcpy(buf, s, n);
        for (int k = 0; k < muts && n > 0; k++) {
            size_t at = (size_t)rand() % n;
            unsigned char c = rand() % 2 ? spice[rand() % (int)sizeof(spice)] : (unsigned char)rand();

            switch (rand() % 4) {
            case 0: buf[at] = c; break;
            case 1:
                if (n < sizeof(buf) - 1) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = c;
                    n++;
                }
                break;
            case 2: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
            default: n = at; break;
            }
        }
        rc = dec((const char *)buf, n, NULL, &m, &e);
        ck_assert_msg(rc == 0 || rc == MCPGW_EPARSE, "iteration %d: rc %d", iter, rc);
        if (rc == 0) {
            ck_assert(m.type >= MCPGW_MSG_PING && m.type <= MCPGW_MSG_LIST_TOOLS);
            if (m.type == MCPGW_MSG_TOOL_CALL) {
                ck_assert(m.server_id && m.tool_name && m.id_str);
                ck_assert(json_object_is_type(m.params, json_type_object));
                ck_assert(utf8_valid((const unsigned char *)m.tool_name, strlen(m.tool_name)));
            }
            if (m.type == MCPGW_MSG_AUTH)
                ck_assert(m.token && *m.token);
            if (m.id) {
                char idj[MCPGW_CODEC_ID_JSON_SIZE];
                struct mcpgw_buf out;
                json_object *o;

                ck_assert_int_eq(mcpgw_codec_id_json(m.id, idj, sizeof(idj)), 0);
                mcpgw_buf_init(&out, 4096);
                ck_assert_int_eq(mcpgw_codec_pong(&out, idj, 1), 0);
                o = reparse(out.ptr, out.len);
                ck_assert(json_object_equal(field(o, "id", json_object_get_type(m.id)), m.id));
                json_object_put(o);
                mcpgw_buf_release(&out);
            }
            mcpgw_msg_release(&m);
        } else {
            ck_assert_str_eq(e.code, MCPGW_CODE_BAD_REQUEST);
            ck_assert(e.message[0] != '\0');
            ck_assert(utf8_valid((const unsigned char *)e.message, strlen(e.message)));
            ck_assert(!has_control(e.message, strlen(e.message)));
            if (e.id_json[0]) {
                json_object *o = reparse_id(e.id_json);

                ck_assert(json_object_is_type(o, json_type_string) ||
                          json_object_is_type(o, json_type_int));
                json_object_put(o);
            }
        }
    }
}
END_TEST

/* -- encoding -------------------------------------------------------------------- */

static struct mcpgw_buf out;

static void out_setup(void)
{
    mcpgw_buf_init(&out, MCPGW_MESSAGE_BYTES_DEFAULT);
}

static void out_teardown(void)
{
    mcpgw_buf_release(&out);
}

START_TEST(encode_status_first_message)
{
    static const char *const top[] = { "type", "data", "timestamp", NULL };
    static const char *const dk[] = { "message", "clientId", "requiresAuth", NULL };
    json_object *o, *d;

    ck_assert_int_eq(mcpgw_codec_status(&out, NULL, 1764118923456LL, "connected to mcpgw", "c-1",
                                        true, NULL), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"status\",\"data\":{\"message\":\"connected to mcpgw\","
                     "\"clientId\":\"c-1\",\"requiresAuth\":true},\"timestamp\":1764118923456}");
    o = reparse(out.ptr, out.len);
    keys_are(o, top);
    ck_assert_str_eq(json_object_get_string(field(o, "type", json_type_string)), "status");
    ck_assert_int_eq(json_object_get_int64(field(o, "timestamp", json_type_int)), 1764118923456LL);
    d = field(o, "data", json_type_object);
    keys_are(d, dk);
    ck_assert_str_eq(json_object_get_string(field(d, "message", json_type_string)),
                     "connected to mcpgw");
    ck_assert_str_eq(json_object_get_string(field(d, "clientId", json_type_string)), "c-1");
    ck_assert(json_object_get_boolean(field(d, "requiresAuth", json_type_boolean)));
    json_object_put(o);
}
END_TEST

START_TEST(encode_status_after_auth_with_extra_fields)
{
    static const char *const top[] = { "type", "id", "data", "timestamp", NULL };
    json_object *extra = parse_plain("{\"authenticated\":true,\"tokenName\":\"ci\",\"message\":\"dup\","
                                     "\"scopes\":[\"memory:*\",\"everything:echo\"]}");
    const char *before = strdup(json_object_to_json_string_ext(extra, JSON_C_TO_STRING_PLAIN));
    json_object *o, *d, *sc;

    ck_assert_int_eq(mcpgw_codec_status(&out, "\"a1\"", 42, "authenticated", "c-7", false, extra), 0);
    /* The fixed fields win over the same keys in extra. */
    ck_assert_str_eq(out.ptr, "{\"type\":\"status\",\"id\":\"a1\",\"data\":{\"message\":\"authenticated\","
                     "\"clientId\":\"c-7\",\"requiresAuth\":false,\"authenticated\":true,"
                     "\"tokenName\":\"ci\",\"scopes\":[\"memory:*\",\"everything:echo\"]},"
                     "\"timestamp\":42}");
    o = reparse(out.ptr, out.len);
    keys_are(o, top);
    ck_assert_str_eq(json_object_get_string(field(o, "id", json_type_string)), "a1");
    d = field(o, "data", json_type_object);
    ck_assert(!json_object_get_boolean(field(d, "requiresAuth", json_type_boolean)));
    ck_assert(json_object_get_boolean(field(d, "authenticated", json_type_boolean)));
    ck_assert_str_eq(json_object_get_string(field(d, "tokenName", json_type_string)), "ci");
    sc = field(d, "scopes", json_type_array);
    ck_assert_int_eq(json_object_array_length(sc), 2);
    /* Borrowed arguments are not modified. */
    ck_assert_str_eq(json_object_to_json_string_ext(extra, JSON_C_TO_STRING_PLAIN), before);
    free((void *)before);
    json_object_put(o);
    json_object_put(extra);
}
END_TEST

START_TEST(encode_pong_echoes_the_ping_id)
{
    json_object *o;

    ck_assert_int_eq(mcpgw_codec_pong(&out, "\"p-1\"", 5), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"pong\",\"id\":\"p-1\",\"data\":{\"timestamp\":5},"
                     "\"timestamp\":5}");
    o = reparse(out.ptr, out.len);
    ck_assert_str_eq(json_object_get_string(field(o, "id", json_type_string)), "p-1");
    ck_assert_int_eq(json_object_get_int64(field(field(o, "data", json_type_object), "timestamp",
                                                 json_type_int)), 5);
    json_object_put(o);
    mcpgw_buf_reset(&out);
    ck_assert_int_eq(mcpgw_codec_pong(&out, "", 6), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"pong\",\"data\":{\"timestamp\":6},\"timestamp\":6}");
    mcpgw_buf_reset(&out);
    ck_assert_int_eq(mcpgw_codec_pong(&out, "-12", 7), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"pong\",\"id\":-12,\"data\":{\"timestamp\":7},"
                     "\"timestamp\":7}");
}
END_TEST

START_TEST(encode_tool_progress)
{
    double total = 4;
    json_object *o, *d;

    ck_assert_int_eq(mcpgw_codec_tool_progress(&out, "\"c1\"", 9, 1, &total, "step 1 of 4"), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"tool_progress\",\"id\":\"c1\",\"data\":{\"progress\":1,"
                     "\"total\":4,\"message\":\"step 1 of 4\"},\"timestamp\":9}");
    o = reparse(out.ptr, out.len);
    d = field(o, "data", json_type_object);
    ck_assert_int_eq(json_object_get_int(field(d, "progress", json_type_int)), 1);
    ck_assert_int_eq(json_object_get_int(field(d, "total", json_type_int)), 4);
    ck_assert_str_eq(json_object_get_string(field(d, "message", json_type_string)), "step 1 of 4");
    json_object_put(o);

    mcpgw_buf_reset(&out);
    ck_assert_int_eq(mcpgw_codec_tool_progress(&out, "7", 9, 0.5, NULL, NULL), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"tool_progress\",\"id\":7,\"data\":{\"progress\":0.5},"
                     "\"timestamp\":9}");
}
END_TEST

START_TEST(encode_numbers_shortest_and_never_nan)
{
    static const struct { double d; const char *text; } t[] = {
        { 1, "1" }, { -1, "-1" }, { 0, "0" }, { -0.0, "0" }, { 100, "100" }, { 0.5, "0.5" },
        { 0.1, "0.1" }, { 1.0 / 3, "0.3333333333333333" }, { 2.5e-7, "2.5e-07" },
        { 1e300, "1e+300" }, { -1e21, "-1e+21" }, { 9007199254740991.0, "9007199254740991" },
        { 9007199254740992.0, "9007199254740992" }, { 123456789012.0, "123456789012" },
        { NAN, "null" }, { INFINITY, "null" }, { -INFINITY, "null" },
    };
    unsigned long long bits = 0x9e3779b97f4a7c15ULL;

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char want[128];

        mcpgw_buf_reset(&out);
        ck_assert_int_eq(mcpgw_codec_tool_progress(&out, NULL, 0, t[i].d, NULL, NULL), 0);
        snprintf(want, sizeof(want), "{\"type\":\"tool_progress\",\"data\":{\"progress\":%s},"
                 "\"timestamp\":0}", t[i].text);
        ck_assert_str_eq(out.ptr, want);
        json_object_put(reparse(out.ptr, out.len));
    }
    /* Any finite double reads back as itself. */
    for (int i = 0; i < 10000; i++) {
        double d, back;
        json_object *o, *p;

        bits ^= bits << 13;
        bits ^= bits >> 7;
        bits ^= bits << 17;
        memcpy(&d, &bits, sizeof(d));
        mcpgw_buf_reset(&out);
        ck_assert_int_eq(mcpgw_codec_tool_progress(&out, NULL, 0, 1, &d, NULL), 0);
        o = reparse(out.ptr, out.len);
        ck_assert(json_object_object_get_ex(field(o, "data", json_type_object), "total", &p));
        if (!isfinite(d)) {
            ck_assert_ptr_null(p);
        } else {
            back = json_object_get_double(p);
            ck_assert_msg(back == d, "%.17g came back as %.17g (%s)", d, back, out.ptr);
        }
        json_object_put(o);
    }
}
END_TEST

START_TEST(encode_tool_response)
{
    static const char *const dk[] = { "success", "result", "serverId", "toolName", NULL };
    json_object *res = parse_plain("{\"content\":[{\"type\":\"text\",\"text\":\"Echo: hello\"}],"
                                   "\"isError\":false}");
    json_object *o, *d, *r;

    ck_assert_int_eq(mcpgw_codec_tool_response(&out, "\"search-1\"", 9, true, res, "memory",
                                               "search_nodes"), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"tool_response\",\"id\":\"search-1\",\"data\":{\"success\":true,"
                     "\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"Echo: hello\"}],"
                     "\"isError\":false},\"serverId\":\"memory\",\"toolName\":\"search_nodes\"},"
                     "\"timestamp\":9}");
    o = reparse(out.ptr, out.len);
    d = field(o, "data", json_type_object);
    keys_are(d, dk);
    ck_assert(json_object_get_boolean(field(d, "success", json_type_boolean)));
    r = field(d, "result", json_type_object);
    ck_assert(json_object_equal(r, res));
    ck_assert_str_eq(json_object_get_string(field(d, "serverId", json_type_string)), "memory");
    ck_assert_str_eq(json_object_get_string(field(d, "toolName", json_type_string)), "search_nodes");
    json_object_put(o);

    mcpgw_buf_reset(&out);
    ck_assert_int_eq(mcpgw_codec_tool_response(&out, "3", 1, false, NULL, "m", "t"), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"tool_response\",\"id\":3,\"data\":{\"success\":false,"
                     "\"result\":null,\"serverId\":\"m\",\"toolName\":\"t\"},\"timestamp\":1}");
    json_object_put(res);
}
END_TEST

/* A result built by a hostile MCP server: whatever the tree holds, the
 * output is valid JSON in valid UTF-8. */
START_TEST(encode_hostile_result_tree_stays_valid_json)
{
    json_object *res = json_object_new_object(), *arr = json_object_new_array(), *o, *d, *r;

    json_object_object_add(res, "k\x01\xff", json_object_new_string_len("a\0b\xff\xe2\x80\xa8", 7));
    json_object_object_add(res, "nan", json_object_new_double(NAN));
    json_object_object_add(res, "inf", json_object_new_double(-INFINITY));
    json_object_object_add(res, "u", json_object_new_uint64(UINT64_MAX));
    json_object_object_add(res, "i", json_object_new_int64(INT64_MIN));
    json_object_object_add(res, "d", json_object_new_double_s(0.25, "garbage text"));
    json_object_array_add(arr, NULL);
    json_object_array_add(arr, json_object_new_boolean(1));
    json_object_array_add(arr, json_object_new_boolean(0));
    json_object_array_add(arr, json_object_new_array());
    json_object_object_add(res, "arr", arr);
    json_object_object_add(res, "e", json_object_new_object());

    ck_assert_int_eq(mcpgw_codec_tool_response(&out, NULL, 0, true, res, "s", "t"), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"tool_response\",\"data\":{\"success\":true,\"result\":{"
                     "\"k\\u0001\xef\xbf\xbd\":\"a\\u0000b\xef\xbf\xbd\\u2028\",\"nan\":null,\"inf\":null,"
                     "\"u\":18446744073709551615,\"i\":-9223372036854775808,\"d\":0.25,"
                     "\"arr\":[null,true,false,[]],\"e\":{}},\"serverId\":\"s\",\"toolName\":\"t\"},"
                     "\"timestamp\":0}");
    o = reparse(out.ptr, out.len);
    d = field(o, "data", json_type_object);
    r = field(d, "result", json_type_object);
    ck_assert_uint_eq(json_object_get_uint64(field(r, "u", json_type_int)), UINT64_MAX);
    ck_assert_int_eq(json_object_get_int64(field(r, "i", json_type_int)), INT64_MIN);
    json_object_put(o);
    json_object_put(res);
}
END_TEST

START_TEST(encode_tree_depth_cap)
{
    json_object *root = json_object_new_array(), *cur = root;
    size_t mark;

    for (int i = 1; i < MCPGW_JSON_DEPTH_MAX; i++) {
        json_object *next = json_object_new_array();

        json_object_array_add(cur, next);
        cur = next;
    }
    ck_assert_int_eq(mcpgw_codec_tool_response(&out, NULL, 0, true, root, "s", "t"), 0);
    json_object_put(reparse(out.ptr, out.len));
    json_object_array_add(cur, json_object_new_array());
    ck_assert_int_eq(mcpgw_buf_adds(&out, "|"), 0);
    mark = out.len;
    ck_assert_int_eq(mcpgw_codec_tool_response(&out, NULL, 0, true, root, "s", "t"), MCPGW_ETOOBIG);
    ck_assert_uint_eq(out.len, mark);
    ck_assert_int_eq(out.ptr[mark], '\0');
    json_object_put(root);
}
END_TEST

/* The serialiser on its own: the same guarantees as inside a message. */
START_TEST(encode_value_alone)
{
    json_object *v = parse_plain("{\"a\":[1,2.5,\"x\\u2028\",null,{}],\"b\":true}");
    json_object *deep = json_object_new_array(), *cur = deep;
    size_t mark;

    ck_assert_int_eq(mcpgw_codec_value(&out, v), 0);
    ck_assert_str_eq(out.ptr, "{\"a\":[1,2.5,\"x\\u2028\",null,{}],\"b\":true}");
    mcpgw_buf_reset(&out);
    ck_assert_int_eq(mcpgw_codec_value(&out, NULL), 0);
    ck_assert_str_eq(out.ptr, "null");
    mcpgw_buf_reset(&out);
    ck_assert_int_eq(mcpgw_codec_value(&out, json_object_array_get_idx(json_object_object_get(v, "a"), 2)),
                     0);
    ck_assert_str_eq(out.ptr, "\"x\\u2028\"");

    for (int i = 0; i < MCPGW_JSON_DEPTH_MAX; i++) {
        json_object *next = json_object_new_array();

        json_object_array_add(cur, next);
        cur = next;
    }
    mark = out.len;
    ck_assert_int_eq(mcpgw_codec_value(&out, deep), MCPGW_ETOOBIG);
    ck_assert_uint_eq(out.len, mark);
    ck_assert_int_eq(out.ptr[mark], '\0');
    json_object_put(deep);
    json_object_put(v);
}
END_TEST

START_TEST(encode_error_every_code)
{
    static const char *const all[] = {
        "auth_required", "auth_failed", "forbidden", "bad_request", "unknown_server", "unknown_tool",
        "tool_error", "timeout", "server_unavailable", "too_large", "rate_limited", "cancelled",
        "internal",
    };

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        char want[256];
        json_object *o, *d;

        mcpgw_buf_reset(&out);
        ck_assert_int_eq(mcpgw_codec_error(&out, "\"c1\"", 3, all[i], "what happened"), 0);
        snprintf(want, sizeof(want), "{\"type\":\"error\",\"id\":\"c1\",\"data\":{\"error\":"
                 "\"what happened\",\"code\":\"%s\"},\"timestamp\":3}", all[i]);
        ck_assert_str_eq(out.ptr, want);
        o = reparse(out.ptr, out.len);
        d = field(o, "data", json_type_object);
        ck_assert_str_eq(json_object_get_string(field(d, "code", json_type_string)), all[i]);
        ck_assert_str_eq(json_object_get_string(field(d, "error", json_type_string)), "what happened");
        json_object_put(o);
    }
    mcpgw_buf_reset(&out);
    ck_assert_int_eq(mcpgw_codec_error(&out, NULL, 3, MCPGW_CODE_BAD_REQUEST, "x"), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"error\",\"data\":{\"error\":\"x\",\"code\":\"bad_request\"},"
                     "\"timestamp\":3}");
}
END_TEST

START_TEST(encode_generic_message)
{
    json_object *data = parse_plain("{\"servers\":[{\"id\":\"memory\",\"state\":\"ready\",\"tools\":9}]}");

    ck_assert_int_eq(mcpgw_codec_message(&out, "server_list", "\"l1\"", 3, data), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"server_list\",\"id\":\"l1\",\"data\":{\"servers\":[{\"id\":"
                     "\"memory\",\"state\":\"ready\",\"tools\":9}]},\"timestamp\":3}");
    json_object_put(reparse(out.ptr, out.len));
    mcpgw_buf_reset(&out);
    ck_assert_int_eq(mcpgw_codec_message(&out, "t\"x", NULL, 4, NULL), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"t\\\"x\",\"data\":{},\"timestamp\":4}");
    json_object_put(data);
}
END_TEST

START_TEST(encode_sse_payloads)
{
    json_object *o;

    ck_assert_int_eq(mcpgw_codec_sse_connected(&out, 1764118923456LL, "event stream open"), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"connected\",\"timestamp\":1764118923456,"
                     "\"message\":\"event stream open\"}");
    o = reparse(out.ptr, out.len);
    ck_assert(!json_object_object_get_ex(o, "data", NULL));
    json_object_put(o);
    mcpgw_buf_reset(&out);
    ck_assert_int_eq(mcpgw_codec_sse_heartbeat(&out, 77), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"heartbeat\",\"timestamp\":77}");
}
END_TEST

START_TEST(encode_escaping)
{
    static const char in[] = "q\" b\\ n\n r\r t\t c\x01 e\x1f d\x7f \xc3\xa9 \xf0\x9f\x98\x80 "
                             "l\xe2\x80\xa8 p\xe2\x80\xa9 /</script>";
    json_object *o, *d;

    ck_assert_int_eq(mcpgw_codec_error(&out, NULL, 0, MCPGW_CODE_TOOL_ERROR, in), 0);
    ck_assert_str_eq(out.ptr, "{\"type\":\"error\",\"data\":{\"error\":\"q\\\" b\\\\ n\\n r\\r t\\t "
                     "c\\u0001 e\\u001f d\x7f \xc3\xa9 \xf0\x9f\x98\x80 l\\u2028 p\\u2029 /</script>\","
                     "\"code\":\"tool_error\"},\"timestamp\":0}");
    o = reparse(out.ptr, out.len);
    d = field(o, "data", json_type_object);
    ck_assert_str_eq(json_object_get_string(field(d, "error", json_type_string)), in);
    json_object_put(o);
}
END_TEST

START_TEST(encode_invalid_utf8_becomes_replacement_characters)
{
    static const struct { const char *in, *want; } t[] = {
        { "a\xff" "b", "a\xef\xbf\xbd" "b" },
        { "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },
        { "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
        { "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
        { "x\xe2\x82", "x\xef\xbf\xbd\xef\xbf\xbd" },
        { "\x80", "\xef\xbf\xbd" },
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        json_object *o;

        mcpgw_buf_reset(&out);
        ck_assert_int_eq(mcpgw_codec_sse_connected(&out, 0, t[i].in), 0);
        o = reparse(out.ptr, out.len);
        ck_assert_str_eq(json_object_get_string(field(o, "message", json_type_string)), t[i].want);
        json_object_put(o);
    }
}
END_TEST

/* Error messages built from random bytes (as a broken tool may send). */
START_TEST(encode_random_bytes_fuzz)
{
    unsigned char msg[96];

    srand(20261126);
    for (int iter = 0; iter < 10000; iter++) {
        size_t n = (size_t)(rand() % 80);
        json_object *o, *d;
        const char *back;

        for (size_t i = 0; i < n; i++) {
            int r = rand() % 8;

            /* Bias towards the interesting bytes. */
            msg[i] = (unsigned char)(r == 0 ? 0xe2 : r == 1 ? 0x80 + rand() % 0x40 :
                                     r == 2 ? 1 + rand() % 0x1f : 1 + rand() % 255);
        }
        msg[n] = '\0';
        mcpgw_buf_reset(&out);
        ck_assert_int_eq(mcpgw_codec_error(&out, "\"f\"", iter, MCPGW_CODE_TOOL_ERROR,
                                           (const char *)msg), 0);
        o = reparse(out.ptr, out.len);
        d = field(o, "data", json_type_object);
        back = json_object_get_string(field(d, "error", json_type_string));
        ck_assert(utf8_valid((const unsigned char *)back, strlen(back)));
        if (utf8_valid(msg, strlen((const char *)msg)))
            ck_assert_str_eq(back, (const char *)msg);
        json_object_put(o);
    }
}
END_TEST

/* On any failure the buffer is exactly as before: no half message. */
START_TEST(encode_failure_leaves_out_unchanged)
{
    json_object *res = parse_plain("{\"content\":[{\"type\":\"text\",\"text\":\"0123456789abcdef\"}]}");
    json_object *extra = parse_plain("{\"authenticated\":true,\"scopes\":[\"*\"]}");
    size_t full;

    for (int which = 0; which < 4; which++) {
        struct mcpgw_buf probe;
        double total = 3;

        mcpgw_buf_init(&probe, 4096);
        ck_assert_int_eq(mcpgw_buf_adds(&probe, "PREFIX"), 0);
        switch (which) {
        case 0: ck_assert_int_eq(mcpgw_codec_tool_response(&probe, "\"c\"", 1, true, res, "s", "t"), 0); break;
        case 1: ck_assert_int_eq(mcpgw_codec_status(&probe, "\"c\"", 1, "m", "c", true, extra), 0); break;
        case 2: ck_assert_int_eq(mcpgw_codec_tool_progress(&probe, "\"c\"", 1, 1, &total, "m"), 0); break;
        default: ck_assert_int_eq(mcpgw_codec_error(&probe, "\"c\"", 1, "timeout", "slow \xff"), 0); break;
        }
        full = probe.len;
        mcpgw_buf_release(&probe);
        for (size_t max = 6; max <= full; max++) {
            int rc;

            mcpgw_buf_init(&probe, max);
            ck_assert_int_eq(mcpgw_buf_adds(&probe, "PREFIX"), 0);
            switch (which) {
            case 0: rc = mcpgw_codec_tool_response(&probe, "\"c\"", 1, true, res, "s", "t"); break;
            case 1: rc = mcpgw_codec_status(&probe, "\"c\"", 1, "m", "c", true, extra); break;
            case 2: rc = mcpgw_codec_tool_progress(&probe, "\"c\"", 1, 1, &total, "m"); break;
            default: rc = mcpgw_codec_error(&probe, "\"c\"", 1, "timeout", "slow \xff"); break;
            }
            if (max < full) {
                ck_assert_int_eq(rc, MCPGW_ETOOBIG);
                ck_assert_uint_eq(probe.len, 6);
                ck_assert_str_eq(probe.ptr, "PREFIX");
            } else {
                ck_assert_int_eq(rc, 0);
                json_object_put(reparse(probe.ptr + 6, probe.len - 6));
            }
            mcpgw_buf_release(&probe);
        }
    }
    json_object_put(res);
    json_object_put(extra);
}
END_TEST

START_TEST(encode_refuses_bad_arguments_without_writing)
{
    json_object *arr = json_object_new_array();
    static const char *const bad_ids[] = {
        "abc", "\"open", "1.5", "{}", "[1]", "\"a\"x", " 1", "1 ", "--1", "\"a\\q\"", "null", "true",
        "\"\x01\"",
    };

    ck_assert_int_eq(mcpgw_buf_adds(&out, "K"), 0);
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++)
        ck_assert_msg(mcpgw_codec_pong(&out, bad_ids[i], 1) == -EINVAL, "%s", bad_ids[i]);
    ck_assert_int_eq(mcpgw_codec_error(&out, NULL, 1, "nope", "m"), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_error(&out, NULL, 1, NULL, "m"), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_error(&out, NULL, 1, "timeout", NULL), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_status(&out, NULL, 1, NULL, "c", true, NULL), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_status(&out, NULL, 1, "m", NULL, true, NULL), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_status(&out, NULL, 1, "m", "c", true, arr), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_tool_response(&out, NULL, 1, true, NULL, NULL, "t"), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_tool_response(&out, NULL, 1, true, NULL, "s", NULL), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_message(&out, NULL, NULL, 1, NULL), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_message(&out, "", NULL, 1, NULL), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_message(&out, "x", NULL, 1, arr), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_sse_connected(&out, 1, NULL), -EINVAL);
    ck_assert_str_eq(out.ptr, "K");
    ck_assert_uint_eq(out.len, 1);
    json_object_put(arr);
}
END_TEST

START_TEST(id_json_forms)
{
    char buf[MCPGW_CODEC_ID_JSON_SIZE];
    json_object *s = json_object_new_string("c1"), *i = json_object_new_int64(INT64_MIN);
    json_object *d = json_object_new_double(1.5), *b = json_object_new_boolean(1);

    ck_assert_int_eq(mcpgw_codec_id_json(NULL, buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(mcpgw_codec_id_json(s, buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "\"c1\"");
    ck_assert_int_eq(mcpgw_codec_id_json(i, buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "-9223372036854775808");
    ck_assert_int_eq(mcpgw_codec_id_json(d, buf, sizeof(buf)), -EINVAL);
    ck_assert_int_eq(mcpgw_codec_id_json(b, buf, sizeof(buf)), -EINVAL);
    /* "\"c1\"" needs 5 bytes with its NUL. */
    ck_assert_int_eq(mcpgw_codec_id_json(s, buf, 5), 0);
    ck_assert_int_eq(mcpgw_codec_id_json(s, buf, 4), MCPGW_ETOOBIG);
    ck_assert_int_eq(mcpgw_codec_id_json(i, buf, 20), MCPGW_ETOOBIG);
    ck_assert_int_eq(mcpgw_codec_id_json(NULL, buf, 0), MCPGW_ETOOBIG);
    json_object_put(s);
    json_object_put(i);
    json_object_put(d);
    json_object_put(b);
}
END_TEST

/* The id a client sent comes back byte-identical in the answer, through
 * decode -> id_json -> encode -> the client's JSON.parse. */
START_TEST(id_round_trips_from_call_to_answer)
{
    static const char *const ins[] = {
        "{\"type\":\"cancel\",\"id\":\"q\\\"\\\\\\/\\u2028\\u0007\\ud83d\\ude00\\u00e9\"}",
        "{\"type\":\"cancel\",\"id\":-9223372036854775808}",
        "{\"type\":\"cancel\",\"id\":\"" A128 "\"}",
    };

    for (size_t k = 0; k < sizeof(ins) / sizeof(ins[0]); k++) {
        struct mcpgw_msg m;
        char idj[MCPGW_CODEC_ID_JSON_SIZE];
        json_object *o;

        ck_assert_int_eq(decs(ins[k], &m, NULL), 0);
        ck_assert_int_eq(mcpgw_codec_id_json(m.id, idj, sizeof(idj)), 0);
        mcpgw_buf_reset(&out);
        ck_assert_int_eq(mcpgw_codec_error(&out, idj, 1, MCPGW_CODE_CANCELLED, "cancelled"), 0);
        o = reparse(out.ptr, out.len);
        ck_assert(json_object_equal(field(o, "id", json_object_get_type(m.id)), m.id));
        json_object_put(o);
        mcpgw_msg_release(&m);
    }
}
END_TEST

START_TEST(code_valid_is_the_closed_list)
{
    static const char *const yes[] = {
        MCPGW_CODE_AUTH_REQUIRED, MCPGW_CODE_AUTH_FAILED, MCPGW_CODE_FORBIDDEN,
        MCPGW_CODE_BAD_REQUEST, MCPGW_CODE_UNKNOWN_SERVER, MCPGW_CODE_UNKNOWN_TOOL,
        MCPGW_CODE_TOOL_ERROR, MCPGW_CODE_TIMEOUT, MCPGW_CODE_SERVER_UNAVAILABLE,
        MCPGW_CODE_TOO_LARGE, MCPGW_CODE_RATE_LIMITED, MCPGW_CODE_CANCELLED, MCPGW_CODE_INTERNAL,
    };
    static const char *const no[] = { "", "ok", "Internal", "internal ", " timeout", "error",
                                      "tool-error", "cancelled\n", "unknown" };

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        ck_assert_msg(mcpgw_codec_code_valid(yes[i]), "%s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        ck_assert_msg(!mcpgw_codec_code_valid(no[i]), "%s", no[i]);
    ck_assert(!mcpgw_codec_code_valid(NULL));
    /* Every code err.c maps an error to is on the list. */
    for (int rc = MCPGW_ELAST; rc <= 0; rc++)
        ck_assert(mcpgw_codec_code_valid(mcpgw_err_code(rc)));
    ck_assert(mcpgw_codec_code_valid(mcpgw_err_code(-ENOMEM)));
}
END_TEST

/* REST bodies get exactly the WebSocket decoder's strictness. */
START_TEST(parse_object_is_as_strict_as_decode)
{
    static const struct {
        const char *in;
        int rc;
        const char *message;
    } rows[] = {
        { "{\"serverId\":\"m\",\"params\":{\"a\":[1,2.5,\"\\u00e9\"]}}", 0, "" },
        { "{\"a\":NaN}", MCPGW_EPARSE, "invalid JSON at byte 5: " },
        { "{\"a\":\"\\ud800\"}", MCPGW_EPARSE, "invalid JSON at byte " },
        { "{\"a\":1} x", MCPGW_EPARSE, "trailing data after the message" },
        { "[1]", MCPGW_EPARSE, "message must be a JSON object" },
        { "", MCPGW_EPARSE, "empty message" },
        { "{\"a\":[[[[[[[[[[1]]]]]]]]]]}", MCPGW_EPARSE, "nesting deeper than 8" },
        { "{\"a\":\"0123456789012345678901234567890123456789\"}", MCPGW_ETOOBIG,
          "message of 48 bytes is over the limit of 40 bytes" },
    };
    struct mcpgw_codec_limits lim = { 40, 8 };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mcpgw_codec_error err;
        json_object *o = (json_object *)1;
        struct mcpgw_codec_limits l = lim;
        int rc;

        if (i == 0)
            l.max_bytes = 4096;
        rc = mcpgw_codec_parse_object(rows[i].in, strlen(rows[i].in), &l, &o, &err);
        ck_assert_msg(rc == rows[i].rc, "row %zu: rc %d", i, rc);
        if (rc == 0) {
            ck_assert(json_object_is_type(o, json_type_object));
            json_object_put(o);
        } else {
            ck_assert_ptr_null(o);
            ck_assert_msg(strncmp(err.message, rows[i].message, strlen(rows[i].message)) == 0,
                          "row %zu: %s", i, err.message);
        }
    }
}
END_TEST

/* In a fresh thread, as a worker would call it: the thread switches to the
 * one C locale object, twice gives the same object (nothing allocated per
 * call), numbers still parse, and on glibc copying that locale (what
 * json-c does around every parse) is free: the same object comes back. */
static void *thread_init_body(void *arg)
{
    const char *s = "{\"a\":1.5e3,\"b\":-0.25}";
    json_object *o = NULL, *v;
    locale_t first;
    char text[16];
    int *ok = arg;

    if (uselocale((locale_t)0) != LC_GLOBAL_LOCALE)
        return NULL;
    mcpgw_codec_thread_init();
    first = uselocale((locale_t)0);
    if (first == LC_GLOBAL_LOCALE)
        return NULL;
    mcpgw_codec_thread_init();
    if (uselocale((locale_t)0) != first)
        return NULL;
#ifdef __GLIBC__
    {
        locale_t dup = duplocale(first);

        if (dup != first)
            return NULL;
        freelocale(dup);
    }
#endif
    if (mcpgw_codec_parse_object(s, strlen(s), NULL, &o, NULL) != 0)
        return NULL;
    if (json_object_object_get_ex(o, "a", &v) && json_object_get_double(v) == 1500.0 &&
        json_object_object_get_ex(o, "b", &v) && json_object_get_double(v) == -0.25) {
        snprintf(text, sizeof(text), "%.2f", 0.25);
        *ok = strcmp(text, "0.25") == 0;
    }
    json_object_put(o);
    return NULL;
}

START_TEST(thread_init_uses_the_c_locale_object)
{
    pthread_t t;
    int ok = 0;

    ck_assert_int_eq(pthread_create(&t, NULL, thread_init_body, &ok), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(ok, 1);
}
END_TEST

static const char *span_text(const char *buf, const struct mcpgw_codec_span *sp, char *dst,
                             size_t n)
{
    ck_assert_uint_lt(sp->len, n);
    memcpy(dst, buf + sp->off, sp->len);
    dst[sp->len] = '\0';
    return dst;
}

START_TEST(scan_members_finds_top_level_values_without_a_tree)
{
    static const char *const keys[] = { "id", "result", "error", "x" };
    const char *s = " {\"result\": {\"id\":7,\"error\":[1,{\"x\":2}]} ,\"id\":12,"
                    "\"note\":\"\\\"id\\\"\",\"x\":[ ],\"x\":\"last\"} ";
    struct mcpgw_codec_span sp[4];
    char t[128];

    ck_assert_int_eq(mcpgw_codec_scan_members(s, strlen(s), 8, keys, 4, sp), 0);
    ck_assert_str_eq(span_text(s, &sp[0], t, sizeof(t)), "12");
    ck_assert_str_eq(span_text(s, &sp[1], t, sizeof(t)), "{\"id\":7,\"error\":[1,{\"x\":2}]}");
    ck_assert_uint_eq(sp[2].len, 0);        /* only nested: not a top-level member */
    ck_assert_str_eq(span_text(s, &sp[3], t, sizeof(t)), "\"last\"");
    /* Empty containers and scalars of every kind as values. */
    s = "{\"id\":{},\"result\":[],\"error\":null,\"x\":-1.5e3}";
    ck_assert_int_eq(mcpgw_codec_scan_members(s, strlen(s), 8, keys, 4, sp), 0);
    ck_assert_str_eq(span_text(s, &sp[0], t, sizeof(t)), "{}");
    ck_assert_str_eq(span_text(s, &sp[1], t, sizeof(t)), "[]");
    ck_assert_str_eq(span_text(s, &sp[2], t, sizeof(t)), "null");
    ck_assert_str_eq(span_text(s, &sp[3], t, sizeof(t)), "-1.5e3");
    ck_assert_int_eq(mcpgw_codec_scan_members("{}", 2, 8, keys, 4, sp), 0);
    ck_assert_uint_eq(sp[0].len + sp[1].len + sp[2].len + sp[3].len, 0);
}
END_TEST

START_TEST(scan_members_says_when_to_parse_instead)
{
    static const char *const keys[] = { "id" };
    struct mcpgw_codec_span sp[1];
    const char *plain[] = {
        "{\"a\":\"esc\\u0041ped value\",\"id\":1}",     /* escapes in values are fine */
        "{\"a\":\"caf\xc3\xa9\",\"id\":1}",
    };
    const char *parse[] = {
        "{\"\\u0069d\":1}",                             /* the key is "id" */
        "{\"id\":1,\"a\\n\":2}",                        /* any escaped top-level key */
        "{\"id\":1,\"a\":\"x\xe2\x80\xa8y\"}",          /* U+2028 */
        "{\"id\":1,\"a\":\"x\xe2\x80\xa9y\"}",          /* U+2029 */
        "{\"id\":1e400}",                               /* not a double */
    };
    const char *invalid[] = {
        "", "   ", "[1]", "\"id\"", "{\"id\":1", "{\"id\":1}x", "{\"id\":01}",
        "{\"id\":1,}", "{'id':1}", "{\"id\":\"\xff\"}", "{\"id\":\"\\ud800\"}",
        "{\"id\":[[[[[[[[[1]]]]]]]]]}",                 /* deeper than 8 */
    };

    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        ck_assert_msg(mcpgw_codec_scan_members(plain[i], strlen(plain[i]), 8, keys, 1, sp) == 0,
                      "%s", plain[i]);
        ck_assert_uint_eq(sp[0].len, 1);
    }
    for (size_t i = 0; i < sizeof(parse) / sizeof(parse[0]); i++)
        ck_assert_msg(mcpgw_codec_scan_members(parse[i], strlen(parse[i]), 8, keys, 1, sp) == 1,
                      "%s", parse[i]);
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        ck_assert_msg(mcpgw_codec_scan_members(invalid[i], strlen(invalid[i]), 8, keys, 1,
                                               sp) == MCPGW_EPARSE, "%s", invalid[i]);
    ck_assert_int_eq(mcpgw_codec_scan_members(NULL, 0, 8, keys, 1, sp), -EINVAL);
}
END_TEST

START_TEST(tool_response_text_copies_the_result)
{
    struct mcpgw_buf b;
    json_object *o, *v;
    const char *r = "{\"content\":[ {\"type\":\"text\",\"text\":\"\\u00e9\"} ],\"isError\":true}";

    mcpgw_buf_init(&b, 4096);
    ck_assert_int_eq(mcpgw_codec_tool_response_text(&b, "\"c1\"", 5, false, r, strlen(r),
                                                    "srv", "t"), 0);
    ck_assert_ptr_nonnull(strstr(b.ptr, r));
    o = json_tokener_parse(b.ptr);
    ck_assert_ptr_nonnull(o);
    ck_assert(json_object_object_get_ex(o, "data", &v));
    ck_assert(json_object_object_get_ex(v, "success", &v) && !json_object_get_boolean(v));
    json_object_put(o);
    mcpgw_buf_reset(&b);
    ck_assert_int_eq(mcpgw_codec_tool_response_text(&b, "\"c1\"", 5, true, "[1]", 3, "s", "t"),
                     -EINVAL);
    ck_assert_int_eq(mcpgw_codec_tool_response_text(&b, "\"c1\"", 5, true, "{", 1, "s", "t"),
                     -EINVAL);
    ck_assert_uint_eq(b.len, 0);
    mcpgw_buf_release(&b);
}
END_TEST

/* A plain tool_call is decoded without a tree for its envelope; the same
 * message with its "type" key written as an escape takes the full path.
 * Both must give the same message, field for field. */
static void same_both_ways(const char *plain)
{
    struct mcpgw_msg a, b;
    char slow[1024], ida[MCPGW_CODEC_ID_JSON_SIZE], idb[MCPGW_CODEC_ID_JSON_SIZE];
    const char *at = strstr(plain, "\"type\"");

    ck_assert_ptr_nonnull(at);
    snprintf(slow, sizeof(slow), "%.*s\"\\u0074ype\"%s", (int)(at - plain), plain, at + 6);
    ck_assert_msg(decs(plain, &a, NULL) == 0, "%s", plain);
    ck_assert_msg(decs(slow, &b, NULL) == 0, "%s", slow);
    ck_assert_msg(a.root == a.params, "not the plain path: %s", plain);
    ck_assert_ptr_ne(b.root, b.params);
    ck_assert_int_eq(a.type, b.type);
    ck_assert_int_eq(mcpgw_codec_id_json(a.id, ida, sizeof(ida)), 0);
    ck_assert_int_eq(mcpgw_codec_id_json(b.id, idb, sizeof(idb)), 0);
    ck_assert_str_eq(ida, idb);
    ck_assert_str_eq(a.id_str, b.id_str);
    ck_assert_str_eq(a.server_id, b.server_id);
    ck_assert_str_eq(a.tool_name, b.tool_name);
    ck_assert(json_object_equal(a.params, b.params));
    ck_assert_str_eq(json_object_to_json_string(a.params), json_object_to_json_string(b.params));
    ck_assert_int_eq(a.progress, b.progress);
    ck_assert_int_eq(a.timestamp, b.timestamp);
    mcpgw_msg_release(&a);
    mcpgw_msg_release(&b);
}

START_TEST(plain_tool_call_decodes_as_the_full_path_does)
{
    static const char *const ins[] = {
        "{\"type\":\"tool_call\",\"id\":\"search-1\",\"data\":{\"serverId\":\"memory\","
        "\"toolName\":\"search_nodes\",\"params\":{\"query\":\"x\"}},\"timestamp\":1764118924000}",
        " { \"id\" : 7 , \"type\" : \"tool_call\" , \"data\" : { \"toolName\" : \"t\" , "
        "\"serverId\" : \"s\" , \"params\" : { \"a\" : [ 1 , 2.5 , \"\\u00e9\\n\" , null ] , "
        "\"a\" : { \"b\" : true } } , \"progress\" : false } } ",
        "{\"type\":\"tool_call\",\"id\":-0,\"data\":{\"serverId\":\"s\",\"toolName\":\"t\"},"
        "\"timestamp\":-5}",
        "{\"type\":\"tool_call\",\"id\":123456789012345678,\"data\":{\"serverId\":\"s\","
        "\"toolName\":\"t\",\"params\":null,\"progress\":true},\"extra\":{\"x\":[]}}",
        "{\"type\":\"ping\",\"type\":\"tool_call\",\"id\":\"caf\xc3\xa9\",\"data\":{\"serverId\":"
        "\"x\",\"serverId\":\"s\",\"toolName\":\"t\",\"params\":{}}}",
    };

    for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++)
        same_both_ways(ins[i]);
}
END_TEST

/* What the plain path leaves to the full one still gets the full one's
 * precise answer. */
START_TEST(unplain_tool_calls_keep_their_precise_errors)
{
    static const struct {
        const char *in, *message;
    } cases[] = {
        { "{\"type\":\"tool_call\",\"id\":\"\",\"data\":{\"serverId\":\"s\",\"toolName\":\"t\"}}",
          "'id' must be 1 to 128 bytes" },
        { "{\"type\":\"tool_call\",\"id\":1.5,\"data\":{\"serverId\":\"s\",\"toolName\":\"t\"}}",
          "'id' must be a string or an integer" },
        { "{\"type\":\"tool_call\",\"id\":\"a\",\"data\":{\"serverId\":\"s\",\"toolName\":\"t\","
          "\"params\":[]}}", "'data.params' must be an object" },
        { "{\"type\":\"tool_call\",\"id\":\"a\",\"data\":{\"serverId\":\"s\",\"toolName\":\"t\","
          "\"progress\":1}}", "'data.progress' must be true or false" },
        { "{\"type\":\"tool_call\",\"id\":\"a\",\"data\":{\"serverId\":\"s\"}}",
          "missing 'data.toolName'" },
        { "{\"type\":\"tool_call\",\"id\":\"a\",\"data\":{\"serverId\":\"s\\u0000\","
          "\"toolName\":\"t\"}}", "'data.serverId' must not contain \\u0000" },
        { "{\"type\":\"tool_call\",\"id\":\"a\",\"data\":{\"serverId\":\"s\",\"toolName\":\"t\"},"
          "\"timestamp\":\"now\"}", "'timestamp' must be a number" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mcpgw_codec_error e;
        struct mcpgw_msg m;

        ck_assert_msg(decs(cases[i].in, &m, &e) == MCPGW_EPARSE, "%s", cases[i].in);
        ck_assert_str_eq(e.message, cases[i].message);
    }
}
END_TEST

START_TEST(now_ms_is_wall_clock_milliseconds)
{
    int64_t a = (int64_t)time(NULL) * 1000, n = mcpgw_now_ms(), b = (int64_t)time(NULL) * 1000;

    ck_assert_int_ge(n, a);
    ck_assert_int_lt(n, b + 1000);
}
END_TEST

static Suite *codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc;

    tc = tcase_create("decode");
    tcase_add_test(tc, decode_users_tool_call);
    tcase_add_test(tc, decode_tool_call_progress_flag);
    tcase_add_test(tc, decode_tool_call_params_absent_or_null_become_owned_empty_object);
    tcase_add_test(tc, decode_ping_with_and_without_id);
    tcase_add_test(tc, decode_auth);
    tcase_add_test(tc, decode_cancel_carries_the_calls_id);
    tcase_add_test(tc, decode_list_servers_and_list_tools);
    tcase_add_test(tc, decode_integer_ids_get_decimal_id_str);
    tcase_add_test(tc, decode_string_id_limits_and_escapes);
    tcase_add_test(tc, decode_ignores_unknown_keys_and_takes_last_duplicate);
    tcase_add_test(tc, decode_timestamp_forms);
    tcase_add_test(tc, decode_whitespace_around_and_inside_is_fine);
    tcase_add_test(tc, decode_accepts_every_rfc8259_form);
    tcase_add_test(tc, decode_release_is_null_safe_and_idempotent);
    tcase_add_test(tc, decode_null_limits_mean_defaults);
    tcase_add_test(tc, decode_limits_over_the_hard_caps_are_lowered);
    tcase_add_test(tc, decode_exactly_at_limits_passes);
    tcase_add_test(tc, decode_err_may_be_null);
    tcase_add_test(tc, decode_pretty_message_whole);
    suite_add_tcase(s, tc);

    tc = tcase_create("decode_bad");
    tcase_add_loop_test(tc, decode_bad_input_table, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(tc, decode_100000_deep_is_refused_fast);
    tcase_add_loop_test(tc, decode_every_prefix_is_a_clean_error, 0, (int)strlen(example));
    tcase_add_loop_test(tc, decode_every_prefix_of_a_pretty_message_is_a_clean_error, 0,
                        (int)strlen(pretty));
    tcase_add_test(tc, decode_mutation_fuzz);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_add_checked_fixture(tc, out_setup, out_teardown);
    tcase_add_test(tc, encode_status_first_message);
    tcase_add_test(tc, encode_status_after_auth_with_extra_fields);
    tcase_add_test(tc, encode_pong_echoes_the_ping_id);
    tcase_add_test(tc, encode_tool_progress);
    tcase_add_test(tc, encode_numbers_shortest_and_never_nan);
    tcase_add_test(tc, encode_tool_response);
    tcase_add_test(tc, encode_hostile_result_tree_stays_valid_json);
    tcase_add_test(tc, encode_tree_depth_cap);
    tcase_add_test(tc, encode_value_alone);
    tcase_add_test(tc, encode_error_every_code);
    tcase_add_test(tc, encode_generic_message);
    tcase_add_test(tc, encode_sse_payloads);
    tcase_add_test(tc, encode_escaping);
    tcase_add_test(tc, encode_invalid_utf8_becomes_replacement_characters);
    tcase_add_test(tc, encode_random_bytes_fuzz);
    tcase_add_test(tc, encode_failure_leaves_out_unchanged);
    tcase_add_test(tc, encode_refuses_bad_arguments_without_writing);
    tcase_add_test(tc, id_json_forms);
    tcase_add_test(tc, id_round_trips_from_call_to_answer);
    tcase_add_test(tc, code_valid_is_the_closed_list);
    tcase_add_test(tc, parse_object_is_as_strict_as_decode);
    tcase_add_test(tc, now_ms_is_wall_clock_milliseconds);
    tcase_add_test(tc, thread_init_uses_the_c_locale_object);
    tcase_add_test(tc, scan_members_finds_top_level_values_without_a_tree);
    tcase_add_test(tc, scan_members_says_when_to_parse_instead);
    tcase_add_test(tc, tool_response_text_copies_the_result);
    tcase_add_test(tc, plain_tool_call_decodes_as_the_full_path_does);
    tcase_add_test(tc, unplain_tool_calls_keep_their_precise_errors);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(codec_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
