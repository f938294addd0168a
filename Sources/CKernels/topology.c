// Physical cores available to this process, for the default thread count.
#define _GNU_SOURCE
#include "ckernels.h"

#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#if defined(__linux__)
// Reads one small integer from a sysfs file; -1 when it cannot.
static long read_long(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

int palr_physical_cores(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
    }
    // Distinct (package, core) pairs among the CPUs this process may run on; SMT
    // siblings share a pair. Without topology files each CPU counts as a core.
    enum { MAX_PAIRS = 1024 };
    long pkgs[MAX_PAIRS], cores[MAX_PAIRS];
    int pairs = 0, cpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        cpus++;
        char path[128];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        const long pkg = read_long(path);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        const long core = read_long(path);
        if (pkg < 0 || core < 0) return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
        int seen = 0;
        for (int i = 0; i < pairs && !seen; i++) seen = pkgs[i] == pkg && cores[i] == core;
        if (!seen && pairs < MAX_PAIRS) {
            pkgs[pairs] = pkg;
            cores[pairs] = core;
            pairs++;
        }
    }
    return pairs > 0 ? pairs : (cpus > 0 ? cpus : 1);
}
#else
int palr_physical_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
#endif
