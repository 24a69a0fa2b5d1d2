/* guard.h - every byte libfcgi reads passes a FastCGI record check first.
 *
 * The head check (params.h) looks at a request's records up to the end of
 * its FCGI_PARAMS stream before libfcgi reads them.  What follows - the
 * body, FCGI_STDIN - libfcgi reads while the request is served, and it
 * acts on any record it finds there: a management record (request id 0)
 * makes it answer FCGI_GET_VALUES into a 64-byte stack buffer that four
 * known names overflow, and leak memory for any other type.  A peer that
 * can reach the FastCGI socket could crash the responder with one record.
 *
 * libfcgi reads every byte of a connection through OS_Read() (os_unix.c),
 * called through the PLT, so the definition in guard.c replaces it for the
 * whole process: it reads as libfcgi's did, then walks the record headers
 * in what was read, and fails the read (-1, EPROTO) before libfcgi sees a
 * record that is not FCGI_STDIN or FCGI_ABORT_REQUEST of the request the
 * head check passed.  A read on a connection the head check did not pass
 * fails too: the guard fails closed.
 *
 * Threads: a connection is read by one thread at a time (the accept queue
 * hands it over under a mutex), so a connection's state needs no lock.
 */
#ifndef MCPGW_FCGI_GUARD_H
#define MCPGW_FCGI_GUARD_H

#include <stddef.h>

/* Make room for every descriptor the process may open.  0 or -ENOMEM. */
int fcgi_guard_init(void);

/* The head check passed a request on fd: its first head_len bytes (still
 * unread) are its checked head, req_id its request id.  Resets whatever the
 * guard knew about fd. */
void fcgi_guard_begin(int fd, size_t head_len, unsigned req_id);

/* The replacement (declared by libfcgi's fcgios.h with this prototype). */
int OS_Read(int fd, char *buf, size_t len);

#endif
