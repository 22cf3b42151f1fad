/* libFuzzer target for manifest / index / config parsing and platform
 * selection. The first byte picks the Content-Type hint. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/err.h"
#include "basic/strutil.h"
#include "image/cas.h"
#include "image/image-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const content_types[] = {
    NULL,
    IMG_MT_OCI_MANIFEST,
    IMG_MT_OCI_INDEX,
    IMG_MT_DOCKER_MANIFEST,
    IMG_MT_DOCKER_LIST "; charset=utf-8",
    "application/json",
};

static const char *const platforms[][2] = {
    { NULL, NULL },        { "linux", "amd64" },   { "linux", "arm64" },    { "linux", "arm/v7" },
    { "LINUX", "x86_64" }, { "windows", "amd64" }, { "linux", "arm64/v8" }, { "", "" },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 20)
        return 0;
    const char *ct = content_types[data[0] % ELEMENTSOF(content_types)];
    const char *json = (const char *) data + 1;
    size_t len = size - 1;

    _cleanup_err_ sk_err err = { 0 };
    img_manifest *m = NULL;
    if (img_manifest_parse(json, len, ct, &m, &err) >= 0) {
        if (m->kind == IMG_MANIFEST_INDEX) {
            for (size_t i = 0; i < ELEMENTSOF(platforms); i++) {
                const img_descriptor *d = img_manifest_select(m, platforms[i][0], platforms[i][1]);
                if (d && (d < m->manifests || d >= m->manifests + m->nmanifests ||
                          !cas_digest_valid(d->digest)))
                    abort();
            }
        } else {
            if (!cas_digest_valid(m->config.digest))
                abort();
            for (size_t i = 0; i < m->nlayers; i++)
                if (!cas_digest_valid(m->layers[i].digest))
                    abort();
            if (img_manifest_select(m, NULL, NULL))
                abort();
        }
        img_manifest_free(m);
    } else if (!err.msg)
        abort();

    img_config c = { 0 };
    sk_err_done(&err);
    if (img_config_parse(json, len, &c, &err) >= 0) {
        if (!json_is_object(c.config))
            abort();
        for (size_t i = 0; i < c.n_diff_ids; i++)
            if (!cas_digest_valid(c.diff_ids[i]))
                abort();
        img_config_done(&c);
    }
    return 0;
}
