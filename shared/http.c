/* http.c - request parsing helpers and response formatting shared by the
 * front ends (see http.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "http.h"

const char *mcpgw_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return "Unknown";
}

bool mcpgw_http_header_value_ok(const char *s)
{
    if (!s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

const char *mcpgw_http_header(const struct mcpgw_http_request *req, const char *lname)
{
    if (!req || !req->header)
        return NULL;
    return req->header(req->header_ud, lname);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode src[0..n) (form encoding: '+' is a space when plus is true). */
static int decode(const char *src, size_t n, bool plus, char *out, size_t outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];

        if (c == '%') {
            int hi, lo;

            if (i + 2 >= n)
                return MCPGW_EPARSE;
            hi = hexval((unsigned char)src[i + 1]);
            lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0)
                return MCPGW_EPARSE;
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0)
                return MCPGW_EPARSE;
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (o + 1 >= outlen)
            return MCPGW_ETOOBIG;
        out[o++] = (char)c;
    }
    if (outlen == 0)
        return MCPGW_ETOOBIG;
    out[o] = '\0';
    return (int)o;
}

int mcpgw_http_query_get(const char *query, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *p = query;

    if (!p)
        return -1;
    while (*p) {
        const char *end = p + strcspn(p, "&;");
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq ? eq : end;

        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            if (!eq)
                return decode("", 0, true, out, outlen);
            return decode(eq + 1, (size_t)(end - eq - 1), true, out, outlen);
        }
        p = *end ? end + 1 : end;
    }
    return -1;
}

int mcpgw_http_path_decode(const char *path, char *out, size_t outlen)
{
    size_t n = strlen(path), o = 0, seg = 0;

    if (n == 0 || path[0] != '/')
        return MCPGW_EPARSE;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)path[i];

        if (c == '/' || c == '\0') {
            size_t slen = o - seg;

            /* seg is where the segment's text starts in out */
            if (i > 0) {
                if (slen == 0 && c == '/')
                    return MCPGW_EPARSE;            /* "//" */
                if ((slen == 1 && out[seg] == '.') ||
                    (slen == 2 && out[seg] == '.' && out[seg + 1] == '.'))
                    return MCPGW_EPARSE;
            }
            if (c == '\0')
                break;
            if (o + 1 >= outlen)
                return MCPGW_ETOOBIG;
            out[o++] = '/';
            seg = o;
            continue;
        }
        if (c == '%') {
            int hi, lo;

            if (i + 2 >= n)
                return MCPGW_EPARSE;
            hi = hexval((unsigned char)path[i + 1]);
            lo = hexval((unsigned char)path[i + 2]);
            if (hi < 0 || lo < 0)
                return MCPGW_EPARSE;
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0 || c == '/')
                return MCPGW_EPARSE;
            i += 2;
        }
        if (o + 1 >= outlen)
            return MCPGW_ETOOBIG;
        out[o++] = (char)c;
    }
    /* A trailing slash is kept out: "/api/v1/servers/" names the same route. */
    if (o > 1 && out[o - 1] == '/')
        o--;
    out[o] = '\0';
    return (int)o;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

bool mcpgw_http_media_is(const char *value, const char *type)
{
    size_t tlen = strlen(type);
    const char *p;

    if (!value)
        return false;
    p = skip_ws(value);
    if (strncasecmp(p, type, tlen) != 0)
        return false;
    p = skip_ws(p + tlen);
    return *p == '\0' || *p == ';';
}

/* The q parameter of one Accept element [p, end), 1000 = q=1. */
static int qvalue(const char *p, const char *end)
{
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *q;

        if (!semi)
            break;
        q = skip_ws(semi + 1);
        if (end - q >= 2 && (q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
            int v = 0, scale = 1000;

            q += 2;
            if (q < end && *q == '1')
                return 1000;
            if (q < end && *q == '0') {
                q++;
                if (q < end && *q == '.') {
                    q++;
                    for (int i = 0; i < 3 && q < end && *q >= '0' && *q <= '9'; i++, q++) {
                        scale /= 10;
                        v += (*q - '0') * scale;
                    }
                }
                return v;
            }
            return 1000;
        }
        p = semi + 1;
    }
    return 1000;
}

bool mcpgw_http_accepts(const char *accept, const char *type)
{
    size_t tlen = strlen(type);
    const char *p = accept;

    if (!p)
        return false;
    while (*p) {
        const char *end = p + strcspn(p, ",");
        const char *s = skip_ws(p);

        if ((size_t)(end - s) >= tlen && strncasecmp(s, type, tlen) == 0) {
            const char *after = skip_ws(s + tlen);

            if ((after == end || *after == ';') && qvalue(s, end) > 0)
                return true;
        }
        p = *end ? end + 1 : end;
    }
    return false;
}

