#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "err.h"
#include "limits.h"

/* Decoding is two passes over the bytes.  A strict RFC 8259 scan comes
 * first, because json-c 0.16 in JSON_TOKENER_STRICT | VALIDATE_UTF8 mode
 * still accepts raw control characters in strings, single-quoted strings,
 * NaN, overlong and surrogate UTF-8 forms, turns a lone "\ud800" into
 * U+FFFD and clamps integers beyond 64 bits.  Each of those is a place where
 * the gateway would act on a value other than the one the client sent (a
 * parser differential), so the scan refuses them with a precise message and
 * byte offset, and json-c then only builds the tree of a text already known
 * to be good.  The scan also owns the depth limit (its N is "N nested
 * containers", the root object being 1) and the no-trailing-data rule. */

/* Values quoted back in error messages are cut to this many bytes. */
#define SHOW_MAX 40

#define STR_(x) #x
#define STR(x) STR_(x)

static const char *const codes[] = {
    MCPGW_CODE_AUTH_REQUIRED, MCPGW_CODE_AUTH_FAILED, MCPGW_CODE_FORBIDDEN,
    MCPGW_CODE_BAD_REQUEST, MCPGW_CODE_UNKNOWN_SERVER, MCPGW_CODE_UNKNOWN_TOOL,
    MCPGW_CODE_TOOL_ERROR, MCPGW_CODE_TIMEOUT, MCPGW_CODE_SERVER_UNAVAILABLE,
    MCPGW_CODE_TOO_LARGE, MCPGW_CODE_RATE_LIMITED, MCPGW_CODE_CANCELLED,
    MCPGW_CODE_INTERNAL,
};

bool mcpgw_codec_code_valid(const char *code)
{
    if (!code)
        return false;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(code, codes[i]) == 0)
            return true;
    return false;
}

int64_t mcpgw_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -- the strict scan --------------------------------------------------------- */

struct scan {
    const unsigned char *s;
    size_t len, pos;
    int max_depth;
    bool big_number;    /* a number json-c may have made infinite: check the tree */
    bool escaped;       /* set by scan_string on a backslash escape */
    bool line_sep;      /* a string holds U+2028 or U+2029 unescaped */
    const char *why;    /* on failure: the reason, with pos at the fault */
    /* mcpgw_codec_scan_members: the top-level members to find */
    const char *const *keys;
    size_t nkeys;
    struct mcpgw_codec_span *spans;
    bool key_escaped;   /* a top-level key was written with an escape */
};

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(struct scan *sc)
{
    while (sc->pos < sc->len && is_ws(sc->s[sc->pos]))
        sc->pos++;
}

static int scan_fail(struct scan *sc, const char *why)
{
    sc->why = why;
    return -1;
}

/* Length of the well-formed UTF-8 sequence at p (Unicode 15, table 3-7:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t need;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if (p[i] < lo || p[i] > hi)
            return 0;
        lo = 0x80;
        hi = 0xbf;
    }
    return need;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* At a '"'.  A key must not hold U+0000: json-c keys are C strings, so
 * "a\u0000b" would silently become "a". */
static int scan_string(struct scan *sc, bool key)
{
    const unsigned char *s = sc->s;
    size_t len = sc->len, i = sc->pos + 1;
    unsigned cp, lo;

    for (;;) {
        while (i < len && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
            i++;
        sc->pos = i;
        if (i >= len)
            return scan_fail(sc, "unexpected end of message");
        if (s[i] == '"') {
            sc->pos = i + 1;
            return 0;
        }
        if (s[i] == 0)
            return scan_fail(sc, "NUL byte");
        if (s[i] < 0x20)
            return scan_fail(sc, "control character in a string");
        if (s[i] >= 0x80) {
            size_t n = utf8_len(s + i, len - i);

            if (!n)
                return scan_fail(sc, "invalid UTF-8");
            if (n == 3 && s[i] == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] & 0xfe) == 0xa8)
                sc->line_sep = true;
            i += n;
            continue;
        }
        /* a backslash */
        sc->escaped = true;
        if (i + 1 >= len)
            return scan_fail(sc, "unexpected end of message");
        switch (s[i + 1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            i += 2;
            continue;
        case 'u':
            break;
        default:
            return scan_fail(sc, "invalid escape");
        }
        if (len - i < 6 || hex4(s + i + 2, &cp) < 0)
            return scan_fail(sc, "invalid \\u escape");
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return scan_fail(sc, "unpaired surrogate escape");
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (len - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                hex4(s + i + 8, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                return scan_fail(sc, "unpaired surrogate escape");
            i += 12;
            continue;
        }
        if (cp == 0 && key)
            return scan_fail(sc, "\\u0000 in an object key");
        i += 6;
    }
}

/* Whether the digit string d (n digits, no leading zero) is above max
 * (a digit string of the same form). */
static bool digits_above(const unsigned char *d, size_t n, const char *max)
{
    size_t m = strlen(max);

    if (n != m)
        return n > m;
    return memcmp(d, max, n) > 0;
}

static int number_fail(struct scan *sc, size_t at)
{
    sc->pos = at;
    return scan_fail(sc, at >= sc->len ? "unexpected end of message" : "invalid number");
}

/* At '-' or a digit.  An integer must fit json-c's int64 (negative) or
 * uint64 (positive): beyond, json-c 0.16 clamps it silently.  A number whose
 * magnitude may pass the double range (json-c makes it infinite) sets
 * big_number; the decoder then checks the tree. */
static int scan_number(struct scan *sc)
{
    const unsigned char *s = sc->s;
    size_t len = sc->len, i = sc->pos, int_start, int_digits;
    bool neg = false, is_int = true;
    long exp = 0;

    if (s[i] == '-') {
        neg = true;
        i++;
    }
    int_start = i;
    if (i >= len)
        return number_fail(sc, i);
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return number_fail(sc, i);
    }
    int_digits = i - int_start;
    if (i < len && s[i] == '.') {
        is_int = false;
        i++;
        if (i >= len || s[i] < '0' || s[i] > '9')
            return number_fail(sc, i);
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        bool eneg = false;

        is_int = false;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        if (i >= len || s[i] < '0' || s[i] > '9')
            return number_fail(sc, i);
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (exp < 100000)
                exp = exp * 10 + (s[i] - '0');
            i++;
        }
        if (eneg)
            exp = -exp;
    }
    if (is_int) {
        if (digits_above(s + int_start, int_digits, neg ? "9223372036854775808"
                                                        : "18446744073709551615")) {
            sc->pos = int_start - neg;
            return scan_fail(sc, "integer out of range");
        }
    } else if ((long)int_digits + exp > 300) {
        /* Below ~1e300 nothing overflows; above, let the tree decide exactly. */
        sc->big_number = true;
    }
    sc->pos = i;
    return 0;
}

