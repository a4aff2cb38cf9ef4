/* proc_self.c — see proc_self.h. Both read /proc on every call: a Stats
 * request is rare (a sampler asks about once a second) and the numbers
 * must be current, so nothing is cached. */
#include "proc_self.h"

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

bool jq_proc_rss_bytes(uint64_t *out)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return false;
    unsigned long long size, resident;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (n != 2 || page <= 0)
        return false;
    *out = (uint64_t)resident * (uint64_t)page;
    return true;
}

bool jq_proc_open_fds(uint32_t *out)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return false;
    uint32_t n = 0;
    const struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    /* the directory's own descriptor was listed too */
    *out = n > 0 ? n - 1 : 0;
    return true;
}
