#include "fileutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "rand.h"

int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t) w;
    }
    return 0;
}

int read_full_fd(int fd, size_t max, char **ret, size_t *ret_len)
{
    size_t alloc = 4096, len = 0;
    char *buf = xmalloc(alloc);
    for (;;) {
        if (len + 1 >= alloc) {
            if (alloc > max + 1) {
                free(buf);
                return -EFBIG;
            }
            alloc *= 2;
            buf = xrealloc(buf, alloc);
        }
        ssize_t r = read(fd, buf + len, alloc - len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            free(buf);
            return e;
        }
        if (r == 0)
            break;
        len += (size_t) r;
        if (len > max) {
            free(buf);
            return -EFBIG;
        }
    }
    buf[len] = 0;
    *ret = buf;
    if (ret_len)
        *ret_len = len;
    return 0;
}

int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    int r = read_full_fd(fd, max, ret, ret_len);
    close(fd);
    return r;
}

int fsync_dir_of(const char *path)
{
    char *copy = xstrdup(path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static int write_via_temp(const char *path, const void *p, size_t n, mode_t mode, bool durable)
{
    char suffix[17];
    random_hex(suffix, 16);
    char *tmp = xasprintf("%s.tmp-%s", path, suffix);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = -errno;
        free(tmp);
        return e;
    }
    int r = write_all(fd, p, n);
    if (r == 0 && fchmod(fd, mode) < 0)
        r = -errno;
    if (r == 0 && durable && fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    free(tmp);
    if (r == 0 && durable)
        r = fsync_dir_of(path);
    return r;
}

int write_file_atomic(const char *path, const void *p, size_t n, mode_t mode)
{
    return write_via_temp(path, p, n, mode, true);
}

int write_file_replace(const char *path, const void *p, size_t n, mode_t mode)
{
    return write_via_temp(path, p, n, mode, false);
}

int mkdir_p(const char *path, mode_t mode)
{
    char *p = xstrdup(path);
    int r = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
            r = -errno;
            free(p);
            return r;
        }
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        r = -errno;
    free(p);
    return r;
}

static int rm_rf_at(int parent_fd, const char *name, dev_t dev)
{
    struct stat st;
    if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    if (st.st_dev != dev)
        return -EXDEV;
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int q = rm_rf_at(dirfd(d), de->d_name, dev);
        if (q < 0 && r == 0)
            r = q;
    }
    closedir(d);
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
        r = -errno;
    return r;
}

int rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    return rm_rf_at(AT_FDCWD, path, st.st_dev);
}

bool path_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a);
    while (n > 1 && a[n - 1] == '/')
        n--;
    while (*b == '/')
        b++;
    return xasprintf("%.*s/%s", (int) n, a, b);
}
