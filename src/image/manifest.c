/* OCI / Docker schema 2 manifest, index and image-config parsing, and
 * platform selection from an index. Pure functions: no I/O. */
#include <stdio.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "cas.h"
#include "image-internal.h"
#include "shared/jsonutil.h"

static const char *const image_types[] = {
    IMG_MT_OCI_MANIFEST,
    IMG_MT_DOCKER_MANIFEST,
};
static const char *const index_types[] = {
    IMG_MT_OCI_INDEX,
    IMG_MT_DOCKER_LIST,
};
static const char *const layer_types[] = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
};
static const char *const config_types[] = {
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        if (streq(s, list[i]))
            return true;
    return false;
}

bool img_media_type_is_index(const char *mt)
{
    return in_list(mt, index_types, ELEMENTSOF(index_types));
}

bool img_media_type_is_manifest(const char *mt)
{
    return in_list(mt, image_types, ELEMENTSOF(image_types));
}

static void descriptor_done(img_descriptor *d)
{
    free(d->media_type);
    free(d->digest);
    free(d->os);
    free(d->arch);
    free(d->variant);
    *d = (img_descriptor){ 0 };
}

void img_manifest_free(img_manifest *m)
{
    if (!m)
        return;
    free(m->media_type);
    descriptor_done(&m->config);
    for (size_t i = 0; i < m->nlayers; i++)
        descriptor_done(&m->layers[i]);
    free(m->layers);
    for (size_t i = 0; i < m->nmanifests; i++)
        descriptor_done(&m->manifests[i]);
    free(m->manifests);
    free(m);
}

static int parse_descriptor(const json_t *o, const char *what, img_descriptor *d, sk_err *err)
{
    if (!json_is_object(o))
        return sk_err_set(err, SK_E_INVALID, "%s is not an object", what);
    const char *digest = js_str(o, "digest");
    const json_t *size = json_object_get(o, "size");
    const char *mt = js_str(o, "mediaType");
    if (!digest)
        return sk_err_set(err, SK_E_INVALID, "%s has no digest", what);
    if (!cas_digest_valid(digest))
        return sk_err_set(err, SK_E_INVALID, "%s has an invalid or unsupported digest", what);
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return sk_err_set(err, SK_E_INVALID, "%s has no valid size", what);
    d->digest = xstrdup(digest);
    d->size = (uint64_t) json_integer_value(size);
    d->media_type = mt ? xstrdup(mt) : NULL;
    return 0;
}

/* "type/subtype; charset=..." → "type/subtype" */
static char *bare_content_type(const char *ct)
{
    if (!ct)
        return NULL;
    size_t n = strcspn(ct, "; \t");
    return xstrndup(ct, n);
}

