/* Layer extraction. See img_unpack_layer() in image.h for the contract.
 *
 * libarchive parses the tar stream (and decompresses it); the file system is
 * written here, never through archive_write_disk. Two readers are chained: the
 * outer one only decompresses (gzip, zstd, xz; "raw" format) and every byte it
 * produces is hashed for the diff_id; the inner one parses tar from those
 * bytes.
 *
 * Containment: entry names and hardlink targets are cleaned lexically first
 * (absolute paths and ".." that climbs above the root are refused). The parent
 * directory of every entry is then opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) relative to the destination's fd,
 * so symlinks created by earlier entries are followed only while they stay
 * inside; any resolution that would leave fails with EXDEV and the layer is
 * refused (RESOLVE_IN_ROOT would silently redirect such writes instead, and
 * the contract asks us to refuse them). Without openat2 the parent is walked
 * one component at a time with O_NOFOLLOW and any symlink in a parent path is
 * refused. The last component is always handled with *at() calls on the
 * parent fd that do not follow symlinks (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW), and
 * metadata is set through fds opened that way, so nothing is ever written
 * outside the destination. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "image-internal.h"
#include "image.h"
#include "shared/digest.h"

bool img_unpack_force_fallback = false;
uint64_t img_unpack_max_bytes = IMG_UNPACK_MAX_BYTES;
uint64_t img_unpack_max_entries = IMG_UNPACK_MAX_ENTRIES;

#define IO_BUF             (128 * 1024)
#define DEFERRED_BYTES_MAX (64u * 1024 * 1024)
#define MAX_XATTRS         128
#define WHITEOUT_PREFIX    ".wh."
#define WHITEOUT_OPAQUE    ".wh..wh..opq"
#define WHITEOUT_META      ".wh..wh."

static int have_openat2 = -1; /* -1 unknown, 0 no, 1 yes */

typedef struct deferred_dir {
    char *path; /* cleaned, relative to the root; "" for the root */
    struct timespec ts[2];
} deferred_dir;

typedef struct unpacker {
    int in_fd;
    int root_fd;
    struct archive *outer, *tar;
    sk_sha256 *h;
    uint64_t raw_bytes;
    uint64_t entries;
    uint64_t data_bytes;
    bool root;
    bool over_limit; /* the uncompressed stream passed img_unpack_max_bytes */
    char *inbuf, *midbuf;
    deferred_dir *deferred;
    size_t ndeferred, adeferred, deferred_bytes;
    sk_err *err;
} unpacker;

/* ---- paths ---- */

/* Cleans a tar path into out (size PATH_MAX): drops "", "." and a leading
 * "./", applies ".." lexically. -EINVAL for absolute or empty input, -EXDEV
 * when ".." climbs above the root, -ENAMETOOLONG. "" means the root. */
static int clean_path(const char *in, char *out)
{
    size_t n = 0;
    if (!in || !*in)
        return -EINVAL;
    if (in[0] == '/')
        return -EINVAL;
    const char *p = in;
    while (*p) {
        const char *e = strchrnul(p, '/');
        size_t len = (size_t) (e - p);
        if (len == 0 || (len == 1 && p[0] == '.')) {
            /* skip */
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            if (n == 0)
                return -EXDEV;
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--; /* the separator */
        } else {
            if (n + len + 2 > PATH_MAX)
                return -ENAMETOOLONG;
            if (n > 0)
                out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p = *e ? e + 1 : e;
    }
    out[n] = 0;
    return 0;
}

/* Splits a cleaned non-empty path at its last '/': path becomes the parent
 * ("" for the root) and the leaf is returned. */
static char *split_leaf(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash) {
        memmove(path + 1, path, strlen(path) + 1);
        path[0] = 0;
        return path + 1;
    }
    *slash = 0;
    return slash + 1;
}

/* ---- resolution ---- */