static int scan_literal(struct scan *sc, const char *word)
{
    size_t n = strlen(word);

    for (size_t k = 0; k < n; k++) {
        if (sc->pos + k >= sc->len || sc->s[sc->pos + k] != (unsigned char)word[k]) {
            sc->pos += k;
            return scan_fail(sc, sc->pos >= sc->len ? "unexpected end of message"
                                                    : "unexpected character");
        }
    }
    sc->pos += n;
    return 0;
}

/* The whole text must be exactly one JSON value with optional whitespace
 * around it.  Iterative, with an explicit stack: a 100,000-deep input is
 * refused at depth max_depth + 1 after reading that many bytes. */
static int scan_json(struct scan *sc)
{
    char stack[MCPGW_JSON_DEPTH_MAX];
    int depth = 0;
    size_t member = SIZE_MAX;   /* the top-level member being read, if wanted */
    unsigned char c;

    skip_ws(sc);
    if (sc->pos >= sc->len)
        return scan_fail(sc, "empty");

value:
    if (sc->pos >= sc->len)
        return scan_fail(sc, "unexpected end of message");
    if (member != SIZE_MAX && depth == 1)
        sc->spans[member].off = sc->pos;
    c = sc->s[sc->pos];
    if (c == '{' || c == '[') {
        if (depth >= sc->max_depth)
            return scan_fail(sc, "depth");
        stack[depth++] = (char)c;
        sc->pos++;
        skip_ws(sc);
        if (sc->pos < sc->len && sc->s[sc->pos] == (c == '{' ? '}' : ']')) {
            sc->pos++;
            depth--;
            goto after;
        }
        if (c == '[')
            goto value;
        goto key;
    }
    if (c == '"') {
        if (scan_string(sc, false) < 0)
            return -1;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        if (scan_number(sc) < 0)
            return -1;
    } else if (c == 't') {
        if (scan_literal(sc, "true") < 0)
            return -1;
    } else if (c == 'f') {
        if (scan_literal(sc, "false") < 0)
            return -1;
    } else if (c == 'n') {
        if (scan_literal(sc, "null") < 0)
            return -1;
    } else {
        return scan_fail(sc, c == 0 ? "NUL byte" : "unexpected character");
    }

after:
    if (member != SIZE_MAX && depth == 1) {
        sc->spans[member].len = sc->pos - sc->spans[member].off;
        member = SIZE_MAX;
    }
    if (depth == 0) {
        skip_ws(sc);
        if (sc->pos < sc->len)
            return scan_fail(sc, "trailing");
        return 0;
    }
    skip_ws(sc);
    if (sc->pos >= sc->len)
        return scan_fail(sc, "unexpected end of message");
    c = sc->s[sc->pos];
    if (c == ',') {
        sc->pos++;
        skip_ws(sc);
        if (stack[depth - 1] == '[')
            goto value;
        goto key;
    }
    if ((c == '}' && stack[depth - 1] == '{') || (c == ']' && stack[depth - 1] == '[')) {
        sc->pos++;
        depth--;
        goto after;
    }
    return scan_fail(sc, c == 0 ? "NUL byte" : "unexpected character");

key:
    if (sc->pos >= sc->len)
        return scan_fail(sc, "unexpected end of message");
    if (sc->s[sc->pos] != '"')
        return scan_fail(sc, sc->s[sc->pos] == 0 ? "NUL byte" : "unexpected character");
    if (depth == 1 && sc->nkeys) {
        size_t start = sc->pos + 1;

        sc->escaped = false;
        if (scan_string(sc, true) < 0)
            return -1;
        if (sc->escaped)
            sc->key_escaped = true;
        for (size_t k = 0; k < sc->nkeys; k++)
            if (strlen(sc->keys[k]) == sc->pos - 1 - start &&
                memcmp(sc->keys[k], sc->s + start, sc->pos - 1 - start) == 0)
                member = k;
    } else if (scan_string(sc, true) < 0) {
        return -1;
    }
    skip_ws(sc);
    if (sc->pos >= sc->len)
        return scan_fail(sc, "unexpected end of message");
    if (sc->s[sc->pos] != ':')
        return scan_fail(sc, sc->s[sc->pos] == 0 ? "NUL byte" : "unexpected character");
    sc->pos++;
    skip_ws(sc);
    goto value;
}

/* -- decoding ------------------------------------------------------------------ */

/* Quote s (n bytes) for an error message: at most SHOW_MAX bytes, cut on a
 * character boundary with "..." added, control bytes and DEL written as
 * \xNN so a message cannot carry a line break into a log. */
static void show(char *dst, size_t dstlen, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;

    while (i < n && o + 8 < dstlen) {
        size_t k;

        if (i >= SHOW_MAX) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (p[i] < 0x20 || p[i] == 0x7f) {
            o += (size_t)snprintf(dst + o, dstlen - o, "\\x%02x", p[i]);
            i++;
            continue;
        }
        k = utf8_len(p + i, n - i);
        if (k == 0) {
            o += (size_t)snprintf(dst + o, dstlen - o, "\\x%02x", p[i]);
            i++;
            continue;
        }
        if (i + k > SHOW_MAX) {
            i = SHOW_MAX;
            continue;
        }
        memcpy(dst + o, p + i, k);
        o += k;
        i += k;
    }
    dst[o] = '\0';
}

