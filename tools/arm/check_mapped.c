// Checks the mapped-file SIGBUS handler (Sources/CFileSafety/mapped.c) on aarch64 under
// qemu: a registered mapping whose file is truncated under it faults with SIGBUS, and the
// handler names the file, removes the registered temporaries and exits 1; a fault in an
// unregistered mapping still kills the process by SIGBUS (the handler from before).
#define _GNU_SOURCE
#include "palr_cleanup.h"
#include "palr_mapped.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;
static void check(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    if (!ok) failures++;
}

/// In a child: maps two pages of `path`, registers the mapping unless `unregistered`,
/// truncates the file to nothing and reads the second page. Returns the wait status and
/// the child's standard error in `err`.
static int fault_in_child(const char *path, const char *temporary, int unregistered, char *err, size_t size) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return -1;
    pid_t child = fork();
    if (child == 0) {
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        const long page = sysconf(_SC_PAGESIZE);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, 2 * page) != 0) _exit(90);
        volatile unsigned char *p = mmap(NULL, 2 * page, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) _exit(91);
        if (!unregistered && palr_mapped_register((const void *)p, 2 * page, path) < 0) _exit(92);
        palr_cleanup_register(temporary);
        if (palr_mapped_install_bus_handler() != 0) _exit(93);
        if (ftruncate(fd, 0) != 0) _exit(94);
        unsigned char v = p[page + 8];   // past the new end: SIGBUS
        _exit(95 + (v & 1));             // not reached
    }
    close(pipefd[1]);
    size_t used = 0;
    ssize_t n;
    while (used + 1 < size && (n = read(pipefd[0], err + used, size - 1 - used)) > 0) used += (size_t)n;
    err[used] = 0;
    close(pipefd[0]);
    int status = 0;
    waitpid(child, &status, 0);
    return status;
}

int main(void) {
    char dir[] = "/tmp/palr-mapped-XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char path[256], temporary[256], err[1024];
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    snprintf(temporary, sizeof temporary, "%s/out.tmp", dir);

    FILE *f = fopen(temporary, "w");
    if (f) fclose(f);
    int status = fault_in_child(path, temporary, 0, err, sizeof err);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 1, "a fault in a registered, truncated mapping exits 1");
    check(strstr(err, "model.gguf was truncated or could not be read while this process was reading it") != NULL, "the message names the file");
    check(access(temporary, F_OK) != 0, "the registered temporary was removed");

    f = fopen(temporary, "w");
    if (f) fclose(f);
    status = fault_in_child(path, temporary, 1, err, sizeof err);
    check(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "a fault in an unregistered mapping is still SIGBUS");
    unlink(temporary);
    unlink(path);
    rmdir(dir);
    printf("mapped-file checks: %d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
