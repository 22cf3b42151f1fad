/* libFuzzer target for layer extraction: the input is fed as a (possibly
 * compressed) layer stream through a memfd into img_unpack_layer() in a fresh
 * directory P/dest, with the working directory set to P/cwd. Whatever the
 * input, nothing may appear in P besides dest/ and cwd/ (which stays empty),
 * and the pre-existing P/outside/keep must stay untouched. Odd-sized inputs
 * use the non-openat2 fallback walk. An input starting with 0xff is an entry
 * script (see write_script()). */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/fileutil.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "image/image-internal.h"
#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static la_ssize_t write_cb(struct archive *a, void *ud, const void *p, size_t n)
{
    return write_all(*(int *) ud, p, n) < 0 ? -1 : (la_ssize_t) n;
}

/* Script mode (first byte 0xff): the rest is a list of entries
 * [kind][name length][name][target length][target], written as a pax tar, so
 * that the fuzzer explores names, link targets and their combinations rather
 * than tar header encoding. */
static void write_script(int fd, const uint8_t *p, size_t n)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open(a, &fd, NULL, write_cb, NULL);
    size_t i = 0;
    while (i + 2 <= n) {
        uint8_t kind = p[i++] % 7;
        size_t nl = MIN((size_t) p[i++], n - i);
        char name[256], target[256];
        memcpy(name, p + i, nl);
        name[nl] = 0;
        i += nl;
        size_t tl = i < n ? MIN((size_t) p[i++], n - i) : 0;
        memcpy(target, p + i, tl);
        target[tl] = 0;
        i += tl;
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_set_perm(e, 0755);
        switch (kind) {
        case 0:
        case 6:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t) tl);
            break;
        case 1:
            archive_entry_set_filetype(e, AE_IFDIR);
            break;
        case 2:
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, target);
            break;
        case 3:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, target);
            break;
        case 4:
            archive_entry_set_filetype(e, AE_IFCHR);
            break;
        default:
            archive_entry_set_filetype(e, AE_IFIFO);
            break;
        }
        if (archive_write_header(a, e) == ARCHIVE_OK && (kind == 0 || kind == 6) && tl)
            archive_write_data(a, target, tl);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return (size_t) -1;
    struct dirent *de;
    while ((de = readdir(d)))
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static char base[64];

static void remove_base(void)
{
    (void) rm_rf(base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int orig_cwd = -1;
    if (!base[0]) {
        orig_cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (orig_cwd < 0)
            abort();
        /* tmpfs when available: the target is file-system bound. */
        struct stat shm;
        const char *tmp = stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(base, sizeof(base), "%s/skiff-fuzz-unpack-XXXXXX", tmp);
        if (!mkdtemp(base))
            abort();
        atexit(remove_base);
        img_unpack_max_bytes = 64ULL << 20;
        img_unpack_max_entries = 20000;
    }
    char p[128], dest[160], cwd[160], out[160], keep[180];
    snprintf(p, sizeof(p), "%s/p", base);
    snprintf(dest, sizeof(dest), "%s/dest", p);
    snprintf(cwd, sizeof(cwd), "%s/cwd", p);
    snprintf(out, sizeof(out), "%s/outside", p);
    snprintf(keep, sizeof(keep), "%s/outside/keep", p);
    (void) rm_rf(p);
    if (mkdir(p, 0755) < 0 || mkdir(dest, 0755) < 0 || mkdir(cwd, 0755) < 0 ||
        mkdir(out, 0755) < 0 || chdir(cwd) < 0)
        abort();
    int kfd = open(keep, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (kfd < 0 || write_all(kfd, "keep", 4) < 0 || fchmod(kfd, 0644) < 0)
        abort();
    close(kfd);

    int fd = memfd_create("layer", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size > 0 && data[0] == 0xff)
        write_script(fd, data + 1, size - 1);
    else if (write_all(fd, data, size) < 0)
        abort();
    if (lseek(fd, 0, SEEK_SET) != 0)
        abort();
    img_unpack_force_fallback = size & 1;
    _cleanup_err_ sk_err err = { 0 };
    int r = img_unpack_layer(fd, dest, &err);
    close(fd);
    img_unpack_force_fallback = false;
    if (r < 0 && !err.msg)
        abort();
    if (fchdir(orig_cwd) < 0)
        abort();

    _cleanup_free_ char *content = NULL;
    struct stat st;
    if (count_entries(p) != 3 || count_entries(cwd) != 0 || count_entries(out) != 1 ||
        read_full_file(keep, 16, &content, NULL) < 0 || !streq(content, "keep") ||
        lstat(keep, &st) < 0 || (st.st_mode & 07777) != 0644 || st.st_nlink != 1) {
        fprintf(stderr, "layer escaped its destination\n");
        abort();
    }
    (void) rm_rf(p);
    return 0;
}