static int refuse(struct mcpgw_codec_error *err, int rc, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(struct mcpgw_codec_error *err, int rc, const char *code, const char *fmt, ...)
{
    va_list ap;

    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return rc;
}

static void free_userdata(json_object *o, void *ud)
{
    (void)o;
    free(ud);
}

/* Whether every double under o is finite (json-c turns 1e400 into inf). */
static bool tree_finite(json_object *o, int depth)
{
    if (depth > MCPGW_JSON_DEPTH_MAX)
        return false;
    switch (json_object_get_type(o)) {
    case json_type_double:
        return isfinite(json_object_get_double(o));
    case json_type_array:
        for (size_t i = 0, n = json_object_array_length(o); i < n; i++)
            if (!tree_finite(json_object_array_get_idx(o, i), depth + 1))
                return false;
        return true;
    case json_type_object: {
        struct json_object_iterator it = json_object_iter_begin(o);
        struct json_object_iterator end = json_object_iter_end(o);

        for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
            if (!tree_finite(json_object_iter_peek_value(&it), depth + 1))
                return false;
        return true;
    }
    default:
        return true;
    }
}

/* A string field of data: present, a string, 1..max bytes, no U+0000
 * (the pointer handed out is a C string, so "a\u0000b" would read as "a"). */
static int string_field(json_object *data, const char *name, size_t max,
                        const char **out, struct mcpgw_codec_error *err)
{
    json_object *v;
    size_t n;

    if (!json_object_object_get_ex(data, name, &v))
        return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "missing 'data.%s'", name);
    if (!json_object_is_type(v, json_type_string))
        return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST,
                      "'data.%s' must be a string", name);
    n = (size_t)json_object_get_string_len(v);
    if (n < 1 || n > max)
        return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST,
                      "'data.%s' must be 1 to %zu bytes", name, max);
    *out = json_object_get_string(v);
    if (strlen(*out) != n)
        return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST,
                      "'data.%s' must not contain \\u0000", name);
    return 0;
}

static const struct {
    const char *name;
    enum mcpgw_msg_type type;
    bool needs_id, needs_data;
} kinds[] = {
    { "ping", MCPGW_MSG_PING, false, false },
    { "tool_call", MCPGW_MSG_TOOL_CALL, true, true },
    { "auth", MCPGW_MSG_AUTH, true, true },
    { "cancel", MCPGW_MSG_CANCEL, true, false },
    { "list_servers", MCPGW_MSG_LIST_SERVERS, false, false },
    { "list_tools", MCPGW_MSG_LIST_TOOLS, true, true },
};

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_make(void)
{
    /* glibc returns its static C locale object (never freed); one per
     * process keeps other libcs from allocating per thread. */
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

void mcpgw_codec_thread_init(void)
{
    pthread_once(&c_locale_once, c_locale_make);
    if (c_locale)
        uselocale(c_locale);
}

/* This thread's tokener for a depth.  json_tokener_new_ex() callocs a
 * frame per level of depth, which costs more than parsing a small message;
 * one kept per thread (freed when the thread ends) is reset instead. */
struct tok_cache {
    json_tokener *tok;
    int depth;
};

static pthread_key_t tok_key;
static pthread_once_t tok_once = PTHREAD_ONCE_INIT;

static void tok_cache_free(void *p)
{
    struct tok_cache *c = p;

    if (c->tok)
        json_tokener_free(c->tok);
    free(c);
}

static void tok_key_make(void)
{
    if (pthread_key_create(&tok_key, tok_cache_free) != 0)
        abort();
}

static json_tokener *thread_tokener(int depth)
{
    struct tok_cache *c;

    pthread_once(&tok_once, tok_key_make);
    if (!(c = pthread_getspecific(tok_key))) {
        if (!(c = calloc(1, sizeof(*c))))
            return NULL;
        if (pthread_setspecific(tok_key, c) != 0) {
            free(c);
            return NULL;
        }
    }
    if (c->tok && c->depth == depth)
        return c->tok;
    if (c->tok)
        json_tokener_free(c->tok);
    if (!(c->tok = json_tokener_new_ex(depth)))
        return NULL;
    c->depth = depth;
    json_tokener_set_flags(c->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    return c->tok;
}

static int depth_cap(int depth)
{
    return depth > MCPGW_JSON_DEPTH_MAX ? MCPGW_JSON_DEPTH_MAX : depth < 1 ? 1 : depth;
}

/* lim (NULL: the defaults of limits.h) with values above the hard caps
 * lowered to them; the tokener takes an int length, which
 * MCPGW_MESSAGE_BYTES_MAX keeps far from. */
static void limits_of(const struct mcpgw_codec_limits *lim, size_t *max_bytes, int *max_depth)
{
    *max_bytes = lim ? lim->max_bytes : MCPGW_MESSAGE_BYTES_DEFAULT;
    if (*max_bytes > MCPGW_MESSAGE_BYTES_MAX)
        *max_bytes = MCPGW_MESSAGE_BYTES_MAX;
    *max_depth = depth_cap(lim ? lim->max_depth : MCPGW_JSON_DEPTH_DEFAULT);
}

int mcpgw_codec_parse_object(const char *buf, size_t len, const struct mcpgw_codec_limits *lim,
                             json_object **out, struct mcpgw_codec_error *err)
{
    struct mcpgw_codec_error scratch;
    struct scan sc = { 0 };
    size_t max_bytes, i;
    int max_depth;
    struct json_tokener *tok;
    json_object *root = NULL;

    if (!err)
        err = &scratch;
    err->code = NULL;
    err->message[0] = '\0';
    err->id_json[0] = '\0';
    if (!out || (!buf && len))
        return refuse(err, -EINVAL, MCPGW_CODE_INTERNAL, "invalid arguments");
    *out = NULL;
    limits_of(lim, &max_bytes, &max_depth);

    if (len > max_bytes)
        return refuse(err, MCPGW_ETOOBIG, MCPGW_CODE_TOO_LARGE,
                      "message of %zu bytes is over the limit of %zu bytes", len, max_bytes);

    sc.s = (const unsigned char *)buf;
    sc.len = len;
    sc.max_depth = max_depth;
    if (scan_json(&sc) < 0) {
        if (strcmp(sc.why, "empty") == 0)
            return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "empty message");
        if (strcmp(sc.why, "depth") == 0)
            return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST,
                          "nesting deeper than %d", max_depth);
        if (strcmp(sc.why, "trailing") == 0)
            return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST,
                          "trailing data after the message");
        return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "invalid JSON at byte %zu: %s",
                      sc.pos, sc.why);
    }
    for (i = 0; is_ws((unsigned char)buf[i]); i++)
        ;
    if (buf[i] != '{')
        return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "message must be a JSON object");

    /* One more level than ours: json-c counts a scalar inside the innermost
     * container as a level of its own. */
    tok = thread_tokener(max_depth + 1);
    if (!tok)
        return refuse(err, -ENOMEM, MCPGW_CODE_INTERNAL, "out of memory");
    root = json_tokener_parse_ex(tok, buf, (int)len);
    if (!root || json_tokener_get_error(tok) != json_tokener_success) {
        /* The scan accepted the text, so only memory can be missing here. */
        json_tokener_reset(tok);
        json_object_put(root);
        return refuse(err, -ENOMEM, MCPGW_CODE_INTERNAL, "out of memory");
    }
    json_tokener_reset(tok);
    if (sc.big_number && !tree_finite(root, 0)) {
        json_object_put(root);
        return refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST,
                      "invalid JSON: number out of range");
    }
    *out = root;
    return 0;
}