static int openat2_dir(int root_fd, const char *path)
{
    struct open_how how = {
        .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    for (int i = 0; i < 16; i++) {
        long fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
        if (fd >= 0)
            return (int) fd;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
    }
    return -EAGAIN;
}

/* The fallback: one component at a time, refusing symlinks. */
static int walk_dir(int root_fd, const char *path)
{
    int fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    const char *p = path;
    while (*p) {
        const char *e = strchrnul(p, '/');
        char comp[NAME_MAX + 1];
        size_t len = (size_t) (e - p);
        if (len > NAME_MAX) {
            close(fd);
            return -ENAMETOOLONG;
        }
        memcpy(comp, p, len);
        comp[len] = 0;
        int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0) {
            int e2 = errno;
            struct stat st;
            if ((e2 == ELOOP || e2 == ENOTDIR) &&
                fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                e2 = EXDEV;
            close(fd);
            return -e2;
        }
        close(fd);
        fd = nfd;
        p = *e ? e + 1 : e;
    }
    return fd;
}

/* Opens a directory below the root; "" is the root itself. */
static int resolve_dir(int root_fd, const char *path)
{
    if (!*path) {
        int fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
    }
    if (!img_unpack_force_fallback && have_openat2 != 0) {
        int fd = openat2_dir(root_fd, path);
        if (fd != -ENOSYS) {
            have_openat2 = 1;
            return fd;
        }
        have_openat2 = 0;
    }
    return walk_dir(root_fd, path);
}

static int path_error(unpacker *u, int r, const char *what, const char *path)
{
    if (r == -EXDEV || r == -ELOOP)
        return sk_err_set(u->err, SK_E_INVALID,
                          "refusing layer entry '%s': %s resolves outside the layer (symlink, "
                          "'..' or mount point)",
                          path, what);
    return sk_err_sys(u->err, r, "layer entry '%s': open %s", path, what);
}

/* Opens (creating as needed, 0755) the parent directory `dir` for entry `path`. */
static int open_parent(unpacker *u, const char *dir, const char *path, int *ret)
{
    int fd = resolve_dir(u->root_fd, dir);
    if (fd >= 0) {
        *ret = fd;
        return 0;
    }
    if (fd != -ENOENT)
        return path_error(u, fd, "parent directory", path);

    /* Create missing components one at a time, re-resolving each prefix from
     * the root so that every step gets the same containment checks. */
    char prefix[PATH_MAX];
    size_t len = strlen(dir);
    memcpy(prefix, dir, len + 1);
    int pfd = openat(u->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return sk_err_sys(u->err, errno, "open layer root");
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && prefix[j] != '/')
            j++;
        char saved = prefix[j];
        prefix[j] = 0;
        int nfd = resolve_dir(u->root_fd, prefix);
        if (nfd == -ENOENT) {
            const char *comp = prefix + i;
            if (mkdirat(pfd, comp, 0755) < 0 && errno != EEXIST) {
                int e = errno;
                close(pfd);
                return sk_err_sys(u->err, e, "layer entry '%s': create parent directory", path);
            }
            nfd = resolve_dir(u->root_fd, prefix);
            if (nfd >= 0)
                (void) fchmod(nfd, 0755);
        }
        prefix[j] = saved;
        close(pfd);
        if (nfd < 0)
            return path_error(u, nfd, "parent directory", path);
        pfd = nfd;
        i = j + 1;
    }
    *ret = pfd;
    return 0;
}

/* ---- removal of a previous entry at the same name ---- */

