#define _GNU_SOURCE
#include "palr_cleanup.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

// Slot states: FREE, then BUSY while a path is copied in or about to be dropped,
// then READY (the handler may use it). The paths live here, static, so nothing is
// ever freed under a handler that runs on another thread.
enum { FREE = 0, BUSY = 1, READY = 2 };
static _Atomic int state[PALR_CLEANUP_SLOTS];
static char paths[PALR_CLEANUP_SLOTS][PATH_MAX];
// Set (for good) by the handler before it reads any path. A slot the handler saw READY
// may be unregistered while unlink(2) still reads its path; were it then registered
// again, the new path would be copied over the one being read and the kernel could
// unlink a mix of the two names. Registration checks this flag after claiming a slot
// and before copying: once the process is dying, nothing is copied any more.
static _Atomic int dying;

int palr_cleanup_register(const char *path) {
    const size_t n = strlen(path);
    if (n + 1 > PATH_MAX) return -1;
    for (int i = 0; i < PALR_CLEANUP_SLOTS; i++) {
        int expected = FREE;
        if (atomic_compare_exchange_strong(&state[i], &expected, BUSY)) {
            if (atomic_load(&dying)) {   // seq_cst: ordered against the handler's store
                atomic_store(&state[i], FREE);
                return -1;
            }
            memcpy(paths[i], path, n + 1);
            atomic_store_explicit(&state[i], READY, memory_order_release);
            return i;
        }
    }
    return -1;
}

void palr_cleanup_unregister(int slot) {
    if (slot < 0 || slot >= PALR_CLEANUP_SLOTS) return;
    int expected = READY;
    // BUSY first, so a handler starting now skips it; then FREE for reuse.
    if (atomic_compare_exchange_strong(&state[slot], &expected, BUSY))
        atomic_store_explicit(&state[slot], FREE, memory_order_release);
}

void palr_cleanup_remove_all(void) {
    const int saved = errno;   // a handler must not change what the interrupted code sees
    atomic_store(&dying, 1);
    // Files first, then folders: rmdir(2) removes only an empty folder, so a folder
    // registered with the files in it goes once they are gone (and a file fails rmdir).
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < PALR_CLEANUP_SLOTS; i++)
            // seq_cst, as the store to `dying` and the loads in register: with acquire
            // loads the C model would let this read an old READY while a register still
            // read dying == 0 (store→load order needs seq_cst on both sides).
            if (atomic_load(&state[i]) == READY) {
                if (pass == 0) unlink(paths[i]);
                else rmdir(paths[i]);
            }
    errno = saved;
}

int palr_cleanup_registered(int slot, char *out, unsigned long size) {
    if (slot < 0 || slot >= PALR_CLEANUP_SLOTS || size == 0) return 0;
    if (atomic_load_explicit(&state[slot], memory_order_acquire) != READY) return 0;
    strncpy(out, paths[slot], size - 1);
    out[size - 1] = 0;
    return 1;
}

static void on_signal(int sig) {
    palr_cleanup_remove_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

unsigned palr_cleanup_install_handlers(void) {
    // SIGPIPE too: a reader that goes away (`palr … | head`) still stops the process, as
    // it always did, but not before its temporaries are removed.
    static const int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    enum { count = sizeof signals / sizeof signals[0] };
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < count; i++) sigaddset(&action.sa_mask, signals[i]);  // no nesting
    sigset_t unblock;
    sigemptyset(&unblock);
    unsigned handled = 0;
    for (int i = 0; i < count; i++) {
        struct sigaction old;
        if (sigaction(signals[i], NULL, &old) != 0) continue;
        if (old.sa_handler == SIG_IGN) continue;  // the parent asked for it to be ignored
        if (sigaction(signals[i], &action, NULL) != 0) continue;
        sigaddset(&unblock, signals[i]);
        handled |= 1u << signals[i];
    }
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
    return handled;
}
