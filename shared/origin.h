/* origin.h - the normal form of an Origin value (RFC 6454 section 6.1).
 *
 * Below both the config loader (which stores allowedOrigins in this form)
 * and cors.h (which normalises each request's Origin the same way before a
 * plain string compare), so the two can never disagree about a spelling.
 */
#ifndef MCPGW_ORIGIN_H
#define MCPGW_ORIGIN_H

#include <stddef.h>

/* Room for a normalised origin: scheme, "://", a host name or bracketed
 * IPv6 address, ":" and a port. */
#define MCPGW_ORIGIN_MAX 300

/* Normalise an Origin header value the way browsers serialise one: scheme
 * and host lower case, default port (:80 http, :443 https) dropped.  0, or
 * MCPGW_EPARSE for anything that is not scheme://host[:port] (including
 * "null" and anything with a path). */
int mcpgw_origin_normalize(const char *origin, char *out, size_t outlen);

#endif