static int remove_tree_at(int pfd, const char *name, int depth)
{
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(pfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    if (depth > 4096)
        return -ELOOP;
    int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        int q = remove_tree_at(dirfd(d), de->d_name, depth + 1);
        if (q < 0 && r == 0)
            r = q;
    }
    closedir(d);
    if (unlinkat(pfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
        r = -errno;
    return r;
}

/* Removes whatever is at name unless it is a directory and keep_dir is set.
 * Returns 1 when a directory was kept, 0 otherwise. */
static int replace_existing(int pfd, const char *name, bool keep_dir)
{
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(st.st_mode) && keep_dir)
        return 1;
    int r = remove_tree_at(pfd, name, 0);
    return r < 0 ? r : 0;
}

/* ---- metadata ---- */

static int entry_owner(unpacker *u, struct archive_entry *e, const char *path, uid_t *uid,
                       gid_t *gid)
{
    la_int64_t U = archive_entry_uid(e), G = archive_entry_gid(e);
    if (U < 0 || U >= UINT32_MAX || G < 0 || G >= UINT32_MAX)
        return sk_err_set(u->err, SK_E_INVALID, "layer entry '%s' has an invalid owner", path);
    *uid = (uid_t) U;
    *gid = (gid_t) G;
    return 0;
}

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
    if (archive_entry_mtime_is_set(e)) {
        ts[1].tv_sec = archive_entry_mtime(e);
        ts[1].tv_nsec = CLAMP(archive_entry_mtime_nsec(e), 0L, 999999999L);
    } else
        ts[1].tv_nsec = UTIME_OMIT;
    if (archive_entry_atime_is_set(e)) {
        ts[0].tv_sec = archive_entry_atime(e);
        ts[0].tv_nsec = CLAMP(archive_entry_atime_nsec(e), 0L, 999999999L);
    } else
        ts[0] = ts[1];
}

static bool xattr_allowed(const char *name)
{
    /* trusted.* (overlayfs metadata such as trusted.overlay.redirect) and
     * security.* other than file capabilities must never come from a layer. */
    return startswith(name, "user.") || streq(name, "security.capability");
}

/* chown, chmod, xattrs (in this order: chown clears set-id bits and file
 * capabilities), through an fd opened without following symlinks. */
static int apply_meta_fd(unpacker *u, int fd, struct archive_entry *e, const char *path)
{
    uid_t uid = 0;
    gid_t gid = 0;
    int r = entry_owner(u, e, path, &uid, &gid);
    if (r < 0)
        return r;
    if (fchown(fd, uid, gid) < 0 && (u->root || errno != EPERM))
        return sk_err_sys(u->err, errno, "layer entry '%s': chown", path);
    if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
        return sk_err_sys(u->err, errno, "layer entry '%s': chmod", path);
    const char *name;
    const void *value;
    size_t size;
    unsigned n = 0;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        if (!name || !xattr_allowed(name) || ++n > MAX_XATTRS)
            continue;
        /* Best effort: the file system may not support user xattrs. */
        (void) fsetxattr(fd, name, value, size, 0);
    }
    return 0;
}

static void defer_dir_times(unpacker *u, const char *path, struct archive_entry *e)
{
    size_t len = strlen(path) + 1;
    if (u->deferred_bytes + len + sizeof(deferred_dir) > DEFERRED_BYTES_MAX)
        return; /* best effort past the cap: those directories keep extraction times */
    if (u->ndeferred == u->adeferred) {
        u->adeferred = u->adeferred ? u->adeferred * 2 : 64;
        u->deferred = xrealloc(u->deferred, u->adeferred * sizeof(deferred_dir));
    }
    deferred_dir *d = &u->deferred[u->ndeferred++];
    d->path = xmemdup(path, len);
    entry_times(e, d->ts);
    u->deferred_bytes += len + sizeof(deferred_dir);
}

static void apply_deferred(unpacker *u)
{
    for (size_t i = u->ndeferred; i > 0; i--) {
        deferred_dir *d = &u->deferred[i - 1];
        int fd = resolve_dir(u->root_fd, d->path);
        if (fd < 0)
            continue; /* replaced by a later entry */
        (void) futimens(fd, d->ts);
        close(fd);
    }
}

/* ---- entry types ---- */

