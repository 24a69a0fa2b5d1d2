/* statefile.h - small private files the gateway rewrites as a whole (the
 * token store, the tool pins), shared by every gateway process.
 *
 * The rules, once: a read refuses what is not a regular file, what group or
 * others may write (whoever can write it can grant themselves access), and
 * anything over the caller's size cap, checked on the descriptor actually
 * read; a rewrite goes to a temporary file (mode 0600, the old owner kept)
 * that is fsync'ed and renamed over the old one, so a reader in another
 * process sees the old file or the new one, never a torn one; and every
 * read-modify-write of one file is serialised by an flock on "<path>.lock".
 *
 * Messages are one line, "<path>: <what>[: <strerror>]", cut to errlen.
 */
#ifndef MCPGW_STATEFILE_H
#define MCPGW_STATEFILE_H

#include <stddef.h>
#include <sys/stat.h>

#include "buf.h"

/* Read path whole into out (initialised by the caller; its ceiling is the
 * cap, which must be at most max).  st, if not NULL, gets the file's stat.
 * 0; -ENOENT (no message) when there is no file; MCPGW_ECONFIG for a file
 * refused by the rules above (not regular, group/world-writable, over max
 * bytes, a NUL byte); another -errno for a failed system call.  O_NONBLOCK
 * on open, so a FIFO planted at the path cannot hang the caller. */
int mcpgw_statefile_read(const char *path, size_t max, struct mcpgw_buf *out, struct stat *st,
                         char *err, size_t errlen);

/* Replace path with len bytes of data (see above).  old, if not NULL, is the
 * stat of the file being replaced: its owner is kept when we may (so that
 * `sudo mcpgw token add` does not hand the gateway's file to root).
 * component names the caller in the warnings logged when only durability
 * is weakened (owner not kept, directory not fsync'ed).  0 or -errno. */
int mcpgw_statefile_replace(const char *path, const char *data, size_t len,
                            const struct stat *old, const char *component,
                            char *err, size_t errlen);

/* Take the lock serialising read-modify-writes of path.  The lock file is
 * never removed (two writers must not lock two different inodes).  Returns
 * the fd to close to unlock, or -errno. */
int mcpgw_statefile_lock(const char *path, char *err, size_t errlen);

#endif
