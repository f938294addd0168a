#define _GNU_SOURCE
#include "palr_mapped.h"
#include "palr_cleanup.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

enum { FREE = 0, BUSY = 1, READY = 2 };
static _Atomic int state[PALR_MAPPED_SLOTS];
static uintptr_t start[PALR_MAPPED_SLOTS];
static unsigned long length[PALR_MAPPED_SLOTS];
static char paths[PALR_MAPPED_SLOTS][PATH_MAX];
static struct sigaction previous;

int palr_mapped_register(const void *base, unsigned long size, const char *path) {
    const size_t n = strlen(path);
    if (n + 1 > PATH_MAX || base == NULL || size == 0) return -1;
    for (int i = 0; i < PALR_MAPPED_SLOTS; i++) {
        int expected = FREE;
        if (atomic_compare_exchange_strong(&state[i], &expected, BUSY)) {
            start[i] = (uintptr_t)base;
            length[i] = size;
            memcpy(paths[i], path, n + 1);
            atomic_store_explicit(&state[i], READY, memory_order_release);
            return i;
        }
    }
    return -1;
}

void palr_mapped_unregister(int slot) {
    if (slot < 0 || slot >= PALR_MAPPED_SLOTS) return;
    int expected = READY;
    if (atomic_compare_exchange_strong(&state[slot], &expected, BUSY))
        atomic_store_explicit(&state[slot], FREE, memory_order_release);
}

static int find(uintptr_t a) {
    for (int i = 0; i < PALR_MAPPED_SLOTS; i++)
        if (atomic_load_explicit(&state[i], memory_order_acquire) == READY && a >= start[i] && a - start[i] < length[i])
            return i;
    return -1;
}

int palr_mapped_lookup(const void *address, char *out, unsigned long size) {
    const int i = find((uintptr_t)address);
    if (i < 0 || size == 0) return 0;
    strncpy(out, paths[i], size - 1);
    out[size - 1] = 0;
    return 1;
}

static void say(const char *s) {
    size_t left = strlen(s);
    while (left > 0) {
        const ssize_t n = write(STDERR_FILENO, s, left);
        if (n <= 0) return;
        s += n;
        left -= (size_t)n;
    }
}

static void on_bus(int sig, siginfo_t *info, void *context) {
    (void)context;
    // A fault (not a kill(2)) at an address of a registered mapping: that file shrank.
    const int i = info != NULL && info->si_code > 0 ? find((uintptr_t)info->si_addr) : -1;
    if (i >= 0) {
        say("Error: ");
        say(paths[i]);
        // A page past a shortened file's end, or a page the storage could not read (both
        // raise SIGBUS with the same code; the file's size now cannot tell: a copy may
        // have grown it again).
        say(" was truncated or could not be read while this process was reading it (rewritten in place, "
            "e.g. by cp, a copy still in progress, or a storage error); stopped. Replace a file in use by "
            "renaming a complete new file over it.\n");
        palr_cleanup_remove_all();
        _exit(1);
    }
    // Not ours: the handler from before (Swift's crash report) or the default action.
    // A fault returns to the instruction, which faults again into that handler.
    sigaction(SIGBUS, &previous, NULL);
    if (info == NULL || info->si_code <= 0) raise(sig);
}

int palr_mapped_install_bus_handler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_bus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGBUS, &action, &previous);
}
