/* fuzz_conf.c - any text as a configuration file: a config or one line of
 * error, never a crash, a leak or an unterminated message. */
#include "config.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mcpgw_conf *conf;
    char err[256];

    memset(err, 'x', sizeof(err));
    if (mcpgw_conf_parse((const char *)data, size, "f.json", "/tmp", &conf, err,
                         sizeof(err)) == 0) {
        assert(conf);
        for (size_t i = 0; i < conf->nservers; i++)
            assert(mcpgw_conf_server(conf, conf->servers[i].id) == &conf->servers[i]);
        mcpgw_conf_free(conf);
        return 0;
    }
    assert(!conf);
    assert(memchr(err, '\0', sizeof(err)) && strchr(err, '\n') == NULL);
    return 0;
}
