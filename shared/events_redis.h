/* events_redis.h - the event stream on Redis Streams, for several hosts
 * (internal; events.h is the API).
 *
 * One stream key (events.redis.key) holds the events; a hash beside it
 * (<key>:meta) holds a dense sequence number and what retention removed
 * last.  Publishing is one EVALSHA of a script that appends (XADD) and trims
 * by count, age and bytes in one atomic step.  Stream ids are the event ids.
 * Readers of one handle share one XREAD BLOCK connection (a thread the
 * handle starts with its first reader) and a ring of recent entries; a
 * reader behind the ring catches up on a connection of its own.  Readers
 * tell a gap by the sequence number, so one a reader missed (retention, a
 * Redis restarted empty) is always reported.
 *
 * Needs Redis >= 6.2 (scripts, XADD/XREAD).  The program must ignore
 * SIGPIPE (hiredis writes with write(2)); every gateway program does.
 *
 * THREADS.  mcpgw__evredis_append() and _bounds() may be called from many
 * threads (one publishing connection, behind a mutex); a reader belongs to
 * one thread.
 */
#ifndef MCPGW_EVENTS_REDIS_H
#define MCPGW_EVENTS_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "events.h"

struct mcpgw__evredis;
struct mcpgw__evredis_reader;

/* A stream id "<ms>-<seq>". */
struct mcpgw__redis_id {
    uint64_t ms, seq;
};

/* Whether s is a canonical stream id; fills *id if not NULL. */
bool mcpgw__evredis_id_parse(const char *s, struct mcpgw__redis_id *id);
int mcpgw__evredis_id_order(const struct mcpgw__redis_id *a, const struct mcpgw__redis_id *b);

/* Never connects: 0 and *out, or -ENOMEM / MCPGW_ECONFIG. */
int mcpgw__evredis_open(const struct mcpgw_conf_events *c, struct mcpgw__evredis **out,
                        char *err, size_t errlen);
void mcpgw__evredis_close(struct mcpgw__evredis *r);   /* NULL-safe; readers first */

/* Append one event; id (MCPGW_EVENT_ID_MAX+1 bytes) gets its id.
 * Bounded: waits at most MCPGW_EVENTS_PUBLISH_WAIT for the connection
 * and for Redis's answer, plus MCPGW_EVENTS_REDIS_CONNECT_TIMEOUT when it
 * (re)connects; after a failure, no reconnection is tried for a delay
 * that doubles from MCPGW_EVENTS_RETRY_MIN to _MAX, and events are
 * refused at once meanwhile.  0, or MCPGW_EUNAVAIL (not connected),
 * MCPGW_EBUSY, MCPGW_EPROTO (Redis refused), -errno. */
int mcpgw__evredis_append(struct mcpgw__evredis *r, const char *type, const char *server_id,
                          const char *json, size_t json_len, char *id);

/* A reader after last_id (valid, or NULL: from now on).  Connects later
 * if Redis is down.  0 or -errno. */
int mcpgw__evredis_reader_open(struct mcpgw__evredis *r, const char *last_id,
                               struct mcpgw__evredis_reader **out);
void mcpgw__evredis_reader_close(struct mcpgw__evredis_reader *rd);
int mcpgw__evredis_read(struct mcpgw__evredis_reader *rd, struct mcpgw_event *e, int timeout_ms);
/* An epoll fd: readable when the connection has data or a reconnection
 * is due.  Stable for the reader's life. */
int mcpgw__evredis_reader_fd(const struct mcpgw__evredis_reader *rd);

/* Oldest and newest ids ("" when the stream is empty or unreachable). */
void mcpgw__evredis_bounds(struct mcpgw__evredis *r, char *oldest, char *newest);

#endif
