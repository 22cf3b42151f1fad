/* libFuzzer target for the registry's manifest parser: any input must either
 * parse into a consistent structure or fail with MANIFEST_INVALID. The first
 * byte selects the declared media type. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/err.h"
#include "basic/strutil.h"
#include "registry/reg-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = { NULL,
                                         REG_MT_OCI_MANIFEST,
                                         REG_MT_OCI_INDEX,
                                         REG_MT_DOCKER_MANIFEST,
                                         REG_MT_DOCKER_LIST,
                                         "application/json" };
    if (size == 0 || size > (1u << 20))
        return 0;
    const char *ct = types[data[0] % 6];
    reg_manifest m;
    sk_err err = { 0 };
    if (reg_manifest_parse((const char *) data + 1, size - 1, ct, &m, &err) < 0) {
        if (!err.type || !streq(err.type, "MANIFEST_INVALID") || !err.msg)
            abort();
        sk_err_done(&err);
        return 0;
    }
    if (!reg_media_type_known(m.media_type))
        abort();
    for (size_t i = 0; i < m.ndescs; i++)
        if (!m.descs[i].digest || m.descs[i].size < 0 || !reg_digest_syntax(m.descs[i].digest))
            abort();
    if (m.kind == REG_MANIFEST_IMAGE && !m.config.digest)
        abort();
    (void) reg_accept_allows((const char *) data + 1 < (const char *) data + size ? "*/*" : "",
                             m.media_type);
    reg_manifest_done(&m);
    return 0;
}
