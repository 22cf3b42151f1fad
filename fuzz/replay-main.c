/* Standalone driver for the libFuzzer targets: feeds every regular file of the
 * given directories (and any files named directly) to LLVMFuzzerTestOneInput,
 * in name order, so that `meson test --suite fuzz` replays the committed
 * corpora in ordinary and sanitizer builds without libFuzzer.
 *
 * Exit status: 0 when every input ran; 77 (meson: skipped) when no input was
 * found, e.g. a corpus directory that does not exist yet; 1 on I/O errors. A
 * crash, sanitizer report or abort() in the target ends the process. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "basic/fileutil.h"

#define REPLAY_MAX_INPUT (16u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a target, as with libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path, size_t *count)
{
    char *data = NULL;
    size_t len = 0;
    int r = read_full_file(path, REPLAY_MAX_INPUT, &data, &len);
    if (r < 0) {
        fprintf(stderr, "replay: cannot read '%s': %s\n", path, strerror(-r));
        return -1;
    }
    /* An exact-size heap copy, so that ASan catches reads past the end. */
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    memcpy(copy, data, len);
    free(data);
    if (getenv("REPLAY_VERBOSE"))
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(copy, len);
    free(copy);
    (*count)++;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) {
            fprintf(stderr, "replay: corpus '%s' does not exist\n", dir);
            return 0;
        }
        fprintf(stderr, "replay: cannot open '%s': %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, alloc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (n == alloc) {
            alloc = alloc ? alloc * 2 : 64;
            names = realloc(names, alloc * sizeof(char *));
            if (!names)
                abort();
        }
        names[n++] = path_join(dir, de->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(char *), cmp_names);
    int ret = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode) && run_file(names[i], count) < 0)
            ret = -1;
        free(names[i]);
    }
    free(names);
    return ret;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    size_t count = 0;
    int ret = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            if (run_dir(argv[i], &count) < 0)
                ret = 1;
        } else if (stat(argv[i], &st) == 0) {
            if (run_file(argv[i], &count) < 0)
                ret = 1;
        } else
            fprintf(stderr, "replay: '%s' does not exist\n", argv[i]);
    }
    printf("replayed %zu inputs\n", count);
    if (ret == 0 && count == 0)
        return 77;
    return ret;
}