int mcpgw_codec_scan_members(const char *buf, size_t len, int max_depth,
                             const char *const *keys, size_t nkeys,
                             struct mcpgw_codec_span *spans)
{
    struct scan sc = { 0 };
    size_t i;

    if (!buf || (nkeys && (!keys || !spans)))
        return -EINVAL;
    for (i = 0; i < nkeys; i++)
        spans[i].off = spans[i].len = 0;
    for (i = 0; i < len && is_ws((unsigned char)buf[i]); i++)
        ;
    if (i >= len || buf[i] != '{')
        return MCPGW_EPARSE;
    sc.s = (const unsigned char *)buf;
    sc.len = len;
    sc.max_depth = depth_cap(max_depth);
    sc.keys = keys;
    sc.nkeys = nkeys;
    sc.spans = spans;
    if (scan_json(&sc) < 0)
        return MCPGW_EPARSE;
    return sc.key_escaped || sc.big_number || sc.line_sep ? 1 : 0;
}

/* A JSON string span with no escape, as its content (quotes dropped). */
static bool plain_string(const char *buf, const struct mcpgw_codec_span *sp, size_t max,
                         const char **s, size_t *n)
{
    if (sp->len < 2 || buf[sp->off] != '"')
        return false;
    *s = buf + sp->off + 1;
    *n = sp->len - 2;
    return *n >= 1 && *n <= max && !memchr(*s, '\\', *n);
}

/* An integer span of at most 18 digits (so within int64), as its value. */
static bool plain_int(const char *buf, const struct mcpgw_codec_span *sp, int64_t *out)
{
    const char *p = buf + sp->off;
    size_t n = sp->len, i = 0;
    int64_t v = 0;

    if (n && p[0] == '-')
        i = 1;
    if (n - i < 1 || n - i > 18)
        return false;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = p[0] == '-' ? -v : v;
    return true;
}

/* The common case, a tool_call whose envelope is plain (every string
 * without escapes, params an object or absent, progress a boolean,
 * timestamp an integer), decoded without a json-c tree for the envelope:
 * only params is parsed into one, since the server gets our
 * re-serialisation of it.  1 with *msg filled; 0 to take the full path,
 * which also gives every refusal its precise error; -ENOMEM. */
static int decode_plain_call(const char *buf, size_t len, int max_depth, struct mcpgw_msg *msg)
{
    static const char *const top[] = { "type", "id", "data", "timestamp" };
    static const char *const fields[] = { "serverId", "toolName", "params", "progress" };
    struct mcpgw_codec_span sp[4], dsp[4];
    struct mcpgw_msg m = { .type = MCPGW_MSG_TOOL_CALL, .progress = true };
    const char *id_s = NULL, *srv, *tool, *data;
    size_t id_n = 0, srv_n, tool_n;
    int64_t id_i = 0;
    json_tokener *tok;
    char *at;

    if (mcpgw_codec_scan_members(buf, len, max_depth, top, 4, sp) != 0 || sp[0].len != 11 ||
        memcmp(buf + sp[0].off, "\"tool_call\"", 11) != 0 || !sp[1].len || !sp[2].len ||
        buf[sp[2].off] != '{')
        return 0;
    if (!plain_string(buf, &sp[1], MCPGW_CALL_ID_MAX, &id_s, &id_n) && !plain_int(buf, &sp[1], &id_i))
        return 0;
    if (sp[3].len && !plain_int(buf, &sp[3], &m.timestamp))
        return 0;
    data = buf + sp[2].off;
    if (mcpgw_codec_scan_members(data, sp[2].len, max_depth - 1, fields, 4, dsp) != 0 ||
        !plain_string(data, &dsp[0], MCPGW_SERVER_ID_MAX, &srv, &srv_n) ||
        !plain_string(data, &dsp[1], MCPGW_TOOL_NAME_MAX, &tool, &tool_n))
        return 0;
    if (dsp[2].len && data[dsp[2].off] != '{' &&
        !(dsp[2].len == 4 && memcmp(data + dsp[2].off, "null", 4) == 0))
        return 0;
    if (dsp[3].len == 5 && memcmp(data + dsp[3].off, "false", 5) == 0)
        m.progress = false;
    else if (dsp[3].len && !(dsp[3].len == 4 && memcmp(data + dsp[3].off, "true", 4) == 0))
        return 0;

    /* Checked; now build.  params: our tokener, whose depth is the whole
     * message's, so what the scan took it takes. */
    if (dsp[2].len && data[dsp[2].off] == '{') {
        if (!(tok = thread_tokener(max_depth + 1)))
            return -ENOMEM;
        m.root = json_tokener_parse_ex(tok, data + dsp[2].off, (int)dsp[2].len);
        json_tokener_reset(tok);
    } else {
        m.root = json_object_new_object();
    }
    m.params = m.root;
    m.id_owned = id_s ? json_object_new_string_len(id_s, (int)id_n) : json_object_new_int64(id_i);
    m.store = malloc(srv_n + tool_n + 2 + 24);
    if (!m.root || !m.id_owned || !m.store) {
        mcpgw_msg_release(&m);
        return -ENOMEM;
    }
    m.id = m.id_owned;
    at = m.store;
    memcpy(at, srv, srv_n);
    at[srv_n] = '\0';
    m.server_id = at;
    at += srv_n + 1;
    memcpy(at, tool, tool_n);
    at[tool_n] = '\0';
    m.tool_name = at;
    at += tool_n + 1;
    if (id_s) {
        m.id_str = json_object_get_string(m.id);
    } else {
        snprintf(at, 24, "%" PRId64, id_i);
        m.id_str = at;
    }
    *msg = m;
    return 1;
}

