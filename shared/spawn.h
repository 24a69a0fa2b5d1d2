/* spawn.h - start an MCP server process safely, stop it, reap it (internal).
 *
 * What a child gets, and nothing more:
 *  - fds 0, 1, 2: pipes to the hub (stdin, stdout, stderr); every other fd is
 *    closed (close_range) so it never holds a web connection, a listen
 *    socket or another server's pipe;
 *  - default dispositions for every signal and an empty signal mask;
 *  - its own process group (pgid = pid), so signals reach npx's grandchildren;
 *  - PR_SET_PDEATHSIG(SIGKILL), so it dies when the spawning thread does
 *    (spawn from the long-lived loop thread only);
 *  - RLIMIT_CORE 0 (no core dumps holding secrets);
 *  - environment: PATH, HOME, LANG from the gateway's own environment (if
 *    set; PATH defaults to /usr/local/bin:/usr/bin:/bin), then the server's
 *    configured "env" (which may override them).  Nothing else: never a
 *    CGI/FastCGI parameter, never HTTP_PROXY, never a token;
 *  - cwd: the configured one, if any.
 * No shell is involved: command is looked up in the child's PATH by the
 * parent before fork (so the child only calls async-signal-safe functions),
 * and exec failure is reported through a close-on-exec errno pipe, so a
 * missing command fails mcpgw__spawn() itself with -ENOENT.
 */
#ifndef MCPGW_SPAWN_H
#define MCPGW_SPAWN_H

#include <sys/types.h>

#include "conf.h"

struct mcpgw__child {
    pid_t pid;
    int pidfd;      /* readable when the child has exited; -1 if unsupported */
    int in_fd;      /* write end of the child's stdin; O_NONBLOCK, O_CLOEXEC */
    int out_fd;     /* read end of its stdout; O_NONBLOCK, O_CLOEXEC */
    int err_fd;     /* read end of its stderr; O_NONBLOCK, O_CLOEXEC */
};

/* Spawn server s.  On 0, *c is filled and owned by the caller (release with
 * mcpgw__child_close_fds and reap with mcpgw__child_reap).  On failure
 * returns -errno (-ENOENT: command not found or not executable, with the
 * exec errno if exec itself failed), *c has pid 0 and all fds -1, nothing
 * is left running, and err gets a one-line reason naming the command. */
int mcpgw__spawn(const struct mcpgw_conf_server *s, struct mcpgw__child *c,
                 char *err, size_t errlen);

/* Resolve cmd against path_list (a PATH value) into out.  A cmd containing
 * '/' is taken as is.  0, -ENOENT, -ENAMETOOLONG. */
int mcpgw__spawn_resolve(const char *cmd, const char *path_list, char *out, size_t outlen);

/* Signal the child's whole process group.  0 or -errno (-ESRCH if gone). */
int mcpgw__child_signal(const struct mcpgw__child *c, int sig);

/* Non-blocking reap.  Returns 1 and the wait status in *status if the child
 * has exited (and been reaped; pid becomes 0), 0 if it is still running,
 * -errno on error. */
int mcpgw__child_reap(struct mcpgw__child *c, int *status);

/* Close whichever of the fds are still open and set them to -1. */
void mcpgw__child_close_fds(struct mcpgw__child *c);

/* "exited with status 3", "killed by signal 9" into buf. */
const char *mcpgw__wait_status_str(int status, char *buf, size_t len);

#endif
