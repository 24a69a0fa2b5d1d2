/* events_internal.h - what the event stream's front (events.c) shares with
 * its backends (events_file.c, events_redis.c).  Not installed.
 */
#ifndef MCPGW_EVENTS_INTERNAL_H
#define MCPGW_EVENTS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "events.h"
#include "events_file.h"

/* Event types are [a-z_]{1,32}; serverId is what the config allows. */
#define MCPGW__EVENT_TYPE_MAX 32

/* Fill *e with the reader-side "gap" event, the one explicit signal that
 * events between requested and oldest are gone:
 *   {"type":"gap","timestamp":now,"data":{"requested":…,"oldest":…}}
 * id is the gap's own id: the backend gives one strictly between requested
 * and oldest (the id just before oldest), so ids stay increasing and a
 * client that resumes after the gap asks from there.  The text lives in
 * scratch (reset here), so e is valid until scratch changes.
 * 0, or -ENOMEM / MCPGW_ETOOBIG. */
int mcpgw__events_gap(struct mcpgw_event *e, struct mcpgw_buf *scratch, const char *id,
                      const char *requested, const char *oldest);

/* Whether type names a tool event (only for authenticated readers). */
bool mcpgw__events_is_tool_type(const char *type);

/* Wall-clock ms since the epoch. */
int64_t mcpgw__events_now_ms(void);

/* Decimal text of v into out (at least 21 bytes). */
void mcpgw__events_u64(char *out, uint64_t v);

/* Parse a decimal u64 without sign or leading zeros ("0" is allowed) of
 * exactly len bytes.  false if it is not one. */
bool mcpgw__events_parse_u64(const char *s, size_t len, uint64_t *v);

/* Store e[0..n) (their text already made) in order, with one append where
 * the backend allows; each is counted as published or dropped. */
void mcpgw__events_store(mcpgw_events *ev, const struct mcpgw__evrec *e, size_t n);
/* Count an event that could not be made (rc: why) as dropped. */
void mcpgw__events_drop(mcpgw_events *ev, const char *type, int rc);

/* The text of {"type":type,"timestamp":now,"data":data} appended to b, and
 * *server_id pointed at data's serverId (in data) if it has a usable one.
 * 0, or -EINVAL (a bad type or data) / -ENOMEM / MCPGW_ETOOBIG with b as it
 * was. */
int mcpgw__events_wrap(struct mcpgw_buf *b, const char *type, json_object *data,
                       const char **server_id);
/* An event type that is valid; "(invalid type)" otherwise (for counting). */
const char *mcpgw__events_type_name(const char *type);

/* This process's part of a callId; whether tool params are published. */
const char *mcpgw__events_tag(const mcpgw_events *ev);
bool mcpgw__events_include_params(const mcpgw_events *ev);

#endif