/* Ownership, on the full path: everything hangs off root.  An integer id's
 * decimal text is malloc'd and attached to the id object as json-c userdata
 * (freed with it; an int's serialiser ignores userdata), so id_str lives
 * exactly as long as msg->id.  A params object created for an absent or
 * null "params" is added into data, so root owns it too.  On the plain path
 * (decode_plain_call) root is params, and id_owned and store hold the rest.
 *
 * Duplicate keys: json-c keeps the last value of a key, as JavaScript's
 * JSON.parse does, and so does the scan; that is the value checked and the
 * value used.  Unknown keys are ignored: clients add their own fields.
 *
 * Beyond the header's contract: lim NULL means the defaults of limits.h; err
 * may be NULL; on success err is left cleared (code NULL, strings empty);
 * -EINVAL (msg NULL, or buf NULL with len > 0) and -ENOMEM also fill err,
 * with code "internal". */
int mcpgw_codec_decode(const char *buf, size_t len, const struct mcpgw_codec_limits *lim,
                       struct mcpgw_msg *msg, struct mcpgw_codec_error *err)
{
    struct mcpgw_codec_error scratch;
    json_object *root = NULL, *v, *id = NULL, *data = NULL;
    const char *type_s, *id_bad = NULL;
    size_t type_n;
    struct mcpgw_msg m;
    char shown[SHOW_MAX * 4 + 8];
    size_t i;
    int rc;

    if (!err)
        err = &scratch;
    if (!msg)
        return refuse(err, -EINVAL, MCPGW_CODE_INTERNAL, "invalid arguments");
    if (buf) {
        size_t max_bytes;
        int max_depth;

        limits_of(lim, &max_bytes, &max_depth);
        if (len <= max_bytes && (rc = decode_plain_call(buf, len, max_depth, msg)) != 0) {
            if (rc < 0)
                return refuse(err, rc, MCPGW_CODE_INTERNAL, "out of memory");
            err->code = NULL;
            err->message[0] = '\0';
            err->id_json[0] = '\0';
            return 0;
        }
    }
    rc = mcpgw_codec_parse_object(buf, len, lim, &root, err);
    if (rc < 0)
        return rc;

    memset(&m, 0, sizeof(m));
    m.root = root;

    /* The id first, so every later refusal can name it. */
    if (json_object_object_get_ex(root, "id", &id)) {
        if (json_object_is_type(id, json_type_string)) {
            size_t n = (size_t)json_object_get_string_len(id);

            if (n < 1 || n > MCPGW_CALL_ID_MAX)
                id_bad = "'id' must be 1 to " STR(MCPGW_CALL_ID_MAX) " bytes";
            else if (strlen(json_object_get_string(id)) != n)
                id_bad = "'id' must not contain \\u0000";
        } else if (json_object_is_type(id, json_type_int)) {
            /* json-c stores a positive integer above INT64_MAX as uint64. */
            if (json_object_get_int64(id) == INT64_MAX &&
                json_object_get_uint64(id) != (uint64_t)INT64_MAX)
                id_bad = "'id' must be a string or an integer";
        } else {
            id_bad = "'id' must be a string or an integer";
        }
        if (!id_bad) {
            rc = mcpgw_codec_id_json(id, err->id_json, sizeof(err->id_json));
            if (rc < 0) {
                /* Only memory: MCPGW_CODEC_ID_JSON_SIZE fits any valid id. */
                err->id_json[0] = '\0';
                rc = refuse(err, -ENOMEM, MCPGW_CODE_INTERNAL, "out of memory");
                goto fail;
            }
        }
    } else {
        id = NULL;
    }