int img_manifest_parse(const char *data, size_t len, const char *content_type, img_manifest **ret,
                       sk_err *err)
{
    if (len > IMG_MANIFEST_MAX)
        return sk_err_set(err, SK_E_LIMIT, "manifest larger than %d bytes", IMG_MANIFEST_MAX);
    json_error_t jerr;
    _cleanup_json_ json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sk_err_set(err, SK_E_INVALID, "manifest is not valid JSON: %s", jerr.text);
    if (!json_is_object(root))
        return sk_err_set(err, SK_E_INVALID, "manifest is not a JSON object");
    json_int_t schema = js_int(root, "schemaVersion", -1);
    if (schema == 1)
        return sk_err_set(err, SK_E_INVALID, "unsupported manifest schema version 1");
    if (schema != 2)
        return sk_err_set(err, SK_E_INVALID, "manifest has no valid schemaVersion");

    _cleanup_free_ char *ct = bare_content_type(content_type);
    const char *mt = js_str(root, "mediaType");
    if (!mt && (img_media_type_is_index(ct) || img_media_type_is_manifest(ct)))
        mt = ct;
    bool is_index;
    if (mt)
        is_index = img_media_type_is_index(mt);
    else
        is_index = js_has(root, "manifests");
    if (mt && !is_index && !img_media_type_is_manifest(mt))
        return sk_err_set(err, SK_E_INVALID, "unsupported manifest media type '%s'", mt);

    img_manifest *m = xcalloc(1, sizeof(*m));
    m->media_type = xstrdup(mt ? mt : is_index ? IMG_MT_OCI_INDEX : IMG_MT_OCI_MANIFEST);
    int r = 0;
    if (is_index) {
        m->kind = IMG_MANIFEST_INDEX;
        const json_t *arr = js_arr(root, "manifests");
        if (!arr) {
            r = sk_err_set(err, SK_E_INVALID, "index has no manifests array");
            goto out;
        }
        if (json_array_size(arr) > IMG_INDEX_MAX_ENTRIES) {
            r = sk_err_set(err, SK_E_LIMIT, "index has more than %d entries",
                           IMG_INDEX_MAX_ENTRIES);
            goto out;
        }
        m->manifests = xcalloc(json_array_size(arr) + 1, sizeof(img_descriptor));
        for (size_t i = 0; i < json_array_size(arr); i++) {
            const json_t *e = json_array_get(arr, i);
            img_descriptor *d = &m->manifests[m->nmanifests];
            char what[48];
            snprintf(what, sizeof(what), "manifests[%zu]", i);
            r = parse_descriptor(e, what, d, err);
            if (r < 0) {
                descriptor_done(d);
                goto out;
            }
            m->nmanifests++;
            const json_t *p = js_obj(e, "platform");
            if (p) {
                const char *os = js_str(p, "os"), *arch = js_str(p, "architecture"),
                           *variant = js_str(p, "variant");
                d->os = os ? xstrdup(os) : NULL;
                d->arch = arch ? xstrdup(arch) : NULL;
                d->variant = variant ? xstrdup(variant) : NULL;
            }
        }
    } else {
        m->kind = IMG_MANIFEST_IMAGE;
        r = parse_descriptor(json_object_get(root, "config"), "config", &m->config, err);
        if (r < 0)
            goto out;
        if (m->config.media_type &&
            !in_list(m->config.media_type, config_types, ELEMENTSOF(config_types))) {
            r = sk_err_set(err, SK_E_INVALID,
                           "unsupported config media type '%s' (not a container image)",
                           m->config.media_type);
            goto out;
        }
        const json_t *arr = js_arr(root, "layers");
        if (!arr) {
            r = sk_err_set(err, SK_E_INVALID, "manifest has no layers array");
            goto out;
        }
        if (json_array_size(arr) > IMG_MAX_LAYERS) {
            r = sk_err_set(err, SK_E_LIMIT, "manifest has more than %d layers", IMG_MAX_LAYERS);
            goto out;
        }
        m->layers = xcalloc(json_array_size(arr) + 1, sizeof(img_descriptor));
        for (size_t i = 0; i < json_array_size(arr); i++) {
            img_descriptor *d = &m->layers[m->nlayers];
            char what[48];
            snprintf(what, sizeof(what), "layers[%zu]", i);
            r = parse_descriptor(json_array_get(arr, i), what, d, err);
            if (r < 0) {
                descriptor_done(d);
                goto out;
            }
            m->nlayers++;
            if (d->media_type && !in_list(d->media_type, layer_types, ELEMENTSOF(layer_types))) {
                r = sk_err_set(err, SK_E_INVALID, "unsupported layer media type '%s'",
                               d->media_type);
                goto out;
            }
        }
    }
out:
    if (r < 0) {
        img_manifest_free(m);
        return r;
    }
    *ret = m;
    return 0;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char) (*s - 'A' + 'a');
}

