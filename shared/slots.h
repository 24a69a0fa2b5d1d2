/* slots.h - a host-wide cap on live MCP server processes (internal).
 *
 * Under mod_fcgid every FastCGI process has its own hub, so without a cap
 * N processes may run N times the configured servers.  Each spawn first
 * takes one of max slots: a file <dir>/slot-<i> locked with flock(LOCK_EX).
 * The lock lives with the hub's open file description, so it is released
 * when the server is reaped — and by the kernel when the hub's process dies,
 * even by kill -9 (its servers die with it through PDEATHSIG).
 */
#ifndef MCPGW_SLOTS_H
#define MCPGW_SLOTS_H

/* Take a free slot.  Returns an fd (>= 0, O_CLOEXEC) that holds it until
 * closed; -EAGAIN when all max slots are taken; another -errno when the
 * directory cannot be used (the caller decides whether to run uncapped). */
int mcpgw__slot_take(const char *dir, int max);

/* How many of the max slots are taken right now (for tests and health). */
int mcpgw__slots_in_use(const char *dir, int max);

#endif
