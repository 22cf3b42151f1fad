/* libFuzzer target for image reference parsing. A parsed reference must be
 * well formed and survive a round trip through img_ref_string(). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/strutil.h"
#include "image/cas.h"
#include "image/image-internal.h"
#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4 * IMG_REF_MAX)
        return 0;
    _cleanup_free_ char *s = xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;

    _cleanup_err_ sk_err err = { 0 };
    img_ref r = { 0 };
    if (img_ref_parse(s, &r, &err) < 0) {
        if (err.code != SK_E_INVALID || !err.msg || r.registry)
            abort();
        return 0;
    }
    if (!r.registry || !img_domain_valid(r.registry, strlen(r.registry)) || strempty(r.repository))
        abort();
    if (!r.tag && !r.digest)
        abort();
    if (r.digest && !cas_digest_valid(r.digest))
        abort();
    if (strchr(r.repository, ':') || strchr(r.repository, '@') || r.repository[0] == '/')
        abort();

    _cleanup_free_ char *canon = img_ref_string(&r);
    img_ref again = { 0 };
    if (img_ref_parse(canon, &again, &err) < 0)
        abort();
    if (!streq(again.registry, r.registry) || !streq(again.repository, r.repository) ||
        !streq_ptr(again.tag, r.tag) || !streq_ptr(again.digest, r.digest))
        abort();
    img_ref_done(&again);
    img_ref_done(&r);
    return 0;
}