void img_platform_normalize(const char *os, const char *arch, const char *variant,
                            img_platform *ret)
{
    char a[64] = "", v[32] = "", o[32] = "";
    snprintf(o, sizeof(o), "%s", os ? os : "");
    snprintf(a, sizeof(a), "%s", arch ? arch : "");
    snprintf(v, sizeof(v), "%s", variant ? variant : "");
    lower(o);
    lower(a);
    lower(v);
    char *slash = strchr(a, '/');
    if (slash) {
        *slash = 0;
        if (!v[0])
            snprintf(v, sizeof(v), "%s", slash + 1);
    }
    if (streq(o, "macos"))
        snprintf(o, sizeof(o), "darwin");
    if (streq(a, "x86_64") || streq(a, "x86-64"))
        snprintf(a, sizeof(a), "amd64");
    else if (streq(a, "aarch64"))
        snprintf(a, sizeof(a), "arm64");
    else if (streq(a, "armhf")) {
        snprintf(a, sizeof(a), "arm");
        snprintf(v, sizeof(v), "v7");
    } else if (streq(a, "armel")) {
        snprintf(a, sizeof(a), "arm");
        snprintf(v, sizeof(v), "v6");
    } else if (streq(a, "i386") || streq(a, "i686"))
        snprintf(a, sizeof(a), "386");
    if (streq(a, "arm64") && (streq(v, "8") || streq(v, "v8")))
        v[0] = 0; /* v8 is arm64's only (default) variant */
    if (streq(a, "amd64") && streq(v, "v1"))
        v[0] = 0;
    memcpy(ret->os, o, sizeof(ret->os));
    memcpy(ret->arch, a, sizeof(ret->arch));
    memcpy(ret->variant, v, sizeof(ret->variant));
}

const img_descriptor *img_manifest_select(const img_manifest *idx, const char *os, const char *arch)
{
    img_platform want;
    const img_descriptor *best = NULL;
    int best_score = 0;

    if (idx->kind != IMG_MANIFEST_INDEX)
        return NULL;
    img_platform_normalize(os ? os : "linux", arch ? arch : "amd64", NULL, &want);
    bool want_variant = want.variant[0] != 0;
    for (size_t i = 0; i < idx->nmanifests; i++) {
        const img_descriptor *d = &idx->manifests[i];
        img_platform have;
        if (!d->os || !d->arch)
            continue;
        if (d->media_type && !img_media_type_is_manifest(d->media_type))
            continue;
        img_platform_normalize(d->os, d->arch, d->variant, &have);
        if (!streq(have.os, want.os) || !streq(have.arch, want.arch))
            continue;
        int score;
        if (streq(have.variant, want.variant))
            score = 3;
        else if (!want_variant && !have.variant[0])
            score = 2;
        else
            score = 1; /* a different variant: accepted loosely */
        if (score > best_score) {
            best = d;
            best_score = score;
        }
    }
    return best;
}

void img_config_done(img_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_diff_ids; i++)
        free(c->diff_ids[i]);
    free(c->diff_ids);
    json_decref(c->config);
    free(c->os);
    free(c->arch);
    *c = (img_config){ 0 };
}

int img_config_parse(const char *data, size_t len, img_config *ret, sk_err *err)
{
    json_error_t jerr;
    _cleanup_json_ json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sk_err_set(err, SK_E_INVALID, "image config is not valid JSON: %s", jerr.text);
    if (!json_is_object(root))
        return sk_err_set(err, SK_E_INVALID, "image config is not a JSON object");
    const json_t *rootfs = js_obj(root, "rootfs");
    const json_t *ids = rootfs ? js_arr(rootfs, "diff_ids") : NULL;
    if (!ids)
        return sk_err_set(err, SK_E_INVALID, "image config has no rootfs.diff_ids");
    const char *type = js_str(rootfs, "type");
    if (type && !streq(type, "layers"))
        return sk_err_set(err, SK_E_INVALID, "unsupported rootfs type '%s'", type);
    if (json_array_size(ids) > IMG_MAX_LAYERS)
        return sk_err_set(err, SK_E_LIMIT, "image config has more than %d layers", IMG_MAX_LAYERS);

    img_config c = { 0 };
    c.diff_ids = xcalloc(json_array_size(ids) + 1, sizeof(char *));
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const char *d = json_string_value(json_array_get(ids, i));
        if (!cas_digest_valid(d)) {
            img_config_done(&c);
            return sk_err_set(err, SK_E_INVALID, "image config rootfs.diff_ids[%zu] is invalid", i);
        }
        c.diff_ids[c.n_diff_ids++] = xstrdup(d);
    }
    json_t *cfg = json_object_get(root, "config");
    c.config = json_is_object(cfg) ? json_deep_copy(cfg) : json_object();
    if (!c.config)
        oom();
    const char *os = js_str(root, "os"), *arch = js_str(root, "architecture");
    c.os = os ? xstrdup(os) : NULL;
    c.arch = arch ? xstrdup(arch) : NULL;
    *ret = c;
    return 0;
}
