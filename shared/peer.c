/* peer.c - the client's address behind trusted reverse proxies (peer.h). */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "limits.h"
#include "peer.h"

static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool mcpgw_peer_parse_addr(const char *s, size_t len, uint8_t out[16])
{
    char buf[MCPGW_PEER_ADDR_LEN + 1];

    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, out + 12) == 1) {
        memcpy(out, v4_mapped, sizeof(v4_mapped));
        return true;
    }
    return inet_pton(AF_INET6, buf, out) == 1;
}

/* digits only, 1..maxdigits of them, value <= max. */
static bool parse_uint(const char *s, size_t len, size_t maxdigits, unsigned max, unsigned *out)
{
    unsigned v = 0;

    if (len == 0 || len > maxdigits)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

bool mcpgw_peer_trusted(const struct mcpgw_netblock *trusted, size_t n, const char *peer)
{
    uint8_t a[16];

    if (!peer)
        return false;
    if (strcmp(peer, "unix") == 0) {
        for (size_t i = 0; i < n; i++)
            if (trusted[i].unix_socket)
                return true;
        return false;
    }
    return mcpgw_peer_parse_addr(peer, strlen(peer), a) && mcpgw_peer_in(trusted, n, a);
}

static void addr_text(const uint8_t a[16], char *out, size_t outlen)
{
    char buf[MCPGW_PEER_ADDR_LEN];

    if (memcmp(a, v4_mapped, sizeof(v4_mapped)) == 0)
        inet_ntop(AF_INET, a + 12, buf, sizeof(buf));
    else
        inet_ntop(AF_INET6, a, buf, sizeof(buf));
    snprintf(out, outlen, "%s", buf);
}

int mcpgw_peer_parse_block(const char *s, struct mcpgw_netblock *out, char *err, size_t errlen)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    uint8_t masked[16];
    bool v4;
    unsigned len;

    memset(out, 0, sizeof(*out));
    if (strcmp(s, "unix") == 0) {
        out->unix_socket = true;
        return 0;
    }
    if (!mcpgw_peer_parse_addr(s, alen, out->addr)) {
        snprintf(err, errlen, "expected an IP address, an address block \"ADDR/LEN\" or "
                 "\"unix\"");
        return MCPGW_ECONFIG;
    }
    /* Written as IPv4 (not "::ffff:..."): the length counts IPv4 bits. */
    v4 = memchr(s, ':', alen) == NULL;
    if (!slash) {
        out->bits = 128;
        return 0;
    }
    if (!parse_uint(slash + 1, strlen(slash + 1), 3, v4 ? 32 : 128, &len)) {
        snprintf(err, errlen, "the prefix length after '/' must be 0 to %d", v4 ? 32 : 128);
        return MCPGW_ECONFIG;
    }
    out->bits = (uint8_t)(v4 ? len + 96 : len);
    memcpy(masked, out->addr, sizeof(masked));
    for (unsigned bit = out->bits; bit < 128; bit++)
        masked[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    if (memcmp(masked, out->addr, sizeof(masked)) != 0) {
        char text[MCPGW_PEER_ADDR_LEN];

        addr_text(masked, text, sizeof(text));
        snprintf(err, errlen, "address bits are set after the %u-bit prefix (the block is "
                 "\"%s/%u\")", len, text, len);
        return MCPGW_ECONFIG;
    }
    return 0;
}

static bool block_has(const struct mcpgw_netblock *b, const uint8_t addr[16])
{
    unsigned full = b->bits / 8, rest = b->bits % 8;

    if (b->unix_socket)
        return false;
    if (memcmp(b->addr, addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((b->addr[full] ^ addr[full]) & (uint8_t)(0xffu << (8 - rest))) == 0;
}

bool mcpgw_peer_in(const struct mcpgw_netblock *blocks, size_t n, const uint8_t addr[16])
{
    for (size_t i = 0; i < n; i++)
        if (block_has(&blocks[i], addr))
            return true;
    return false;
}

/* One X-Forwarded-For entry, already trimmed: "v4", "v4:port", "v6",
 * "[v6]" or "[v6]:port". */
static bool parse_entry(const char *s, size_t len, uint8_t out[16])
{
    const char *colon;
    unsigned port;

    if (len == 0 || len > MCPGW_FORWARDED_ENTRY_MAX)
        return false;
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        size_t after;

        if (!rb || rb == s + 1)
            return false;
        after = len - (size_t)(rb + 1 - s);
        if (after && (rb[1] != ':' || !parse_uint(rb + 2, after - 1, 5, 65535, &port)))
            return false;
        /* Brackets are for IPv6 only. */
        return memchr(s + 1, ':', (size_t)(rb - s - 1)) &&
               mcpgw_peer_parse_addr(s + 1, (size_t)(rb - s - 1), out);
    }
    colon = memchr(s, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon + 1 - s))) {
        /* Exactly one colon: IPv4 with a port. */
        if (!parse_uint(colon + 1, len - (size_t)(colon + 1 - s), 5, 65535, &port) ||
            memchr(s, '.', (size_t)(colon - s)) == NULL)
            return false;
        len = (size_t)(colon - s);
    }
    return mcpgw_peer_parse_addr(s, len, out);
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

enum mcpgw_peer_via mcpgw_peer_client(const struct mcpgw_netblock *trusted, size_t ntrusted,
                                      const char *peer, const char *const *xff, size_t nxff,
                                      char *out, size_t outlen)
{
    uint8_t a[16], last[16];
    bool peer_trusted = false, have_last = false;
    size_t scanned = 0, hops = 0;

    if (!peer)
        peer = "?";
    if (strcmp(peer, "unix") == 0) {
        peer_trusted = mcpgw_peer_trusted(trusted, ntrusted, peer);
        snprintf(out, outlen, "%s", peer);
    } else if (mcpgw_peer_parse_addr(peer, strlen(peer), a)) {
        peer_trusted = mcpgw_peer_in(trusted, ntrusted, a);
        addr_text(a, out, outlen);
    } else {
        snprintf(out, outlen, "%s", peer);
    }
    if (!peer_trusted || !xff || nxff == 0)
        return MCPGW_PEER_DIRECT;

    /* From the last header line to the first, each from its end: the
     * right end of the list is what the nearest proxy wrote. */
    for (size_t line = nxff; line-- > 0;) {
        const char *v = xff[line], *end;

        if (!v)
            continue;
        end = v + strlen(v);
        while (end > v) {
            const char *start = end, *s, *e;

            while (start > v && start[-1] != ',' &&
                   (size_t)(end - start) <= MCPGW_FORWARDED_SCAN_MAX)
                start--;
            scanned += (size_t)(end - start) + 1;
            if (scanned > MCPGW_FORWARDED_SCAN_MAX)
                return MCPGW_PEER_MALFORMED;
            s = start;
            e = end;
            while (s < e && ows(*s))
                s++;
            while (e > s && ows(e[-1]))
                e--;
            end = start > v ? start - 1 : v;
            if (s == e)
                continue;       /* an empty list element (RFC 9110 5.6.1) */
            if (!parse_entry(s, (size_t)(e - s), a))
                return MCPGW_PEER_MALFORMED;
            memcpy(last, a, sizeof(last));
            have_last = true;
            if (!mcpgw_peer_in(trusted, ntrusted, a) || ++hops == MCPGW_FORWARDED_HOPS_MAX) {
                addr_text(a, out, outlen);
                return MCPGW_PEER_FORWARDED;
            }
        }
    }
    if (!have_last)
        return MCPGW_PEER_DIRECT;
    addr_text(last, out, outlen);
    return MCPGW_PEER_FORWARDED;
}