    if (!json_object_object_get_ex(root, "type", &v) || !json_object_is_type(v, json_type_string)) {
        rc = refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "missing 'type'");
        goto fail;
    }
    type_s = json_object_get_string(v);
    type_n = (size_t)json_object_get_string_len(v);
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strlen(kinds[i].name) == type_n && memcmp(kinds[i].name, type_s, type_n) == 0)
            break;
    if (i == sizeof(kinds) / sizeof(kinds[0])) {
        show(shown, sizeof(shown), type_s, type_n);
        rc = refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "unknown message type '%s'", shown);
        goto fail;
    }
    m.type = kinds[i].type;

    if (id_bad) {
        rc = refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "%s", id_bad);
        goto fail;
    }
    if (!id && kinds[i].needs_id) {
        rc = refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "missing 'id'");
        goto fail;
    }
    m.id = id;
    if (id && json_object_is_type(id, json_type_string)) {
        m.id_str = json_object_get_string(id);
    } else if (id) {
        char *s = malloc(24);

        if (!s) {
            rc = refuse(err, -ENOMEM, MCPGW_CODE_INTERNAL, "out of memory");
            goto fail;
        }
        snprintf(s, 24, "%" PRId64, json_object_get_int64(id));
        json_object_set_userdata(id, s, free_userdata);
        m.id_str = s;
    }

    if (json_object_object_get_ex(root, "data", &data)) {
        if (!json_object_is_type(data, json_type_object)) {
            rc = refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "'data' must be an object");
            goto fail;
        }
    } else {
        data = NULL;
        if (kinds[i].needs_data) {
            rc = refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "missing 'data'");
            goto fail;
        }
    }

    switch (m.type) {
    case MCPGW_MSG_TOOL_CALL:
        if ((rc = string_field(data, "serverId", MCPGW_SERVER_ID_MAX, &m.server_id, err)) < 0 ||
            (rc = string_field(data, "toolName", MCPGW_TOOL_NAME_MAX, &m.tool_name, err)) < 0)
            goto fail;
        if (!json_object_object_get_ex(data, "params", &m.params) || !m.params) {
            m.params = json_object_new_object();
            if (!m.params || json_object_object_add(data, "params", m.params) != 0) {
                json_object_put(m.params);
                rc = refuse(err, -ENOMEM, MCPGW_CODE_INTERNAL, "out of memory");
                goto fail;
            }
        } else if (!json_object_is_type(m.params, json_type_object)) {
            rc = refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST,
                        "'data.params' must be an object");
            goto fail;
        }
        m.progress = true;
        if (json_object_object_get_ex(data, "progress", &v)) {
            if (!json_object_is_type(v, json_type_boolean)) {
                rc = refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST,
                            "'data.progress' must be true or false");
                goto fail;
            }
            m.progress = json_object_get_boolean(v);
        }
        break;
    case MCPGW_MSG_AUTH:
        if ((rc = string_field(data, "token", MCPGW_TOKEN_BYTES_MAX, &m.token, err)) < 0)
            goto fail;
        break;
    case MCPGW_MSG_LIST_TOOLS:
        if ((rc = string_field(data, "serverId", MCPGW_SERVER_ID_MAX, &m.server_id, err)) < 0)
            goto fail;
        break;
    default:
        break;
    }

    if (json_object_object_get_ex(root, "timestamp", &v)) {
        if (json_object_is_type(v, json_type_int)) {
            m.timestamp = json_object_get_int64(v);     /* above INT64_MAX: clamped */
        } else if (json_object_is_type(v, json_type_double)) {
            double d = json_object_get_double(v);

            m.timestamp = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
        } else {
            rc = refuse(err, MCPGW_EPARSE, MCPGW_CODE_BAD_REQUEST, "'timestamp' must be a number");
            goto fail;
        }
    }

    /* err describes refusals only: on success it is left cleared. */
    err->id_json[0] = '\0';
    *msg = m;
    return 0;

fail:
    json_object_put(root);
    return rc;
}

void mcpgw_msg_release(struct mcpgw_msg *msg)
{
    if (!msg)
        return;
    json_object_put(msg->root);
    json_object_put(msg->id_owned);
    free(msg->store);
    memset(msg, 0, sizeof(*msg));
}

/* -- encoding ------------------------------------------------------------------ */

#define TRY(x) do { if ((rc = (x)) < 0) goto fail; } while (0)

static void rollback(struct mcpgw_buf *out, size_t mark)
{
    out->len = mark;
    if (out->ptr)
        out->ptr[mark] = '\0';
}

/* A number the shortest way that reads back as the same double: integral
 * values below 2^53 without exponent or fraction ("1", not "1.0"); others
 * with the fewest of 15..17 significant digits that round-trip.  NaN and
 * infinities are written as null, as JavaScript's JSON.stringify does: JSON
 * has no spelling for them. */
static int put_double(struct mcpgw_buf *out, double d)
{
    char tmp[40], fixed[40];
    size_t o = 0;

    if (!isfinite(d))
        return mcpgw_buf_add(out, MCPGW_STRLIT("null"));
    if (d == 0)
        return mcpgw_buf_addc(out, '0');      /* -0 too */
    /* Below 2^53 the cast is exact for whole numbers (and avoids libm). */
    if (fabs(d) < 9007199254740992.0 && (double)(int64_t)d == d)
        return mcpgw_buf_add_i64(out, (int64_t)d);
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* A program may have set LC_NUMERIC: whatever is not a digit, sign or
     * exponent mark is the locale's decimal point, written here as '.'. */
    for (size_t i = 0; tmp[i] && o < sizeof(fixed) - 1; i++) {
        char c = tmp[i];

        if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e' || c == 'E')
            fixed[o++] = c;
        else if (o == 0 || fixed[o - 1] != '.')
            fixed[o++] = '.';
    }
    return mcpgw_buf_add(out, fixed, o);
}

static int put_int(struct mcpgw_buf *out, json_object *o)
{
    int64_t v = json_object_get_int64(o);

    if (v == INT64_MAX) {
        uint64_t u = json_object_get_uint64(o);

        if (u > (uint64_t)INT64_MAX)
            return mcpgw_buf_add_u64(out, u);
    }
    return mcpgw_buf_add_i64(out, v);
}

/* Serialise a json-c tree ourselves rather than with
 * json_object_to_json_string_ext(): json-c writes NaN/Infinity (not JSON),
 * copies invalid UTF-8 and raw U+2028 through, and caches its output inside
 * the object, which is a write to a borrowed object another thread may be
 * reading.  Here every string goes through mcpgw_buf_add_json_str and
 * nothing is stored in the tree.  depth caps recursion (and a cycle). */
