/* cors.c - the Origin allow-list shared by WebSocket and HTTP, and CORS. */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "cors.h"
#include "err.h"

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* host of a normalised origin, as [start, end). */
static void origin_host(const char *norm, const char **start, const char **end)
{
    const char *h = strstr(norm, "://") + 3;
    const char *e;

    if (*h == '[')
        e = strchr(h, ']') + 1;
    else
        e = h + strcspn(h, ":");
    *start = h;
    *end = e;
}

static bool is_ipv4_loopback(const char *h, size_t n)
{
    int parts = 0, digits = 0;

    if (n < 7 || strncmp(h, "127.", 4) != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (h[i] == '.') {
            if (digits == 0)
                return false;
            parts++;
            digits = 0;
        } else if (h[i] >= '0' && h[i] <= '9' && digits < 3) {
            digits++;
        } else {
            return false;
        }
    }
    return parts == 3 && digits > 0;
}

bool mcpgw_origin_is_loopback(const char *origin)
{
    char norm[MCPGW_ORIGIN_MAX];
    const char *h, *e;
    size_t n;

    if (mcpgw_origin_normalize(origin, norm, sizeof(norm)) < 0)
        return false;
    if (strncmp(norm, "http://", 7) != 0 && strncmp(norm, "https://", 8) != 0)
        return false;
    origin_host(norm, &h, &e);
    n = (size_t)(e - h);
    return (n == 9 && memcmp(h, "localhost", 9) == 0) ||
           (n == 5 && memcmp(h, "[::1]", 5) == 0) || is_ipv4_loopback(h, n);
}

/* Whether the origin's host[:port] is what the Host header names. */
static bool same_origin(const char *norm, const char *host)
{
    char h[MCPGW_ORIGIN_MAX];
    const char *a = strstr(norm, "://") + 3;
    size_t n = strlen(host);
    bool https = strncmp(norm, "https://", 8) == 0;

    if (n == 0 || n >= sizeof(h))
        return false;
    for (size_t i = 0; i < n; i++)
        h[i] = lower(host[i]);
    h[n] = '\0';
    /* Host carries the default port only sometimes; the origin never does. */
    if (!https && n > 3 && strcmp(h + n - 3, ":80") == 0)
        h[n - 3] = '\0';
    else if (https && n > 4 && strcmp(h + n - 4, ":443") == 0)
        h[n - 4] = '\0';
    return strcmp(a, h) == 0;
}

bool mcpgw_origin_allowed(const struct mcpgw_conf *conf, const char *origin, const char *host)
{
    char norm[MCPGW_ORIGIN_MAX];

    if (!origin)
        return true;
    if (mcpgw_origin_normalize(origin, norm, sizeof(norm)) < 0)
        return false;
    if (conf->allowed_origins && conf->norigins == 0)
        return false;
    if (conf->require_auth && host && same_origin(norm, host))
        return true;
    if (!conf->allowed_origins)
        return mcpgw_origin_is_loopback(norm);
    for (size_t i = 0; i < conf->norigins; i++)
        if (strcmp(conf->allowed_origins[i], norm) == 0)
            return true;
    return false;
}

size_t mcpgw_cors_headers(const char *origin, struct mcpgw_http_header *h)
{
    if (!origin || !mcpgw_http_header_value_ok(origin))
        return 0;
    h[0] = (struct mcpgw_http_header){ "Access-Control-Allow-Origin", origin };
    h[1] = (struct mcpgw_http_header){ "Vary", "Origin" };
    h[2] = (struct mcpgw_http_header){ "Access-Control-Expose-Headers",
                                       "WWW-Authenticate, Retry-After, Allow" };
    return 3;
}

size_t mcpgw_cors_preflight_headers(const char *origin, const char *methods,
                                    struct mcpgw_http_header *h)
{
    size_t n = mcpgw_cors_headers(origin, h);

    if (n == 0)
        return 0;
    h[n++] = (struct mcpgw_http_header){ "Access-Control-Allow-Methods", methods };
    h[n++] = (struct mcpgw_http_header){ "Access-Control-Allow-Headers",
                                         "Authorization, Content-Type, Accept, Last-Event-ID" };
    h[n++] = (struct mcpgw_http_header){ "Access-Control-Max-Age", "600" };
    return n;
}
