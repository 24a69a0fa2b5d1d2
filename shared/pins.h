/* pins.h - tool-definition pinning: a tool whose definition changed after
 * it was approved, or that appeared later, is held back until an operator
 * approves it.
 *
 * Why: a tool's description and schema are instructions to the model that
 * calls it.  A server that changes them after an operator looked (a "rug
 * pull"), or slips in a new tool, can steer every client of the gateway
 * (tool poisoning).  Pinning makes such a change visible and, in enforce
 * mode, inert until approved.
 *
 * Modes (gateway.toolPinning, enum mcpgw_tool_pinning in conf.h; the hub
 * applies them): "off" (default: nothing is hashed),
 * "warn" (changes are logged, tools still served), "enforce" (changed and
 * new tools are withheld: not listed, and a call to one is refused with
 * forbidden, naming the approve command).
 *
 * Pins live in <stateDir>/tool-pins.json under the statefile.h rules, so
 * every gateway process (wsd, each FastCGI process, the CLI) sees the same
 * approvals; a process re-reads the file when it changes:
 *   {"servers":{"<server>":{"<tool>":"<sha256 hex>",...},...}}
 * A tool's hash covers its whole definition as the server sent it (name,
 * title, description, inputSchema, outputSchema, annotations and anything
 * else), serialised canonically: object members sorted bytewise by key, no
 * whitespace, strings escaped one way, numbers as json-c keeps them.
 *
 * First use: a server with no entry at all has its current tools pinned
 * (trust on first use, logged); from then on the pins decide.  A tool that
 * disappears keeps its pin, so one that comes back changed is caught.
 * `mcpgw tools approve SERVER [TOOL...]` pins the current definitions.
 */
#ifndef MCPGW_PINS_H
#define MCPGW_PINS_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

enum mcpgw_pin_verdict {
    MCPGW_PIN_MATCH = 0,        /* the pinned definition */
    MCPGW_PIN_NEW,              /* no pin for this tool */
    MCPGW_PIN_CHANGED           /* pinned, with another definition */
};

const char *mcpgw_pin_verdict_name(enum mcpgw_pin_verdict v);   /* "match", "new", "changed" */

/* The canonical hash of one tool definition (a JSON object) as 64 lower
 * case hex digits + NUL.  0, -EINVAL (not an object, nesting deeper than
 * MCPGW_JSON_DEPTH_MAX), -ENOMEM or MCPGW_ETOOBIG. */
int mcpgw_pins_hash(json_object *tool, char hex[65]);

typedef struct mcpgw_pins mcpgw_pins;

/* A handle on the pins file at path (copied); nothing is read yet.
 * 0 and *out, or -ENOMEM. */
int mcpgw_pins_open(const char *path, mcpgw_pins **out);
void mcpgw_pins_free(mcpgw_pins *p);        /* NULL-safe */
const char *mcpgw_pins_path(const mcpgw_pins *p);

/* Judge server's tools (an array of tool objects, borrowed): verdicts[i]
 * for tools[i] (the caller gives room for all of them).  When the file has
 * no entry for server, every tool is pinned now and judged a match, and
 * *first_use (if not NULL) is set.  A tool without a string "name" is
 * judged new.  Thread-safe.  0, or < 0 with a one-line message in err (an
 * unreadable or malformed pins file: the caller should withhold in enforce
 * mode rather than guess). */
int mcpgw_pins_check(mcpgw_pins *p, const char *server, json_object *tools,
                     enum mcpgw_pin_verdict *verdicts, bool *first_use, char *err, size_t errlen);

/* Pin the current definitions of server's tools: all of them (names NULL)
 * or those named (nnames of them; a name not among tools is an error and
 * nothing is written).  *napproved gets how many pins changed.  Takes the
 * file's lock; safe against other processes doing the same.  0 or < 0 with
 * a message in err. */
int mcpgw_pins_approve(const char *path, const char *server, json_object *tools,
                       const char *const *names, size_t nnames, size_t *napproved,
                       char *err, size_t errlen);

#endif