static int put_value(struct mcpgw_buf *out, json_object *o, int depth)
{
    int rc;

    switch (json_object_get_type(o)) {
    case json_type_null:
        return mcpgw_buf_add(out, MCPGW_STRLIT("null"));
    case json_type_boolean:
        return json_object_get_boolean(o) ? mcpgw_buf_add(out, MCPGW_STRLIT("true"))
                                          : mcpgw_buf_add(out, MCPGW_STRLIT("false"));
    case json_type_double:
        return put_double(out, json_object_get_double(o));
    case json_type_int:
        return put_int(out, o);
    case json_type_string:
        return mcpgw_buf_add_json_str(out, json_object_get_string(o),
                                      (size_t)json_object_get_string_len(o));
    case json_type_array: {
        size_t n = json_object_array_length(o);

        if (depth >= MCPGW_JSON_DEPTH_MAX)
            return MCPGW_ETOOBIG;
        TRY(mcpgw_buf_addc(out, '['));
        for (size_t i = 0; i < n; i++) {
            if (i)
                TRY(mcpgw_buf_addc(out, ','));
            TRY(put_value(out, json_object_array_get_idx(o, i), depth + 1));
        }
        return mcpgw_buf_addc(out, ']');
    }
    case json_type_object: {
        struct json_object_iterator it = json_object_iter_begin(o);
        struct json_object_iterator end = json_object_iter_end(o);
        bool first = true;

        if (depth >= MCPGW_JSON_DEPTH_MAX)
            return MCPGW_ETOOBIG;
        TRY(mcpgw_buf_addc(out, '{'));
        for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
            const char *k = json_object_iter_peek_name(&it);

            if (!first)
                TRY(mcpgw_buf_addc(out, ','));
            first = false;
            TRY(mcpgw_buf_add_json_str(out, k, strlen(k)));
            TRY(mcpgw_buf_addc(out, ':'));
            TRY(put_value(out, json_object_iter_peek_value(&it), depth + 1));
        }
        return mcpgw_buf_addc(out, '}');
    }
    }
    return -EINVAL;
fail:
    return rc;
}

/* Whether id_json is what mcpgw_codec_id_json makes: one JSON string, or
 * one integer.  It is pasted into the output, so it must not be able to
 * break the message. */
static bool id_json_ok(const char *id_json, size_t n)
{
    struct scan sc = { 0 };
    size_t i = 0;

    if (n >= MCPGW_CODEC_ID_JSON_SIZE)
        return false;
    sc.s = (const unsigned char *)id_json;
    sc.len = n;
    sc.max_depth = 1;
    if (n == 0 || is_ws((unsigned char)id_json[0]) || is_ws((unsigned char)id_json[n - 1]) ||
        scan_json(&sc) < 0)
        return false;
    if (id_json[0] == '"')
        return true;
    if (id_json[0] == '-')
        i++;
    for (; i < n; i++)
        if (id_json[i] < '0' || id_json[i] > '9')
            return false;
    return true;
}

/* {"type":T[,"id":I],"data": */
static int put_head(struct mcpgw_buf *out, const char *type, const char *id_json)
{
    int rc;

    TRY(mcpgw_buf_add(out, MCPGW_STRLIT("{\"type\":")));
    TRY(mcpgw_buf_add_json_str(out, type, strlen(type)));
    if (id_json && *id_json) {
        TRY(mcpgw_buf_add(out, MCPGW_STRLIT(",\"id\":")));
        TRY(mcpgw_buf_adds(out, id_json));
    }
    TRY(mcpgw_buf_add(out, MCPGW_STRLIT(",\"data\":")));
    return 0;
fail:
    return rc;
}

static int put_tail(struct mcpgw_buf *out, int64_t ts)
{
    int rc = mcpgw_buf_add(out, MCPGW_STRLIT(",\"timestamp\":"));

    if (rc == 0)
        rc = mcpgw_buf_add_i64(out, ts);
    return rc ? rc : mcpgw_buf_addc(out, '}');
}

/* ,"key":"value" */
static int put_str_field(struct mcpgw_buf *out, const char *key_json, size_t keylen,
                         const char *value)
{
    int rc;

    TRY(mcpgw_buf_add(out, key_json, keylen));
    TRY(mcpgw_buf_add_json_str(out, value, strlen(value)));
    return 0;
fail:
    return rc;
}

static bool id_arg_ok(const char *id_json)
{
    return !id_json || !*id_json || id_json_ok(id_json, strlen(id_json));
}

int mcpgw_codec_id_json(json_object *id, char *out, size_t outlen)
{
    struct mcpgw_buf b;
    int rc;

    if (!out || outlen == 0)
        return MCPGW_ETOOBIG;
    out[0] = '\0';
    if (!id)
        return 0;
    if (!json_object_is_type(id, json_type_string) && !json_object_is_type(id, json_type_int))
        return -EINVAL;
    mcpgw_buf_init(&b, outlen - 1);
    rc = put_value(&b, id, 0);
    if (rc == 0)
        memcpy(out, b.ptr, b.len + 1);
    mcpgw_buf_release(&b);
    return rc;
}

int mcpgw_codec_status(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                       const char *message, const char *client_id, bool requires_auth,
                       json_object *extra)
{
    size_t mark = out->len;
    int rc;

    if (!message || !client_id || !id_arg_ok(id_json) ||
        (extra && !json_object_is_type(extra, json_type_object)))
        return -EINVAL;
    TRY(put_head(out, "status", id_json));
    TRY(put_str_field(out, MCPGW_STRLIT("{\"message\":"), message));
    TRY(put_str_field(out, MCPGW_STRLIT(",\"clientId\":"), client_id));
    TRY(requires_auth ? mcpgw_buf_add(out, MCPGW_STRLIT(",\"requiresAuth\":true"))
                      : mcpgw_buf_add(out, MCPGW_STRLIT(",\"requiresAuth\":false")));
    if (extra) {
        struct json_object_iterator it = json_object_iter_begin(extra);
        struct json_object_iterator end = json_object_iter_end(extra);

        for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
            const char *k = json_object_iter_peek_name(&it);

            /* The fixed fields win: a duplicate key would be read as the
             * last one by most clients. */
            if (strcmp(k, "message") == 0 || strcmp(k, "clientId") == 0 ||
                strcmp(k, "requiresAuth") == 0)
                continue;
            TRY(mcpgw_buf_addc(out, ','));
            TRY(mcpgw_buf_add_json_str(out, k, strlen(k)));
            TRY(mcpgw_buf_addc(out, ':'));
            TRY(put_value(out, json_object_iter_peek_value(&it), 0));
        }
    }
    TRY(mcpgw_buf_addc(out, '}'));
    TRY(put_tail(out, ts));
    return 0;
