#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slots.h"

static int slot_open(const char *dir, int i)
{
    char path[4096];
    int fd;

    if (snprintf(path, sizeof(path), "%s/slot-%d", dir, i) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    return fd < 0 ? -errno : fd;
}

int mcpgw__slot_take(const char *dir, int max)
{
    int start, fd;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    /* Start at a random slot so many processes starting at once do not all
     * queue up on slot 0. */
    start = max > 1 ? rand() % max : 0;
    for (int k = 0; k < max; k++) {
        int i = (start + k) % max;

        if ((fd = slot_open(dir, i)) < 0)
            return fd;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        close(fd);
    }
    return -EAGAIN;
}

int mcpgw__slots_in_use(const char *dir, int max)
{
    int used = 0;

    for (int i = 0; i < max; i++) {
        int fd = slot_open(dir, i);

        if (fd < 0)
            continue;
        /* flock locks belong to open file descriptions: this fresh one
         * conflicts with every holder, our own process's included. */
        if (flock(fd, LOCK_SH | LOCK_NB) < 0)
            used++;
        close(fd);
    }
    return used;
}