static int do_dir(unpacker *u, int pfd, const char *leaf, const char *path, struct archive_entry *e)
{
    int fd;
    if (!leaf) {
        fd = openat(u->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } else {
        int r = replace_existing(pfd, leaf, true);
        if (r < 0)
            return sk_err_sys(u->err, r, "layer entry '%s': replace", path);
        if (r == 0 && mkdirat(pfd, leaf, 0700) < 0)
            return sk_err_sys(u->err, errno, "layer entry '%s': mkdir", path);
        fd = openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0)
        return sk_err_sys(u->err, errno, "layer entry '%s': open directory", path);
    int r = apply_meta_fd(u, fd, e, path);
    close(fd);
    if (r < 0)
        return r;
    defer_dir_times(u, path, e);
    return 0;
}

static int write_data(unpacker *u, int fd, const char *path, uint64_t size)
{
    const void *buf;
    size_t n;
    la_int64_t off;
    uint64_t end = 0;
    for (;;) {
        int r = archive_read_data_block(u->tar, &buf, &n, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN && u->over_limit)
            return sk_err_set(u->err, SK_E_LIMIT, "layer is larger than %" PRIu64 " bytes",
                              img_unpack_max_bytes);
        if (r < ARCHIVE_WARN)
            return sk_err_set(u->err, SK_E_INVALID, "layer entry '%s': %s", path,
                              archive_error_string(u->tar) ? archive_error_string(u->tar)
                                                           : "read error");
        if (off < 0 || (uint64_t) off > size || n > size - (uint64_t) off)
            return sk_err_set(u->err, SK_E_INVALID, "layer entry '%s': data beyond its size", path);
        const char *p = buf;
        size_t left = n;
        uint64_t pos = (uint64_t) off;
        while (left) {
            ssize_t w = pwrite(fd, p, left, (off_t) pos);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return sk_err_sys(u->err, errno, "layer entry '%s': write", path);
            }
            p += w;
            pos += (uint64_t) w;
            left -= (size_t) w;
        }
        end = MAX(end, pos);
    }
    if (end < size && ftruncate(fd, (off_t) size) < 0)
        return sk_err_sys(u->err, errno, "layer entry '%s': truncate", path);
    return 0;
}

static int do_file(unpacker *u, int pfd, const char *leaf, const char *path,
                   struct archive_entry *e)
{
    la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (size < 0)
        return sk_err_set(u->err, SK_E_INVALID, "layer entry '%s' has a negative size", path);
    if ((uint64_t) size > img_unpack_max_bytes - u->data_bytes)
        return sk_err_set(u->err, SK_E_LIMIT, "layer is larger than %" PRIu64 " bytes",
                          img_unpack_max_bytes);
    u->data_bytes += (uint64_t) size;

    int r = replace_existing(pfd, leaf, false);
    if (r < 0)
        return sk_err_sys(u->err, r, "layer entry '%s': replace", path);
    _cleanup_close_ int fd = openat(
            pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0)
        return sk_err_sys(u->err, errno, "layer entry '%s': create", path);
    r = write_data(u, fd, path, (uint64_t) size);
    if (r < 0)
        return r;
    r = apply_meta_fd(u, fd, e, path);
    if (r < 0)
        return r;
    struct timespec ts[2];
    entry_times(e, ts);
    if (futimens(fd, ts) < 0)
        return sk_err_sys(u->err, errno, "layer entry '%s': set times", path);
    return 0;
}

