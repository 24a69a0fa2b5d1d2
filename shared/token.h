/* token.h - bearer tokens: a file of hashes, scopes, constant-time checks.
 *
 * A token looks like  mcpgw_<43 chars base64url of 32 random bytes>_<8 hex CRC32>
 * The prefix lets secret scanners find leaked tokens; the CRC lets us reject
 * a mistyped token without touching the store.  The file holds only the
 * SHA-256 (hex) of each token, with its name, a display prefix (first 12
 * chars), creation time, optional expiry, revoked flag and scopes:
 *   {"tokens":[{"name":"ci","sha256":"…","prefix":"mcpgw_AbCdEf","created":1764118923,
 *               "expires":0,"revoked":false,"scopes":["memory:*","everything:echo"]}]}
 * The file is written atomically (temp file + rename), mode 0600, under an
 * flock so concurrent `mcpgw token` commands do not lose updates.  A file
 * that is group- or world-writable is refused.
 *
 * Scopes: "SERVER:TOOL", where either side may be "*"; "*" alone = "*:*".
 *
 * Never put a token in a log line, an error message or a child environment.
 */
#ifndef MCPGW_TOKEN_H
#define MCPGW_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct mcpgw_tokens mcpgw_tokens;

/* One verified identity.  Borrowed from the store that produced it: valid
 * until that store is freed or reloaded. */
struct mcpgw_token_info {
    const char *name;
    const char *const *scopes;  /* NULL-terminated */
    size_t nscopes;
    time_t created, expires;    /* expires 0 = never */
    bool revoked;
    const char *prefix;         /* display prefix, safe to show */
};

/* Load the token file.  A missing file is an empty store (so a fresh
 * install works); a malformed, oversized or group/world-writable one is an
 * error.  0 and *out, or MCPGW_ECONFIG/-errno with a message in err. */
int mcpgw_tokens_load(const char *path, mcpgw_tokens **out, char *err, size_t errlen);
void mcpgw_tokens_free(mcpgw_tokens *t);                /* NULL-safe */

/* Verify a presented token (not NUL-terminated: len bytes).  Hashes it and
 * compares with every stored hash in constant time.  Returns 0 and fills
 * *info, or MCPGW_EAUTH for anything else: malformed, unknown, revoked or
 * expired all look the same to the caller. */
int mcpgw_tokens_verify(const mcpgw_tokens *t, const char *token, size_t len,
                        time_t now, struct mcpgw_token_info *info);

/* Whether info's scopes allow server:tool.  tool NULL: any tool of server
 * (used to decide whether the server is visible at all). */
bool mcpgw_token_allows(const struct mcpgw_token_info *info, const char *server, const char *tool);

/* Check one scope string's syntax ("memory:*", "everything:echo", "*"). */
bool mcpgw_token_scope_valid(const char *scope);

/* Operator commands, each a read-modify-write of the file under its lock.
 * add: creates token NAME with scopes (expires 0 = never) and writes the new
 * token, NUL-terminated, to out (outlen >= 64).  MCPGW_EEXIST if an active
 * token has that name.  revoke: marks it revoked; MCPGW_ENOTFOUND if none.
 * Both also return -EINVAL (a bad name, scope or expiry, or a name that
 * looks like a token), MCPGW_ETOOBIG (the store holds MCPGW_TOKENS_MAX
 * entries), MCPGW_ECONFIG (the existing file is malformed or writable by
 * others) and -errno for I/O.  On error a message goes to err. */
int mcpgw_tokens_add(const char *path, const char *name, const char *const *scopes,
                     size_t nscopes, time_t expires, char *out, size_t outlen,
                     char *err, size_t errlen);
int mcpgw_tokens_revoke(const char *path, const char *name, char *err, size_t errlen);

/* Iterate stored entries (for `mcpgw token list`): i from 0; returns false
 * past the end. */
bool mcpgw_tokens_get(const mcpgw_tokens *t, size_t i, struct mcpgw_token_info *info);

/* Pull a bearer token out of an Authorization header value ("Bearer x").
 * Returns a pointer into value and its length, or NULL. */
const char *mcpgw_token_from_header(const char *value, size_t *len);

/* Internal, for ticket.c: base64url without padding of n bytes into out
 * ((4n+2)/3 chars, no NUL written); returns the length. */
size_t mcpgw__b64url_encode(const unsigned char *in, size_t n, char *out);

#endif
