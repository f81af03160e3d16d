/* fileio.c - whole-file reads with a size limit and atomic whole-file
 * writes (see fileio.h). */
#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"

int file_read_all(const char *path, const char *what, size_t max_bytes,
                  char **out, size_t *len, char *err)
{
    *out = NULL;
    *len = 0;
    if (!what) what = "file";
    if (!path || !*path)
        return abc_errf(err, ABC_EVALUE, "file_read_all: no path for the %s",
                        what);
    FILE *f = fopen(path, "rb");
    if (!f)
        return abc_errf(err, ABC_EIO, "%s: cannot open %s: %s", path, what,
                        strerror(errno));
    struct stat sbuf;
    if (fstat(fileno(f), &sbuf) != 0) {
        int e = errno;
        fclose(f);
        return abc_errf(err, ABC_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sbuf.st_mode)) {
        fclose(f);
        return abc_errf(err, ABC_EIO, "%s: not a regular file", path);
    }
    if (sbuf.st_size == 0) {
        fclose(f);
        return abc_errf(err, ABC_EFORMAT, "%s: empty file, not a %s", path,
                        what);
    }
    if (sbuf.st_size < 0 || (uint64_t)sbuf.st_size > max_bytes ||
        (uint64_t)sbuf.st_size >= SIZE_MAX) {
        fclose(f);
        return abc_errf(err, ABC_EFORMAT,
                        "%s: %lld bytes, larger than any %s (limit %zu)", path,
                        (long long)sbuf.st_size, what, max_bytes);
    }
    size_t n = (size_t)sbuf.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory reading %zu bytes",
                        path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int rerr = ferror(f);
    int e = errno;
    fclose(f); /* read-only: nothing to lose */
    if (got != n) {
        free(buf);
        if (rerr)
            return abc_errf(err, ABC_EIO, "%s: read failed: %s", path,
                            strerror(e));
        return abc_errf(err, ABC_EIO,
                        "%s: file shrank while reading (%zu of %zu bytes)",
                        path, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* fsyncs the directory holding path, so the rename survives a crash. */
static int sync_dir(const char *path, char *err)
{
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (!dir)
        return abc_errf(err, ABC_ENOMEM,
                        "%s: saved, but out of memory to sync its directory",
                        path);
    memcpy(dir, !slash ? "." : path, n);
    dir[n] = '\0';
    int rc = 0;
    int fd = open(dir, O_RDONLY);
    if (fd < 0) {
        rc = abc_errf(err, ABC_EIO,
                      "%s: saved, but cannot open directory %s to sync it: %s",
                      path, dir, strerror(errno));
    } else {
        int s = fsync(fd);
        int e = errno;
        if (close(fd) != 0 && s == 0) {
            s = -1;
            e = errno;
        }
        /* Some file systems cannot fsync a directory; that is no error. */
        if (s != 0 && e != EINVAL && e != EROFS)
            rc = abc_errf(err, ABC_EIO,
                          "%s: saved, but fsync of directory %s failed: %s",
                          path, dir, strerror(e));
    }
    free(dir);
    return rc;
}

int file_write_atomic(const char *path, const void *buf, size_t len, char *err)
{
    if (!path || !*path)
        return abc_errf(err, ABC_EVALUE, "file_write_atomic: no path");
    if (!buf && len)
        return abc_errf(err, ABC_EVALUE, "%s: file_write_atomic: no data",
                        path);
    char *tmp = NULL;
    FILE *f = NULL;
    int created = 0, rc = 0;

    size_t tlen = strlen(path) + 32;
    tmp = malloc(tlen);
    if (!tmp) return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());

    f = fopen(tmp, "wb");
    if (!f) {
        rc = abc_errf(err, ABC_EIO, "%s: cannot create temp file %s: %s", path,
                      tmp, strerror(errno));
        goto fail;
    }
    created = 1;
    if (len && fwrite(buf, 1, len, f) != len) {
        rc = abc_errf(err, ABC_EIO, "%s: writing %s failed: %s", path, tmp,
                      strerror(errno));
        goto fail;
    }
    if (fflush(f) != 0) {
        rc = abc_errf(err, ABC_EIO, "%s: flushing %s failed: %s", path, tmp,
                      strerror(errno));
        goto fail;
    }
    if (fsync(fileno(f)) != 0) {
        rc = abc_errf(err, ABC_EIO, "%s: fsync of %s failed: %s", path, tmp,
                      strerror(errno));
        goto fail;
    }
    {
        int closed = fclose(f);
        f = NULL;
        if (closed != 0) {
            rc = abc_errf(err, ABC_EIO, "%s: closing %s failed: %s", path, tmp,
                          strerror(errno));
            goto fail;
        }
    }
    if (rename(tmp, path) != 0) {
        rc = abc_errf(err, ABC_EIO, "%s: cannot rename %s over it: %s", path,
                      tmp, strerror(errno));
        goto fail;
    }
    free(tmp);
    return sync_dir(path, err);

fail:
    if (f) fclose(f); /* already failing: its result adds nothing */
    if (created && remove(tmp) != 0 && errno != ENOENT)
        abc_errprefix(err, rc, "(temp file %s could not be removed: %s)", tmp,
                      strerror(errno));
    free(tmp);
    return rc;
}

int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int file_make_dirs(const char *path, char *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return abc_errf(err, ABC_EVALUE, "path too long: %s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0775) != 0 && errno != EEXIST)
                return abc_errf(err, ABC_EIO, "cannot create directory %s: %s",
                                buf, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return 0;
}
