/* relay.c - `relay COMMAND [ARGS...]`: runs COMMAND on two pipes and copies
 * bytes both ways between them and its own stdin/stdout, parsing nothing.
 *
 * `make bench-ws` puts it between bench_ws and server-everything: the
 * throughput it keeps is the ceiling for any process in the path on this
 * machine, before that process does any work of its own (bench/README.md).
 * One thread, poll(), a buffer per direction; a direction stops reading
 * while its buffer waits to be written, so neither side can block the other.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUF_BYTES 65536

struct dir {
    int from, to;
    char buf[BUF_BYTES];
    size_t off, len;
};

/* One step of a direction: write what is buffered, else read more.
 * -1 when it is finished (end of input or an error). */
static int step(struct dir *d, short revents)
{
    ssize_t n;

    if (d->len) {
        if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
            return 0;
        n = write(d->to, d->buf + d->off, d->len);
        if (n < 0)
            return errno == EINTR || errno == EAGAIN ? 0 : -1;
        d->off += (size_t)n;
        d->len -= (size_t)n;
        return 0;
    }
    if (!(revents & (POLLIN | POLLHUP | POLLERR)))
        return 0;
    n = read(d->from, d->buf, sizeof(d->buf));
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (n == 0)
        return -1;
    d->off = 0;
    d->len = (size_t)n;
    return 0;
}

int main(int argc, char **argv)
{
    static struct dir up, down;
    int in[2], out[2], status;
    pid_t pid;

    if (argc < 2) {
        fprintf(stderr, "usage: relay COMMAND [ARGS...]\n");
        return 64;
    }
    signal(SIGPIPE, SIG_IGN);
    if (pipe(in) < 0 || pipe(out) < 0 || (pid = fork()) < 0) {
        perror("relay");
        return 1;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    up.from = 0, up.to = in[1];
    down.from = out[0], down.to = 1;
    for (;;) {
        struct pollfd p[2] = {
            { up.len ? up.to : up.from, up.len ? POLLOUT : POLLIN, 0 },
            { down.len ? down.to : down.from, down.len ? POLLOUT : POLLIN, 0 },
        };

        if (up.from < 0)
            p[0].fd = -1;
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (up.from >= 0 && step(&up, p[0].revents) < 0) {
            /* Our input ended: end the command's, and keep relaying its
             * answers until it exits. */
            close(up.to);
            up.from = -1;
            up.len = 0;
        }
        if (step(&down, p[1].revents) < 0)
            break;
    }
    close(down.from);
    if (up.from >= 0)
        close(up.to);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
