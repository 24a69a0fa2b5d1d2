/* origin.c - one normal form for Origin values, for the config loader and
 * the request-time checks alike. */
#include "config.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "origin.h"

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

/* Split "scheme://host[:port]" and write the normal form.  The port, when
 * present, must be 1..65535 written without sign. */
int mcpgw_origin_normalize(const char *origin, char *out, size_t outlen)
{
    const char *sep, *host, *hend, *port = NULL;
    size_t slen, hlen, plen = 0, need;
    char *o;

    if (!origin || !(sep = strstr(origin, "://")) || sep == origin)
        return MCPGW_EPARSE;
    slen = (size_t)(sep - origin);
    for (size_t i = 0; i < slen; i++) {
        unsigned char c = (unsigned char)origin[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))))
            return MCPGW_EPARSE;
    }
    host = sep + 3;
    if (*host == '[') {
        hend = strchr(host, ']');
        if (!hend || hend == host + 1)
            return MCPGW_EPARSE;
        for (const char *p = host + 1; p < hend; p++)
            if (!(host_char((unsigned char)*p) || *p == ':') || *p == '_' || *p == '-')
                return MCPGW_EPARSE;
        hend++;
    } else {
        hend = host;
        while (host_char((unsigned char)*hend))
            hend++;
        if (hend == host)
            return MCPGW_EPARSE;
    }
    hlen = (size_t)(hend - host);
    if (*hend == ':') {
        unsigned long v = 0;

        port = hend + 1;
        while (port[plen] >= '0' && port[plen] <= '9' && plen < 6)
            v = v * 10 + (unsigned long)(port[plen++] - '0');
        if (plen == 0 || v == 0 || v > 65535 || port[0] == '0')
            return MCPGW_EPARSE;
        hend = port + plen;
    }
    if (*hend != '\0')
        return MCPGW_EPARSE;
    if (port && ((slen == 4 && strncasecmp(origin, "http", 4) == 0 && plen == 2 &&
                  memcmp(port, "80", 2) == 0) ||
                 (slen == 5 && strncasecmp(origin, "https", 5) == 0 && plen == 3 &&
                  memcmp(port, "443", 3) == 0)))
        port = NULL;
    need = slen + 3 + hlen + (port ? 1 + plen : 0) + 1;
    if (need > outlen)
        return MCPGW_ETOOBIG;
    o = out;
    for (size_t i = 0; i < slen; i++)
        *o++ = lower(origin[i]);
    memcpy(o, "://", 3);
    o += 3;
    for (size_t i = 0; i < hlen; i++)
        *o++ = lower(host[i]);
    if (port) {
        *o++ = ':';
        memcpy(o, port, plen);
        o += plen;
    }
    *o = '\0';
    return 0;
}