fail:
    rollback(out, mark);
    return rc;
}

int mcpgw_codec_pong(struct mcpgw_buf *out, const char *id_json, int64_t ts)
{
    size_t mark = out->len;
    int rc;

    if (!id_arg_ok(id_json))
        return -EINVAL;
    /* data.timestamp as well: the gateway our users' clients were written
     * against sent it, and some read it. */
    TRY(put_head(out, "pong", id_json));
    TRY(mcpgw_buf_printf(out, "{\"timestamp\":%" PRId64 "}", ts));
    TRY(put_tail(out, ts));
    return 0;
fail:
    rollback(out, mark);
    return rc;
}

int mcpgw_codec_tool_progress(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                              double progress, const double *total, const char *message)
{
    size_t mark = out->len;
    int rc;

    if (!id_arg_ok(id_json))
        return -EINVAL;
    TRY(put_head(out, "tool_progress", id_json));
    TRY(mcpgw_buf_add(out, MCPGW_STRLIT("{\"progress\":")));
    TRY(put_double(out, progress));
    if (total) {
        TRY(mcpgw_buf_add(out, MCPGW_STRLIT(",\"total\":")));
        TRY(put_double(out, *total));
    }
    if (message)
        TRY(put_str_field(out, MCPGW_STRLIT(",\"message\":"), message));
    TRY(mcpgw_buf_addc(out, '}'));
    TRY(put_tail(out, ts));
    return 0;
fail:
    rollback(out, mark);
    return rc;
}

/* A tool_response with its result written by put_value (result) or
 * copied (text, n bytes). */
static int tool_response(struct mcpgw_buf *out, const char *id_json, int64_t ts, bool success,
                         json_object *result, const char *text, size_t n,
                         const char *server_id, const char *tool_name)
{
    size_t mark = out->len;
    int rc;

    if (!server_id || !tool_name || !id_arg_ok(id_json))
        return -EINVAL;
    TRY(put_head(out, "tool_response", id_json));
    TRY(success ? mcpgw_buf_add(out, MCPGW_STRLIT("{\"success\":true,\"result\":"))
                : mcpgw_buf_add(out, MCPGW_STRLIT("{\"success\":false,\"result\":")));
    TRY(text ? mcpgw_buf_add(out, text, n) : put_value(out, result, 0));
    TRY(put_str_field(out, MCPGW_STRLIT(",\"serverId\":"), server_id));
    TRY(put_str_field(out, MCPGW_STRLIT(",\"toolName\":"), tool_name));
    TRY(mcpgw_buf_addc(out, '}'));
    TRY(put_tail(out, ts));
    return 0;
fail:
    rollback(out, mark);
    return rc;
}

int mcpgw_codec_tool_response(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                              bool success, json_object *result,
                              const char *server_id, const char *tool_name)
{
    return tool_response(out, id_json, ts, success, result, NULL, 0, server_id, tool_name);
}

int mcpgw_codec_tool_response_text(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                                   bool success, const char *result_json, size_t result_len,
                                   const char *server_id, const char *tool_name)
{
    /* Cheap guard against a caller passing the wrong span; validity is the
     * scan's, done once where the text came in. */
    if (!result_json || result_len < 2 || result_json[0] != '{' ||
        result_json[result_len - 1] != '}')
        return -EINVAL;
    return tool_response(out, id_json, ts, success, NULL, result_json, result_len, server_id,
                         tool_name);
}

int mcpgw_codec_error(struct mcpgw_buf *out, const char *id_json, int64_t ts,
                      const char *code, const char *message)
{
    size_t mark = out->len;
    int rc;

    if (!mcpgw_codec_code_valid(code) || !message || !id_arg_ok(id_json))
        return -EINVAL;
    TRY(put_head(out, "error", id_json));
    TRY(put_str_field(out, MCPGW_STRLIT("{\"error\":"), message));
    TRY(put_str_field(out, MCPGW_STRLIT(",\"code\":"), code));
    TRY(mcpgw_buf_addc(out, '}'));
    TRY(put_tail(out, ts));
    return 0;
fail:
    rollback(out, mark);
    return rc;
}

int mcpgw_codec_message(struct mcpgw_buf *out, const char *type, const char *id_json,
                        int64_t ts, json_object *data)
{
    size_t mark = out->len;
    int rc;

    if (!type || !*type || !id_arg_ok(id_json) ||
        (data && !json_object_is_type(data, json_type_object)))
        return -EINVAL;
    TRY(put_head(out, type, id_json));
    if (data)
        TRY(put_value(out, data, 0));
    else
        TRY(mcpgw_buf_add(out, MCPGW_STRLIT("{}")));
    TRY(put_tail(out, ts));
    return 0;
fail:
    rollback(out, mark);
    return rc;
}

int mcpgw_codec_sse_connected(struct mcpgw_buf *out, int64_t ts, const char *message)
{
    size_t mark = out->len;
    int rc;

    if (!message)
        return -EINVAL;
    TRY(mcpgw_buf_printf(out, "{\"type\":\"connected\",\"timestamp\":%" PRId64 ",\"message\":",
                         ts));
    TRY(mcpgw_buf_add_json_str(out, message, strlen(message)));
    TRY(mcpgw_buf_addc(out, '}'));
    return 0;
fail:
    rollback(out, mark);
    return rc;
}

int mcpgw_codec_sse_heartbeat(struct mcpgw_buf *out, int64_t ts)
{
    return mcpgw_buf_printf(out, "{\"type\":\"heartbeat\",\"timestamp\":%" PRId64 "}", ts);
}

int mcpgw_codec_value(struct mcpgw_buf *out, json_object *v)
{
    size_t mark = out->len;
    int rc = put_value(out, v, 0);

    if (rc < 0)
        rollback(out, mark);
    return rc;
}
