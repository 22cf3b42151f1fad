/* libFuzzer target for the Content-Range (PATCH) and Range (GET) parsers and
 * the lifecycle policy parser: results must stay within bounds. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "registry/reg-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    _cleanup_free_ char *s = xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    uint64_t a, b;
    if (reg_content_range_parse(s, &a, &b) == 0 && a > b)
        abort();
    static const uint64_t sizes[] = { 0, 1, 100, 1u << 20, UINT64_MAX / 2 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t off, len;
        int k = reg_range_parse(s, sizes[i], &off, &len);
        if (k == 0 && (len == 0 || off >= sizes[i] || len > sizes[i] - off))
            abort();
        if (k < 0 && k != -EINVAL && k != -ERANGE)
            abort();
    }
    reg_lc_policy p;
    sk_err err = { 0 };
    if (reg_lc_parse(s, &p, &err) == 0) {
        reg_lc_image img = { .digest = "d", .tags = NULL, .ntags = 0, .pushed_at = 0 };
        reg_lc_eval(&p, &img, 1, 1);
        reg_lc_done(&p);
    } else
        sk_err_done(&err);
    return 0;
}
