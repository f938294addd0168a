#define _GNU_SOURCE
#include "palr_stdio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

unsigned palr_guard_standard_descriptors(void) {
    unsigned closed = 0;
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        closed |= 1u << fd;
        // open(2) returns the lowest free descriptor: this one, as the lower ones are open.
        int got = open(fd == 0 ? "/dev/null" : "/dev/full", fd == 0 ? O_RDONLY : O_WRONLY);
        if (got >= 0 && got != fd) { dup2(got, fd); close(got); }
    }
    return closed;
}

int palr_flush_standard_output(void) {
    errno = 0;
    if (fflush(stdout) != 0) return errno ? errno : EIO;
    if (!ferror(stdout)) return 0;
    // stdio keeps only a flag for an earlier failure. On a pipe or socket that failure
    // was a reader going away (EPIPE): the tool ignores SIGPIPE or its parent did.
    struct stat info;
    if (fstat(STDOUT_FILENO, &info) == 0 && (S_ISFIFO(info.st_mode) || S_ISSOCK(info.st_mode))) return EPIPE;
    return EIO;
}

#if defined(__linux__)
#include <sys/vfs.h>
int palr_file_system_type(const char *path, unsigned long *type) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    *type = (unsigned long)info.f_type & 0xFFFFFFFFul;
    return 0;
}
#else
int palr_file_system_type(const char *path, unsigned long *type) {
    (void)path; (void)type;
    errno = ENOSYS;
    return -1;
}
#endif
