/* gateway.h - a whole gateway for fuzz targets that serve requests.
 *
 * One per process, made on first use and kept for every input: a private
 * state directory (removed at exit) with a token file holding an
 * all-scopes token, a narrow one ("srv:echo") and a revoked one; the
 * embedded event store with a few events of every kind already published;
 * a hub running in its own thread (as in mcpgw-fcgi) over three servers
 * that never start - "srv" and "other" name a command that does not exist
 * and wait an hour before a retry, "off" is disabled - so a request costs
 * no process; and routes over it twice, with requireAuth true and false.
 *
 * Event streams would hold a request for gateway.sse.maxStreamMs: the
 * config's copy is lowered below its minimum here (5 ms) so that a stream
 * reads what is stored, sends a heartbeat and ends within one input.
 */
#ifndef MCPGW_FUZZ_GATEWAY_H
#define MCPGW_FUZZ_GATEWAY_H

#include "conf.h"
#include "events.h"
#include "hub.h"
#include "routes.h"
#include "token.h"

struct fuzz_gateway {
    char dir[64];
    const struct mcpgw_conf *conf;  /* the hub's */
    struct mcpgw_conf *conf_open;   /* the same with requireAuth false */
    mcpgw_hub *hub;
    mcpgw_events *events;
    mcpgw_routes *rt, *rt_open;
    mcpgw_tokens *tokens;           /* the token file as loaded at start */
    char tok_full[96], tok_narrow[96], tok_gone[96];
};

/* The process's gateway; aborts if it cannot be made. */
struct fuzz_gateway *fuzz_gateway(void);

/* A fresh single-use ticket bought with the all-scopes token, into out
 * (MCPGW_TICKET_LEN + 1 bytes). */
void fuzz_gateway_ticket(struct fuzz_gateway *g, char *out, size_t outlen);

/* p (n bytes) parsed as strict JSON with nothing after it: a new object, or
 * NULL.  How the targets check that an answer is JSON. */
json_object *fuzz_strict_parse(const char *p, size_t n);

#endif
