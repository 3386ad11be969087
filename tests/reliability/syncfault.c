#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libfiu-like: fail fsync/fdatasync with EIO on files whose path contains $SYNCFAULT_MATCH while the
   control file $SYNCFAULT_CTL exists. Its first byte: 'p' persistent, 't' transient (fail once, then
   the shim removes the control file). Every failure appends a line to $SYNCFAULT_CTL.log. */
static int should_fail(int fd) {
    const char *ctl = getenv("SYNCFAULT_CTL");
    const char *match = getenv("SYNCFAULT_MATCH");
    if (!ctl || !match) return 0;
    FILE *f = fopen(ctl, "r");
    if (!f) return 0;
    int mode = fgetc(f);
    fclose(f);
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    if (!strstr(path, match)) return 0;
    char logpath[4200];
    snprintf(logpath, sizeof logpath, "%s.log", ctl);
    FILE *log = fopen(logpath, "a");
    if (log) { fprintf(log, "EIO %s\n", path); fclose(log); }
    if (mode == 't') unlink(ctl);
    return 1;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fsync");
    if (should_fail(fd)) { errno = EIO; return -1; }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fdatasync");
    if (should_fail(fd)) { errno = EIO; return -1; }
    return real(fd);
}
