/* peer.h - who a request really comes from, behind trusted reverse proxies.
 *
 * Behind Apache or lighttpd every WebSocket reaches mcpgw-wsd from the web
 * server's address, so per-IP limits would throttle all users together and
 * logs would name the proxy.  The proxy says who its client was in
 * X-Forwarded-For: Apache's mod_proxy and lighttpd's mod_proxy both append
 * the address they accepted the request from to whatever list the client
 * sent ("client-supplied, ..., their-peer").  So only the right end of the
 * list can be believed, and only as far as the hops that wrote it are
 * trusted:
 *
 *   - the TCP peer is the first hop.  If it is not a trusted proxy, the
 *     header is ignored and the peer is the client: anyone can send the
 *     header, and believing it would let a client choose the address it is
 *     counted and logged as.
 *   - otherwise the list is read from the right.  Each entry is the address
 *     the hop to its right accepted the request from; while that address is
 *     a trusted proxy too, the next entry to the left is read.  The first
 *     entry that is not trusted is the client.  Entries left of it were
 *     written by the client (or hops we cannot vouch for) and are never
 *     looked at - not even parsed.
 *   - if every entry read is trusted, the leftmost read is the client (a
 *     program on the proxy's own host, say).  At most
 *     MCPGW_FORWARDED_HOPS_MAX entries are read.
 *   - an entry that is not an address ("unknown", a name, junk, an entry
 *     over MCPGW_FORWARDED_ENTRY_MAX bytes) where one must be read means a
 *     trusted hop sent something we cannot use: the TCP peer is the answer.
 *     A client cannot cause this, because the trusted proxy's own entry
 *     stops the walk before the client's part of the list.
 *
 * Several X-Forwarded-For header lines are one list, in the order received
 * (RFC 9110 section 5.3).  Entries are IPv4 ("192.0.2.1", or with ":port"),
 * IPv6 ("2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:443"); IPv4-mapped
 * IPv6 addresses are the IPv4 address, so "::ffff:192.0.2.1" and
 * "192.0.2.1" are one client.  Parsing is bounded: no allocation, and
 * beyond finding where each header line ends, the walk reads at most
 * MCPGW_FORWARDED_SCAN_MAX bytes (more is malformed).
 *
 * All functions are pure and thread-safe.
 */
#ifndef MCPGW_PEER_H
#define MCPGW_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest address text written: an IPv6 address (INET6_ADDRSTRLEN). */
#define MCPGW_PEER_ADDR_LEN 46

/* A trusted-proxy entry: an address block, or the unix-socket peers. */
struct mcpgw_netblock {
    uint8_t addr[16];           /* network address; IPv4 as ::ffff:a.b.c.d */
    uint8_t bits;               /* prefix length over those 128 bits */
    bool unix_socket;           /* "unix": connections over a unix socket */
};

/* Parse one trustedProxies entry: "ADDR", "ADDR/LEN" (IPv4 LEN 0..32, IPv6
 * 0..128) or "unix".  Host bits must be zero ("10.0.0.1/8" is refused: it
 * is probably a typo for something else).  0 and *out set, or
 * MCPGW_ECONFIG with a lowercase reason in err (not NULL-terminated when
 * errlen is 0). */
int mcpgw_peer_parse_block(const char *s, struct mcpgw_netblock *out, char *err, size_t errlen);

/* Parse an address literal of len bytes (IPv4 or IPv6, no brackets, no
 * port) into 16 bytes, IPv4 as IPv4-mapped.  false if it is not one. */
bool mcpgw_peer_parse_addr(const char *s, size_t len, uint8_t out[16]);

/* Whether addr (16 bytes, as parse_addr makes) is in one of the blocks. */
bool mcpgw_peer_in(const struct mcpgw_netblock *blocks, size_t n, const uint8_t addr[16]);

/* Whether peer (inet_ntop text, or "unix") is a trusted proxy: an address
 * in one of the blocks, or "unix" with a "unix" entry listed. */
bool mcpgw_peer_trusted(const struct mcpgw_netblock *trusted, size_t n, const char *peer);

enum mcpgw_peer_via {
    MCPGW_PEER_DIRECT = 0,      /* the TCP peer: not a trusted proxy, or no header */
    MCPGW_PEER_FORWARDED,       /* from X-Forwarded-For, through trusted proxies */
    MCPGW_PEER_MALFORMED        /* a trusted proxy's header could not be read: the peer */
};

/* The client's address for limits and logs.
 *
 * peer: the TCP peer as inet_ntop() writes it, or "unix" for a unix-socket
 * connection (trusted only if the list has a "unix" entry); anything else
 * is taken as an untrusted name and copied.  xff: the X-Forwarded-For
 * values in the order received, nxff of them (NULL when none).
 * out (outlen >= MCPGW_PEER_ADDR_LEN) receives the address, NUL-terminated:
 * canonical text for an IP address (IPv4 dotted, IPv6 as inet_ntop
 * writes it), the peer's text as given otherwise (cut to outlen).  Returns
 * how the answer was found. */
enum mcpgw_peer_via mcpgw_peer_client(const struct mcpgw_netblock *trusted, size_t ntrusted,
                                      const char *peer, const char *const *xff, size_t nxff,
                                      char *out, size_t outlen);

#endif