static int do_symlink(unpacker *u, int pfd, const char *leaf, const char *path,
                      struct archive_entry *e)
{
    const char *target = archive_entry_symlink(e);
    if (!target || !*target || strlen(target) >= PATH_MAX)
        return sk_err_set(u->err, SK_E_INVALID, "layer entry '%s': invalid symlink target", path);
    int r = replace_existing(pfd, leaf, false);
    if (r < 0)
        return sk_err_sys(u->err, r, "layer entry '%s': replace", path);
    /* The target is data: it is resolved later inside the container's root. */
    if (symlinkat(target, pfd, leaf) < 0)
        return sk_err_sys(u->err, errno, "layer entry '%s': symlink", path);
    uid_t uid = 0;
    gid_t gid = 0;
    r = entry_owner(u, e, path, &uid, &gid);
    if (r < 0)
        return r;
    if (fchownat(pfd, leaf, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 && (u->root || errno != EPERM))
        return sk_err_sys(u->err, errno, "layer entry '%s': chown", path);
    struct timespec ts[2];
    entry_times(e, ts);
    (void) utimensat(pfd, leaf, ts, AT_SYMLINK_NOFOLLOW);
    return 0;
}

static int do_hardlink(unpacker *u, int pfd, const char *leaf, const char *path, const char *target)
{
    char tpath[PATH_MAX];
    int r = clean_path(target, tpath);
    if (r < 0 || !*tpath)
        return sk_err_set(u->err, SK_E_INVALID,
                          "refusing layer entry '%s': hardlink target '%s' is outside the layer",
                          path, target);
    char *tleaf = split_leaf(tpath);
    int tfd = resolve_dir(u->root_fd, tpath);
    if (tfd < 0) {
        if (tfd == -ENOENT)
            return sk_err_set(u->err, SK_E_INVALID,
                              "layer entry '%s': hardlink target '%s' does not exist", path,
                              target);
        return path_error(u, tfd, "hardlink target", path);
    }
    _cleanup_close_ int tdir = tfd;
    struct stat st;
    if (fstatat(tdir, tleaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return sk_err_set(u->err, SK_E_INVALID,
                          "layer entry '%s': hardlink target '%s' does not exist", path, target);
    if (S_ISDIR(st.st_mode))
        return sk_err_set(u->err, SK_E_INVALID,
                          "layer entry '%s': hardlink target '%s' is a directory", path, target);
    struct stat cur;
    if (fstatat(pfd, leaf, &cur, AT_SYMLINK_NOFOLLOW) == 0 && cur.st_dev == st.st_dev &&
        cur.st_ino == st.st_ino)
        return 0; /* already that file */
    r = replace_existing(pfd, leaf, false);
    if (r < 0)
        return sk_err_sys(u->err, r, "layer entry '%s': replace", path);
    /* flags 0: a symlink target is linked itself, never followed. */
    if (linkat(tdir, tleaf, pfd, leaf, 0) < 0)
        return sk_err_sys(u->err, errno, "layer entry '%s': link to '%s'", path, target);
    return 0;
}

static int do_whiteout(unpacker *u, int pfd, const char *leaf, const char *path)
{
    if (streq(leaf, WHITEOUT_OPAQUE)) {
        if (fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
            return sk_err_sys(u->err, errno, "layer entry '%s': mark directory opaque", path);
        return 0;
    }
    if (startswith(leaf, WHITEOUT_META))
        return 0; /* aufs bookkeeping (.wh..wh.plnk etc.): not part of the image */
    const char *name = leaf + strlen(WHITEOUT_PREFIX);
    if (!*name || streq(name, ".") || streq(name, ".."))
        return sk_err_set(u->err, SK_E_INVALID, "layer entry '%s': invalid whiteout", path);
    int r = replace_existing(pfd, name, false);
    if (r < 0)
        return sk_err_sys(u->err, r, "layer entry '%s': replace", path);
    if (mknodat(pfd, name, S_IFCHR | 0000, makedev(0, 0)) < 0)
        return sk_err_sys(u->err, errno, "layer entry '%s': create whiteout", path);
    return 0;
}

static int do_entry(unpacker *u, struct archive_entry *e)
{
    if (++u->entries > img_unpack_max_entries)
        return sk_err_set(u->err, SK_E_LIMIT, "layer has more than %" PRIu64 " entries",
                          img_unpack_max_entries);
    const char *raw = archive_entry_pathname(e);
    char path[PATH_MAX];
    int r = clean_path(raw, path);
    if (r == -EINVAL)
        return sk_err_set(u->err, SK_E_INVALID, "refusing layer entry '%s': %s", raw ? raw : "",
                          raw && *raw ? "absolute path" : "empty name");
    if (r == -EXDEV)
        return sk_err_set(u->err, SK_E_INVALID,
                          "refusing layer entry '%s': '..' leads outside the layer", raw);
    if (r < 0)
        return sk_err_set(u->err, SK_E_INVALID, "refusing layer entry: path too long");

    const char *hardlink = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    if (!*path) {
        if (type == AE_IFDIR && !hardlink)
            return do_dir(u, -EBADF, NULL, "", e);
        return sk_err_set(u->err, SK_E_INVALID, "refusing layer entry '%s': not a directory", raw);
    }

    char full[PATH_MAX];
    memcpy(full, path, strlen(path) + 1);
    char *leaf = split_leaf(path);
    const char *parent = path;

    if (!startswith(leaf, WHITEOUT_PREFIX) && !hardlink && type != AE_IFDIR && type != AE_IFREG &&
        type != AE_IFLNK)
        return sk_err_set(u->err, SK_E_INVALID,
                          "refusing layer entry '%s': device nodes, FIFOs and sockets are not "
                          "allowed",
                          full);

    _cleanup_close_ int pfd = -EBADF;
    r = open_parent(u, parent, full, &pfd);
    if (r < 0)
        return r;
    if (startswith(leaf, WHITEOUT_PREFIX))
        return do_whiteout(u, pfd, leaf, full);
    if (hardlink)
        return do_hardlink(u, pfd, leaf, full, hardlink);
    switch (type) {
    case AE_IFDIR:
        return do_dir(u, pfd, leaf, full, e);
    case AE_IFREG:
        return do_file(u, pfd, leaf, full, e);
    case AE_IFLNK:
        return do_symlink(u, pfd, leaf, full, e);
    default:
        return sk_err_set(u->err, SK_E_INTERNAL, "unreachable entry type");
    }
}

/* ---- stream plumbing ---- */

static la_ssize_t outer_read(struct archive *a, void *userdata, const void **buf)
{
    unpacker *u = userdata;
    for (;;) {
        ssize_t n = read(u->in_fd, u->inbuf, IO_BUF);
        if (n >= 0) {
            *buf = u->inbuf;
            return n;
        }
        if (errno != EINTR) {
            archive_set_error(a, errno, "read layer: %s", strerror(errno));
            return -1;
        }
    }
}

static la_ssize_t inner_read(struct archive *a, void *userdata, const void **buf)
{
    unpacker *u = userdata;
    la_ssize_t n = archive_read_data(u->outer, u->midbuf, IO_BUF);
    if (n < 0) {
        const char *msg = archive_error_string(u->outer);
        archive_set_error(a, EINVAL, "%s", msg ? msg : "decompression error");
        return -1;
    }
    if ((uint64_t) n > img_unpack_max_bytes - u->raw_bytes) {
        u->over_limit = true;
        archive_set_error(a, EINVAL, "layer is larger than %" PRIu64 " bytes",
                          img_unpack_max_bytes);
        return -1;
    }
    u->raw_bytes += (uint64_t) n;
    if (u->h)
        sk_sha256_update(u->h, u->midbuf, (size_t) n);
    *buf = u->midbuf;
    return n;
}

static void unpacker_done(unpacker *u)
{
    if (u->tar)
        archive_read_free(u->tar);
    if (u->outer)
        archive_read_free(u->outer);
    sk_sha256_free(u->h);
    free(u->inbuf);
    free(u->midbuf);
    for (size_t i = 0; i < u->ndeferred; i++)
        free(u->deferred[i].path);
    free(u->deferred);
    closep(&u->root_fd);
}

static int setup_readers(unpacker *u)
{
    u->outer = archive_read_new();
    u->tar = archive_read_new();
    if (!u->outer || !u->tar)
        oom();
    /* Only in-process decompressors: a filter that falls back to an external
     * program returns ARCHIVE_WARN and is refused. */
    if (archive_read_support_filter_gzip(u->outer) != ARCHIVE_OK ||
        archive_read_support_filter_zstd(u->outer) != ARCHIVE_OK ||
        archive_read_support_filter_xz(u->outer) != ARCHIVE_OK ||
        archive_read_support_format_raw(u->outer) != ARCHIVE_OK ||
        archive_read_support_format_tar(u->tar) != ARCHIVE_OK)
        return sk_err_set(u->err, SK_E_INTERNAL, "libarchive lacks gzip, zstd or xz support");
    if (archive_read_open(u->outer, u, NULL, outer_read, NULL) != ARCHIVE_OK)
        return sk_err_set(u->err, SK_E_INVALID, "layer: %s",
                          archive_error_string(u->outer) ? archive_error_string(u->outer)
                                                         : "unreadable stream");
    struct archive_entry *e;
    int r = archive_read_next_header(u->outer, &e);
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
        return sk_err_set(u->err, SK_E_INVALID, "layer: %s",
                          archive_error_string(u->outer) ? archive_error_string(u->outer)
                                                         : "empty stream");
    if (archive_read_open(u->tar, u, NULL, inner_read, NULL) != ARCHIVE_OK) {
        if (u->over_limit)
            return sk_err_set(u->err, SK_E_LIMIT, "layer is larger than %" PRIu64 " bytes",
                              img_unpack_max_bytes);
        return sk_err_set(u->err, SK_E_INVALID, "layer is not a tar archive: %s",
                          archive_error_string(u->tar) ? archive_error_string(u->tar) : "?");
    }
    return 0;
}

static int check_empty(int fd, const char *dest, sk_err *err)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sk_err_sys(err, errno, "open '%s'", dest);
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return sk_err_sys(err, errno, "open '%s'", dest);
    }
    struct dirent *de;
    bool empty = true;
    while ((de = readdir(d)))
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            empty = false;
    closedir(d);
    if (!empty)
        return sk_err_set(err, SK_E_INVALID, "layer destination '%s' is not empty", dest);
    return 0;
}

int img_unpack_layer_verify(int fd, const char *dest, const char *expected_diffid,
                            char ret_diffid[CAS_DIGEST_MAX], sk_err *err)
{
    if (expected_diffid && !cas_digest_valid(expected_diffid))
        return sk_err_set(err, SK_E_INVALID, "invalid diff_id '%s'", expected_diffid);
    _cleanup_(unpacker_done) unpacker u = {
        .in_fd = fd,
        .root_fd = -EBADF,
        .root = geteuid() == 0,
        .err = err,
    };
    u.root_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u.root_fd < 0)
        return sk_err_sys(err, errno, "open layer destination '%s'", dest);
    int r = check_empty(u.root_fd, dest, err);
    if (r < 0)
        return r;
    /* Without a diff_id to check or return, the stream is not hashed. */
    if (expected_diffid || ret_diffid)
        u.h = sk_sha256_new();
    u.inbuf = xmalloc(IO_BUF);
    u.midbuf = xmalloc(IO_BUF);
    r = setup_readers(&u);
    if (r < 0)
        return r;

    for (;;) {
        struct archive_entry *e;
        r = archive_read_next_header(u.tar, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            const char *msg = archive_error_string(u.tar);
            if (u.over_limit)
                return sk_err_set(err, SK_E_LIMIT, "layer is larger than %" PRIu64 " bytes",
                                  img_unpack_max_bytes);
            return sk_err_set(err, SK_E_INVALID, "layer: %s", msg ? msg : "malformed tar");
        }
        r = do_entry(&u, e);
        if (r < 0)
            return r;
    }
    /* Hash what follows the end-of-archive marker too: the diff_id covers the
     * whole uncompressed stream. */
    for (;;) {
        la_ssize_t n = archive_read_data(u.outer, u.midbuf, IO_BUF);
        if (n == 0)
            break;
        if (n < 0) {
            const char *msg = archive_error_string(u.outer);
            return sk_err_set(err, SK_E_INVALID, "layer: %s", msg ? msg : "decompression error");
        }
        if ((uint64_t) n > img_unpack_max_bytes - u.raw_bytes)
            return sk_err_set(err, SK_E_LIMIT, "layer is larger than %" PRIu64 " bytes",
                              img_unpack_max_bytes);
        u.raw_bytes += (uint64_t) n;
        if (u.h)
            sk_sha256_update(u.h, u.midbuf, (size_t) n);
    }
    apply_deferred(&u);
    if (!u.h)
        return 0;

    uint8_t d[SHA256_LEN];
    char digest[CAS_DIGEST_MAX];
    sk_sha256_final(u.h, d);
    memcpy(digest, "sha256:", 7);
    hex_encode(d, SHA256_LEN, digest + 7);
    if (expected_diffid && !streq(expected_diffid, digest))
        return sk_err_typed(err, SK_E_INVALID, "DIGEST_INVALID",
                            "layer content does not match its diff_id: expected '%s', got '%s'",
                            expected_diffid, digest);
    if (ret_diffid)
        memcpy(ret_diffid, digest, CAS_DIGEST_MAX);
    return 0;
}

int img_unpack_layer(int fd, const char *dest, sk_err *err)
{
    return img_unpack_layer_verify(fd, dest, NULL, NULL, err);
}
