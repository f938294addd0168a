// Checks the signal-cleanup registry (Sources/CFileSafety) on aarch64 under qemu: a
// registered file is removed when the process dies of SIGTERM, an unregistered one
// stays, a registered folder goes with the files in it (registered before them) while
// a non-empty one stays, and a signal inherited as ignored stays ignored.
#define _GNU_SOURCE
#include "palr_cleanup.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;
static void check(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    if (!ok) failures++;
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    if (f) { fputs("x", f); fclose(f); }
}

int main(void) {
    char dir[] = "/tmp/palr-cleanup-XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char kept[256], removed[256];
    snprintf(kept, sizeof kept, "%s/kept", dir);
    snprintf(removed, sizeof removed, "%s/removed", dir);
    touch(kept);
    touch(removed);

    pid_t child = fork();
    if (child == 0) {
        int a = palr_cleanup_register(kept), b = palr_cleanup_register(removed);
        palr_cleanup_unregister(a);
        (void)b;
        palr_cleanup_install_handlers();
        raise(SIGTERM);
        _exit(0);   // not reached: the handler re-raises with the default action
    }
    int status = 0;
    waitpid(child, &status, 0);
    check(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "the child died of SIGTERM");
    check(access(removed, F_OK) != 0, "the registered file was removed");
    check(access(kept, F_OK) == 0, "the unregistered file stayed");

    // A folder registered before its file is removed after it; one still holding an
    // unregistered file stays.
    char sub[256], inner[256], full[256], other[256];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(inner, sizeof inner, "%s/sub/store", dir);
    snprintf(full, sizeof full, "%s/full", dir);
    snprintf(other, sizeof other, "%s/full/other", dir);
    mkdir(sub, 0700);
    mkdir(full, 0700);
    touch(inner);
    touch(other);
    child = fork();
    if (child == 0) {
        palr_cleanup_register(sub);
        palr_cleanup_register(full);
        palr_cleanup_register(inner);
        palr_cleanup_install_handlers();
        raise(SIGTERM);
        _exit(0);
    }
    waitpid(child, &status, 0);
    check(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "the second child died of SIGTERM");
    check(access(inner, F_OK) != 0 && access(sub, F_OK) != 0, "a registered folder went with its registered file");
    check(access(other, F_OK) == 0, "a registered folder with an unregistered file in it stayed");
    unlink(other);
    rmdir(full);

    signal(SIGHUP, SIG_IGN);   // as nohup does; inherited by the child
    child = fork();
    if (child == 0) {
        unsigned handled = palr_cleanup_install_handlers();
        raise(SIGHUP);
        _exit((handled & (1u << SIGHUP)) == 0 && (handled & (1u << SIGTERM)) != 0 ? 0 : 2);
    }
    waitpid(child, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "an ignored SIGHUP stayed ignored");

    unlink(kept);
    rmdir(dir);
    printf("%d failed\n", failures);
    return failures ? 1 : 0;
}
