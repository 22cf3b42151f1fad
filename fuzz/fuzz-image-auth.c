/* libFuzzer target for the WWW-Authenticate parser (raw bytes, NULs
 * included). A successful parse yields a Bearer or Basic challenge whose
 * parameters are NUL-free strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/err.h"
#include "basic/strutil.h"
#include "image/image-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    _cleanup_err_ sk_err err = { 0 };
    img_auth_challenge ch = { 0 };
    if (img_auth_parse((const char *) data, size, &ch, &err) < 0) {
        if (!err.msg || ch.scheme)
            abort();
        return 0;
    }
    if (!ch.scheme || !(streq(ch.scheme, "bearer") || streq(ch.scheme, "basic")))
        abort();
    const char *fields[] = { ch.realm, ch.service, ch.scope, ch.error };
    for (size_t i = 0; i < 4; i++)
        if (fields[i] && strlen(fields[i]) > size)
            abort();
    img_auth_challenge_done(&ch);
    return 0;
}
