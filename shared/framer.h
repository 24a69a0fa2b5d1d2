/* framer.h - newline framing of a byte stream into bounded lines (internal).
 *
 * MCP stdio is one JSON text per line, split on byte 0x0A only (servers emit
 * a raw U+2028, which some splitters treat as a line break); one trailing
 * '\r' is dropped and empty lines are skipped.  A read is never a message:
 * bytes go in as they arrive, lines come out whole.
 *
 * A line longer than max is not buffered: its bytes are discarded as they
 * arrive, keeping only the last MCPGW__FRAMER_TAIL bytes, and it is reported
 * once its newline arrives (MCPGW__FRAME_OVERSIZE) so the caller can try to
 * recover the JSON-RPC id from the tail (SDK servers write "id" last) and
 * fail just that call.  Memory per framer is bounded by max + a constant.
 */
#ifndef MCPGW_FRAMER_H
#define MCPGW_FRAMER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define MCPGW__FRAMER_TAIL 64
/* Reads are made in chunks of this much, so one read(2) takes many lines. */
#define MCPGW__FRAMER_CHUNK (64 * 1024)

struct mcpgw__framer {
    char *buf;
    size_t start, len, cap;     /* unconsumed bytes are buf[start .. start+len) */
    size_t scanned;             /* bytes after start known to hold no newline */
    size_t max;                 /* longest line accepted */
    bool skipping;              /* inside an oversized line */
    size_t skipped;             /* its length so far */
    char tail[MCPGW__FRAMER_TAIL];
    size_t tail_len;
};

enum {
    MCPGW__FRAME_NONE = 0,      /* need more bytes */
    MCPGW__FRAME_LINE = 1,      /* *line, *len: one line (no '\n', no trailing '\r') */
    MCPGW__FRAME_OVERSIZE = 2   /* *line, *len: the tail of a discarded line;
                                 * mcpgw__framer_skipped() its full length */
};

void mcpgw__framer_init(struct mcpgw__framer *f, size_t max);
void mcpgw__framer_release(struct mcpgw__framer *f);

/* Room to write into: *avail >= 1 bytes at the returned pointer, or NULL on
 * out of memory. */
char *mcpgw__framer_space(struct mcpgw__framer *f, size_t *avail);
/* n bytes were written at the space pointer. */
void mcpgw__framer_commit(struct mcpgw__framer *f, size_t n);
/* space + memcpy + commit.  0, -ENOMEM, or -ENOBUFS when the buffer is full:
 * like after a read, drain lines with mcpgw__framer_next() before feeding
 * more than a few KiB. */
int mcpgw__framer_feed(struct mcpgw__framer *f, const char *p, size_t n);
/* One read(2) from fd into the framer: >0 bytes, 0 at EOF, or -errno
 * (-EAGAIN when nothing is there).  Drain with mcpgw__framer_next() until it
 * returns MCPGW__FRAME_NONE before the next read. */
ssize_t mcpgw__framer_read(struct mcpgw__framer *f, int fd);

/* Next complete line.  The pointer is valid until the next call of any
 * framer function.  The line is NUL-terminated in place. */
int mcpgw__framer_next(struct mcpgw__framer *f, char **line, size_t *len);
size_t mcpgw__framer_skipped(const struct mcpgw__framer *f);
/* Bytes buffered that do not yet form a line (e.g. at EOF). */
size_t mcpgw__framer_pending(const struct mcpgw__framer *f);

#endif
