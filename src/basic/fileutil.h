/* File and fd helpers. Every fd skiff opens is O_CLOEXEC. The small helpers
 * return -errno and take no sk_err (systemd style). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

int write_all(int fd, const void *p, size_t n);
/* Reads up to max bytes; -EFBIG when the file is larger. Result is NUL-terminated. */
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len);
int read_full_fd(int fd, size_t max, char **ret, size_t *ret_len);
/* Write via temp file, fsync, rename, fsync(dir): the file is either the old or
 * the new content after a crash. */
int write_file_atomic(const char *path, const void *p, size_t n, mode_t mode);
/* Write via temp file and rename, without fsync: readers never see a partial
 * file and the new content survives the writer being killed, but not a host
 * crash. For files that describe or feed processes a host crash ends anyway
 * (container bundles, per-task state, caches). */
int write_file_replace(const char *path, const void *p, size_t n, mode_t mode);
int mkdir_p(const char *path, mode_t mode);
/* Removes a tree without following symlinks and without crossing mounts. */
int rm_rf(const char *path);
int fsync_dir_of(const char *path);
bool path_exists(const char *path);
char *path_join(const char *a, const char *b);
