/* fileio.h - whole files in and out: read a regular file into memory with
 * a size limit, and replace a file atomically (temp file in the same
 * directory, fsync, rename, fsync of the directory) so that a crash never
 * leaves a half-written file where a good one was. Errors name the file. */
#ifndef ABC_FILEIO_H
#define ABC_FILEIO_H

#include <stddef.h>

/* Reads the whole of path, which must be a regular, non-empty file of at
 * most max_bytes, into a malloc'ed buffer. what names the kind of file in
 * messages ("checkpoint": "cannot open checkpoint", "empty file, not a
 * checkpoint", "larger than any checkpoint"). On success *out (caller
 * frees) holds *len bytes plus a terminating NUL not counted in *len.
 * Returns 0, or ABC_EIO (cannot open, stat or read; not a regular file;
 * shrank while read), ABC_EFORMAT (empty, too large) or ABC_ENOMEM, with
 * *out NULL, *len 0 and a message naming path in err. */
int file_read_all(const char *path, const char *what, size_t max_bytes,
                  char **out, size_t *len, char *err);

/* Replaces path with buf[0..len) atomically: the bytes go to
 * "<path>.tmp.<pid>" in the same directory, are flushed, fsync'ed and
 * closed, the temp file is renamed over path and the directory is
 * fsync'ed (file systems that cannot fsync a directory, EINVAL or EROFS,
 * are no error). On failure before the rename the temp file is removed and
 * whatever was at path is untouched. Returns 0, or ABC_EVALUE (no path),
 * ABC_ENOMEM or ABC_EIO with a message naming path in err; an error after
 * the rename ("saved, but ...") means path holds the new bytes but the
 * rename may not survive a crash. */
int file_write_atomic(const char *path, const void *buf, size_t len, char *err);

/* 1 when something exists at path (file or directory), else 0. */
int file_exists(const char *path);

/* Creates directory path and its missing parents (mkdir -p, mode 0775).
 * Returns 0 or ABC_EIO / ABC_EVALUE naming the directory. */
int file_make_dirs(const char *path, char *err);

#endif
