/* statefile.c - read, replace and lock small private state files
 * (statefile.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/limits.h>    /* PATH_MAX; <limits.h> would find shared/limits.h */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "statefile.h"

#define READ_CHUNK 65536

/* "<path>: <what>: <strerror>"; returns -errnum. */
static int sys_msg(char *err, size_t errlen, const char *path, const char *what, int errnum)
{
    char buf[256];

    mcpgw_errmsg(err, errlen, "%s: %s: %s", path, what, strerror_r(errnum, buf, sizeof(buf)));
    return -errnum;
}

/* Read to the end, refusing anything over max even if the file grew after
 * fstat. */
static int read_to_end(int fd, size_t max, struct mcpgw_buf *b)
{
    for (;;) {
        size_t room = max - b->len, chunk;
        ssize_t r;
        int rc;

        if (room == 0) {
            char probe;

            r = read(fd, &probe, 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return -errno;
            return r == 0 ? 0 : MCPGW_ETOOBIG;
        }
        chunk = room < READ_CHUNK ? room : READ_CHUNK;
        if ((rc = mcpgw_buf_reserve(b, chunk)) < 0)
            return rc;
        r = read(fd, b->ptr + b->len, chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return 0;
        b->len += (size_t)r;
        b->ptr[b->len] = '\0';
    }
}

int mcpgw_statefile_read(const char *path, size_t max, struct mcpgw_buf *out, struct stat *st,
                         char *err, size_t errlen)
{
    struct stat sb;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        if (errno == ENOENT)
            return -ENOENT;
        return sys_msg(err, errlen, path, "cannot open", errno);
    }
    if (fstat(fd, &sb) == -1) {
        rc = sys_msg(err, errlen, path, "cannot stat", errno);
        goto out;
    }
    rc = MCPGW_ECONFIG;
    if (!S_ISREG(sb.st_mode)) {
        mcpgw_errmsg(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    /* fstat on the fd we read, so the file checked is the file parsed. */
    if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
        mcpgw_errmsg(err, errlen, "%s: refusing a group- or world-writable file (mode %04o); "
            "run chmod 600", path, (unsigned)(sb.st_mode & 07777));
        goto out;
    }
    if ((uintmax_t)sb.st_size > max) {
        mcpgw_errmsg(err, errlen, "%s: larger than %zu bytes", path, max);
        goto out;
    }
    rc = read_to_end(fd, max, out);
    if (rc == MCPGW_ETOOBIG) {
        mcpgw_errmsg(err, errlen, "%s: larger than %zu bytes", path, max);
        rc = MCPGW_ECONFIG;
        goto out;
    }
    if (rc == -ENOMEM) {
        mcpgw_errmsg(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (rc < 0) {
        rc = sys_msg(err, errlen, path, "cannot read", -rc);
        goto out;
    }
    if (out->len && memchr(out->ptr, '\0', out->len)) {
        mcpgw_errmsg(err, errlen, "%s: contains a NUL byte", path);
        rc = MCPGW_ECONFIG;
        goto out;
    }
    if (st)
        *st = sb;
out:
    close(fd);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int mcpgw_statefile_replace(const char *path, const char *data, size_t len,
                            const struct stat *old, const char *component,
                            char *err, size_t errlen)
{
    char tmp[PATH_MAX], dir[PATH_MAX], ebuf[128];
    const char *slash;
    int fd, dfd, rc, n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return sys_msg(err, errlen, path, "cannot write", ENAMETOOLONG);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd == -1)
        return sys_msg(err, errlen, tmp, "cannot create", errno);
    /* A stale temp file from an earlier process with our pid keeps its
     * mode across O_TRUNC, and umask may have taken bits away. */
    if (fchmod(fd, 0600) == -1) {
        rc = sys_msg(err, errlen, tmp, "cannot chmod", errno);
        goto fail;
    }
    if (old && (old->st_uid != geteuid() || old->st_gid != getegid()) &&
        fchown(fd, old->st_uid, old->st_gid) == -1)
        mcpgw_log_warn(component, "%s: cannot keep owner %ld:%ld: %s", path,
                       (long)old->st_uid, (long)old->st_gid,
                       strerror_r(errno, ebuf, sizeof(ebuf)));
    if ((rc = write_all(fd, data, len)) < 0) {
        rc = sys_msg(err, errlen, tmp, "cannot write", -rc);
        goto fail;
    }
    if (fsync(fd) == -1) {
        rc = sys_msg(err, errlen, tmp, "cannot fsync", errno);
        goto fail;
    }
    rc = close(fd);
    fd = -1;
    if (rc == -1) {
        rc = sys_msg(err, errlen, tmp, "cannot write", errno);
        goto fail;
    }
    if (rename(tmp, path) == -1) {
        rc = sys_msg(err, errlen, path, "cannot replace", errno);
        goto fail;
    }
    slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    /* The rename is done; a failure here only weakens durability, and
     * reporting the write as failed would hide what is in the file. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd == -1 || fsync(dfd) == -1)
        mcpgw_log_warn(component, "%s: cannot fsync directory: %s", path,
                       strerror_r(errno, ebuf, sizeof(ebuf)));
    if (dfd != -1)
        close(dfd);
    return 0;
fail:
    if (fd != -1)
        close(fd);
    unlink(tmp);
    return rc;
}

int mcpgw_statefile_lock(const char *path, char *err, size_t errlen)
{
    char lock[PATH_MAX];
    int fd, n;

    n = snprintf(lock, sizeof(lock), "%s.lock", path);
    if (n < 0 || (size_t)n >= sizeof(lock))
        return sys_msg(err, errlen, path, "cannot lock", ENAMETOOLONG);
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    if (fd == -1)
        return sys_msg(err, errlen, lock, "cannot open", errno);
    while (flock(fd, LOCK_EX) == -1) {
        int e = errno;

        if (e == EINTR)
            continue;
        close(fd);
        return sys_msg(err, errlen, lock, "cannot lock", e);
    }
    return fd;
}