int mcpgw_http_read_body(const struct mcpgw_http_request *req, struct mcpgw_buf *b)
{
    char chunk[16384];

    if (req->content_length > 0 && (unsigned long long)req->content_length > b->max)
        return MCPGW_ETOOBIG;
    if (!req->read_body)
        return 0;
    for (;;) {
        ssize_t n = req->read_body(req->body_ud, chunk, sizeof(chunk));
        int rc;

        if (n < 0)
            return -EIO;
        if (n == 0)
            break;
        rc = mcpgw_buf_add(b, chunk, (size_t)n);
        if (rc < 0)
            return rc;
        /* Trust the announced length: reading on would wait for bytes that
         * a conforming peer never sends. */
        if (req->content_length >= 0 && b->len >= (unsigned long long)req->content_length)
            break;
    }
    return 0;
}

int mcpgw_http_cgi_head(struct mcpgw_buf *out, int status, const struct mcpgw_http_header *h,
                        size_t n)
{
    size_t mark = out->len;
    int rc;

    for (size_t i = 0; i < n; i++)
        if (!h[i].name || !*h[i].name || !mcpgw_http_header_value_ok(h[i].name) ||
            strchr(h[i].name, ':') || !mcpgw_http_header_value_ok(h[i].value))
            return -EINVAL;
    rc = mcpgw_buf_printf(out, "Status: %d %s\r\n", status, mcpgw_http_reason(status));
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = mcpgw_buf_printf(out, "%s: %s\r\n", h[i].name, h[i].value);
    if (rc == 0)
        rc = mcpgw_buf_add(out, MCPGW_STRLIT("\r\n"));
    if (rc < 0)
        out->len = mark;
    if (out->ptr)
        out->ptr[out->len] = '\0';
    return rc;
}

int mcpgw_http_respond(const struct mcpgw_http_writer *w, int status, const char *content_type,
                       const struct mcpgw_http_header *h, size_t n, const char *body, size_t len)
{
    struct mcpgw_http_header all[24];
    char clen[24];
    size_t k = 0;
    int rc;

    if (n > sizeof(all) / sizeof(all[0]) - 2)
        return -EINVAL;
    if (content_type)
        all[k++] = (struct mcpgw_http_header){ "Content-Type", content_type };
    snprintf(clen, sizeof(clen), "%zu", len);
    all[k++] = (struct mcpgw_http_header){ "Content-Length", clen };
    for (size_t i = 0; i < n; i++)
        all[k++] = h[i];
    rc = w->begin(w->ud, status, all, k);
    if (rc == 0 && len)
        rc = w->write(w->ud, body, len);
    if (rc == 0)
        rc = w->flush(w->ud);
    return rc;
}

int mcpgw_http_cgi_name(const char *lname, char *out, size_t outlen)
{
    size_t o = 0, n = strlen(lname);
    bool bare = strcmp(lname, "content-type") == 0 || strcmp(lname, "content-length") == 0;

    if (!bare) {
        if (outlen < 6)
            return MCPGW_ETOOBIG;
        memcpy(out, "HTTP_", 5);
        o = 5;
    }
    if (o + n + 1 > outlen)
        return MCPGW_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        char c = lname[i];

        out[o++] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    out[o] = '\0';
    return 0;
}

static const char *cgi_header(void *ud, const char *lname)
{
    struct mcpgw_http_cgi *c = ud;
    char name[128];

    if (mcpgw_http_cgi_name(lname, name, sizeof(name)) < 0)
        return NULL;
    return c->get(c->ud, name);
}

int mcpgw_http_cgi_request(struct mcpgw_http_cgi *c, struct mcpgw_http_request *req)
{
    const char *uri = c->get(c->ud, "REQUEST_URI");
    const char *clen = c->get(c->ud, "CONTENT_LENGTH");
    const char *q = c->get(c->ud, "QUERY_STRING");
    size_t n;

    memset(req, 0, sizeof(*req));
    req->method = c->get(c->ud, "REQUEST_METHOD");
    if (uri && *uri) {
        n = strcspn(uri, "?#");
        if (n >= sizeof(c->path))
            return MCPGW_ETOOBIG;
        memcpy(c->path, uri, n);
        c->path[n] = '\0';
        if (!q && uri[n] == '?')
            q = uri + n + 1;
    } else {
        const char *sn = c->get(c->ud, "SCRIPT_NAME"), *pi = c->get(c->ud, "PATH_INFO");
        int k = snprintf(c->path, sizeof(c->path), "%s%s", sn ? sn : "", pi ? pi : "");

        if (k < 0 || (size_t)k >= sizeof(c->path))
            return MCPGW_ETOOBIG;
    }
    req->path = c->path;
    req->query = q ? q : "";
    req->header = cgi_header;
    req->header_ud = c;
    req->remote_addr = c->get(c->ud, "REMOTE_ADDR");
    req->content_length = -1;
    if (clen && *clen) {
        unsigned long long v = 0;

        for (const char *p = clen; *p; p++) {
            if (*p < '0' || *p > '9' || v > (1ULL << 40))
                return MCPGW_EPARSE;
            v = v * 10 + (unsigned)(*p - '0');
        }
        req->content_length = (long long)v;
    }
    return 0;
}
