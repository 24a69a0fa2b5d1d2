/* events_file.h - the embedded event store (internal; events.h is the API).
 *
 * An append-only log of numbered segment files in one directory, shared by
 * every process of a host: see the top of events_file.c for the format and
 * why it is safe against concurrent writers and a kill -9 mid-write.
 *
 * Ids are decimal sequence numbers, dense (each event is the previous + 1)
 * and strictly increasing across every process that appends.
 *
 * THREADS.  mcpgw__evfile_append_many() and _bounds() may be called from many
 * threads at once; a reader belongs to one thread.  Readers of one store
 * handle share one inotify watch, served by a thread the handle starts when
 * its first reader opens.  A process that forks after that must only exec
 * (or make raw system calls) in the child.
 */
#ifndef MCPGW_EVENTS_FILE_H
#define MCPGW_EVENTS_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "events.h"

struct mcpgw__evfile;
struct mcpgw__evfile_reader;

/* Open (creating the directory, mode 0750, and the first segment if there
 * is none) the store in c->dir with c's retention.  0 and *out, or -errno
 * with a message naming the path in err. */
int mcpgw__evfile_open(const struct mcpgw_conf_events *c, struct mcpgw__evfile **out,
                       char *err, size_t errlen);
/* Stops the readers' thread; every reader must be closed first. NULL-safe. */
void mcpgw__evfile_close(struct mcpgw__evfile *f);

/* One event to append: type, server_id (NULL: none), json_len bytes of
 * json, its time (wall ms). */
struct mcpgw__evrec {
    const char *type, *server_id, *json;
    size_t json_len;
    int64_t ts;
};

/* Append n events in order under one lock, with as few writes as the
 * segment limits allow; each event's strings and json are copied into its
 * record.  Bounded time: waits at most MCPGW_EVENTS_PUBLISH_WAIT for the
 * store's lock (1 ms while this handle's previous wait timed out and it
 * has not got the lock since).  Every event is checked first
 * (MCPGW_ETOOBIG: none is stored).  0, or why the events from *done on
 * were not stored: MCPGW_EBUSY (lock not got in time), -errno (I/O).
 * *done says how many were stored (a prefix of e) and *last_id (may be
 * NULL) the last one's id when any was. */
int mcpgw__evfile_append_many(struct mcpgw__evfile *f, const struct mcpgw__evrec *e, size_t n,
                              size_t *done, uint64_t *last_id);

/* A reader after last_id (a valid id or NULL: from now on).  0 or -errno. */
int mcpgw__evfile_reader_open(struct mcpgw__evfile *f, const char *last_id,
                              struct mcpgw__evfile_reader **out);
void mcpgw__evfile_reader_close(struct mcpgw__evfile_reader *r);
/* As mcpgw_events_read(). */
int mcpgw__evfile_read(struct mcpgw__evfile_reader *r, struct mcpgw_event *e, int timeout_ms);
int mcpgw__evfile_reader_fd(const struct mcpgw__evfile_reader *r);

/* The oldest and newest retained ids; 0 and 0 when the store holds none. */
int mcpgw__evfile_bounds(struct mcpgw__evfile *f, uint64_t *oldest, uint64_t *newest);

/* Tests: reopen the segment files on the next append, as a fresh process
 * would (drops the handle's cached position). */
void mcpgw__evfile_forget(struct mcpgw__evfile *f);
/* Tests: take the store's lock as an append does (0, or MCPGW_EBUSY /
 * -errno) and give it back - or die holding it. */
int mcpgw__evfile_lock(struct mcpgw__evfile *f);
void mcpgw__evfile_unlock(struct mcpgw__evfile *f);

#endif
