/* Pure parsers of the registry (see reg-parse.h). */
#include "reg-parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "shared/digest.h"
#include "shared/jsonutil.h"

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool component_valid(const char *s, size_t n)
{
    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    size_t i = 0;
    while (i < n) {
        if (is_lower_alnum(s[i])) {
            i++;
            continue;
        }
        /* a separator run: '.', '_', '__' or '-'+ */
        size_t j = i;
        if (s[i] == '.')
            j = i + 1;
        else if (s[i] == '_')
            j = (i + 1 < n && s[i + 1] == '_') ? i + 2 : i + 1;
        else if (s[i] == '-') {
            while (j < n && s[j] == '-')
                j++;
        } else
            return false;
        if (j >= n || !is_lower_alnum(s[j]))
            return false;
        i = j;
    }
    return true;
}

bool reg_repo_name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 2 || n > REG_NAME_MAX)
        return false;
    const char *p = s;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t) (slash - p) : strlen(p);
        if (!component_valid(p, l))
            return false;
        if (!slash)
            return true;
        p = slash + 1;
    }
}

bool reg_tag_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > REG_TAG_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || (i > 0 && (c == '.' || c == '-'));
        if (!ok)
            return false;
    }
    return true;
}

bool reg_digest_valid(const char *s)
{
    const char *hex = s ? startswith(s, "sha256:") : NULL;
    if (!hex || strlen(hex) != SHA256_HEX_LEN)
        return false;
    for (const char *p = hex; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

bool reg_digest_syntax(const char *s)
{
    /* algorithm ::= component (separator component)*, component [a-z0-9]+,
     * separator [+._-]; encoded ::= [a-zA-Z0-9=_-]+ */
    if (!s || strlen(s) > REG_REF_MAX)
        return false;
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || !colon[1])
        return false;
    for (const char *p = s; p < colon; p++)
        if (!is_lower_alnum(*p) && !((*p == '+' || *p == '.' || *p == '_' || *p == '-') && p > s &&
                                     p + 1 < colon && is_lower_alnum(p[1])))
            return false;
    for (const char *p = colon + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '=' || *p == '_' || *p == '-'))
            return false;
    return true;
}

/* --- routes --- */

static int set_ref(reg_route *r, const char *s, size_t n)
{
    if (n > REG_REF_MAX)
        return -E2BIG;
    memcpy(r->ref, s, n);
    r->ref[n] = 0;
    return 0;
}

int reg_route_parse(const char *raw, reg_route *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (!raw)
        return -ENOENT;
    size_t rawlen = strlen(raw);
    if (rawlen > 2048)
        return -E2BIG;
    _cleanup_free_ char *path = NULL;
    size_t plen = 0;
    if (uri_decode(raw, rawlen, false, &path, &plen) < 0)
        return -EINVAL;
    if (strlen(path) != plen)
        return -EINVAL; /* embedded NUL */
    const char *p = startswith(path, "/v2");
    if (!p)
        return -ENOENT;
    if (*p == 0 || streq(p, "/")) {
        ret->kind = REG_ROUTE_BASE;
        return 0;
    }
    if (*p != '/')
        return -ENOENT;
    p++;
    if (streq(p, "_catalog") || streq(p, "_catalog/")) {
        ret->kind = REG_ROUTE_CATALOG;
        return 0;
    }
    size_t n = strlen(p);
    bool trailing = n > 0 && p[n - 1] == '/';
    if (trailing)
        n--;
    /* Split off the last two or three components. */
    const char *end = p + n;
    const char *s1 = NULL; /* slash before the last component */
    for (const char *q = end; q > p;)
        if (*--q == '/') {
            s1 = q;
            break;
        }
    if (!s1)
        return -ENOENT;
    const char *last = s1 + 1;
    size_t lastlen = (size_t) (end - last);
    const char *s2 = NULL;
    for (const char *q = s1; q > p;)
        if (*--q == '/') {
            s2 = q;
            break;
        }
    const char *prev = s2 ? s2 + 1 : p;
    size_t prevlen = (size_t) (s1 - prev);
    const char *name_end = NULL;
#define IS(c, l, lit) ((l) == strlen(lit) && memcmp((c), (lit), (l)) == 0)
    if (IS(prev, prevlen, "tags") && IS(last, lastlen, "list") && !trailing) {
        ret->kind = REG_ROUTE_TAGS;
        name_end = s2;
    } else if (IS(prev, prevlen, "manifests") && !trailing) {
        ret->kind = REG_ROUTE_MANIFEST;
        name_end = s2;
    } else if (IS(prev, prevlen, "referrers") && !trailing) {
        ret->kind = REG_ROUTE_REFERRERS;
        name_end = s2;
    } else if (IS(prev, prevlen, "blobs") && IS(last, lastlen, "uploads")) {
        ret->kind = REG_ROUTE_UPLOAD_NEW;
        name_end = s2;
        lastlen = 0;
    } else if (IS(prev, prevlen, "blobs") && !trailing) {
        ret->kind = REG_ROUTE_BLOB;
        name_end = s2;
    } else if (IS(prev, prevlen, "uploads") && s2) {
        /* .../blobs/uploads/<id> */
        const char *s3 = NULL;
        for (const char *q = s2; q > p;)
            if (*--q == '/') {
                s3 = q;
                break;
            }
        const char *pp = s3 ? s3 + 1 : p;
        if (!IS(pp, (size_t) (s2 - pp), "blobs") || !s3)
            return -ENOENT;
        ret->kind = REG_ROUTE_UPLOAD;
        name_end = s3;
    } else
        return -ENOENT;
#undef IS
    if (!name_end || name_end <= p)
        return -ENOENT;
    if (lastlen == 0 && ret->kind != REG_ROUTE_UPLOAD_NEW && ret->kind != REG_ROUTE_TAGS)
        return -ENOENT;
    if (ret->kind != REG_ROUTE_TAGS && ret->kind != REG_ROUTE_UPLOAD_NEW) {
        if (memchr(last, 0, lastlen) || set_ref(ret, last, lastlen) < 0)
            return -E2BIG;
    }
    size_t nl = (size_t) (name_end - p);
    if (nl > REG_NAME_MAX)
        return -EINVAL;
    memcpy(ret->name, p, nl);
    ret->name[nl] = 0;
    if (!reg_repo_name_valid(ret->name))
        return -EINVAL;
    return 0;
}

/* --- ranges --- */

static int parse_u64_n(const char *s, size_t n, uint64_t *ret)
{
    if (n == 0 || n > 19)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t) (s[i] - '0');
    }
    *ret = v;
    return 0;
}

int reg_content_range_parse(const char *s, uint64_t *ret_start, uint64_t *ret_end)
{
    if (!s)
        return -EINVAL;
    while (*s == ' ')
        s++;
    const char *p = startswith(s, "bytes=");
    if (!p)
        p = startswith(s, "bytes ");
    if (!p)
        p = s;
    const char *dash = strchr(p, '-');
    if (!dash)
        return -EINVAL;
    const char *slash = strchr(dash, '/');
    size_t el = slash ? (size_t) (slash - dash - 1) : strlen(dash + 1);
    while (el > 0 && dash[el] == ' ')
        el--;
    uint64_t a, b;
    if (parse_u64_n(p, (size_t) (dash - p), &a) < 0 || parse_u64_n(dash + 1, el, &b) < 0)
        return -EINVAL;
    if (slash) {
        const char *t = slash + 1;
        uint64_t total;
        if (!streq(t, "*") && parse_u64_n(t, strlen(t), &total) < 0)
            return -EINVAL;
    }
    if (a > b)
        return -EINVAL;
    *ret_start = a;
    *ret_end = b;
    return 0;
}

int reg_range_parse(const char *s, uint64_t size, uint64_t *ret_off, uint64_t *ret_len)
{
    if (!s)
        return -EINVAL;
    while (*s == ' ')
        s++;
    const char *p = startswith(s, "bytes=");
    if (!p || strchr(p, ','))
        return -EINVAL;
    while (*p == ' ')
        p++;
    const char *dash = strchr(p, '-');
    if (!dash)
        return -EINVAL;
    const char *e = dash + 1;
    size_t el = strlen(e);
    while (el > 0 && e[el - 1] == ' ')
        el--;
    uint64_t a = 0, b = 0;
    if (dash == p) {
        /* suffix range: last n bytes */
        if (parse_u64_n(e, el, &b) < 0)
            return -EINVAL;
        if (b == 0 || size == 0)
            return -ERANGE;
        uint64_t n = b > size ? size : b;
        *ret_off = size - n;
        *ret_len = n;
        return 0;
    }
    if (parse_u64_n(p, (size_t) (dash - p), &a) < 0)
        return -EINVAL;
    if (el == 0)
        b = size ? size - 1 : 0;
    else if (parse_u64_n(e, el, &b) < 0)
        return -EINVAL;
    if (el > 0 && b < a)
        return -EINVAL;
    if (a >= size)
        return -ERANGE;
    if (b >= size)
        b = size - 1;
    *ret_off = a;
    *ret_len = b - a + 1;
    return 0;
}

/* --- manifests --- */

bool reg_media_type_is_index(const char *mt)
{
    return mt && (streq(mt, REG_MT_OCI_INDEX) || streq(mt, REG_MT_DOCKER_LIST));
}

bool reg_media_type_known(const char *mt)
{
    return mt && (streq(mt, REG_MT_OCI_MANIFEST) || streq(mt, REG_MT_OCI_INDEX) ||
                  streq(mt, REG_MT_DOCKER_MANIFEST) || streq(mt, REG_MT_DOCKER_LIST));
}

bool reg_accept_allows(const char *accept, const char *mt)
{
    if (strempty(accept))
        return true;
    size_t ml = strlen(mt);
    const char *p = accept;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t l = strcspn(p, ",;");
        size_t tl = l;
        while (tl > 0 && p[tl - 1] == ' ')
            tl--;
        if ((tl == ml && strncasecmp(p, mt, ml) == 0) || (tl == 3 && memcmp(p, "*/*", 3) == 0) ||
            (tl == 13 && strncasecmp(p, "application/*", 13) == 0))
            return true;
        p += strcspn(p, ",");
    }
    return false;
}

static int desc_parse(const json_t *o, const char *what, reg_desc *d, sk_err *err)
{
    memset(d, 0, sizeof(*d));
    if (!json_is_object(o))
        return sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "%s must be an object", what);
    json_t *mt = json_object_get(o, "mediaType");
    json_t *dg = json_object_get(o, "digest");
    json_t *sz = json_object_get(o, "size");
    if (mt && !json_is_string(mt))
        return sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "%s.mediaType must be a string",
                            what);
    if (!json_is_string(dg) || !reg_digest_syntax(json_string_value(dg)))
        return sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID",
                            "%s.digest is missing or invalid", what);
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "%s.size is missing or negative",
                            what);
    d->media_type = json_string_value(mt);
    d->digest = json_string_value(dg);
    d->size = json_integer_value(sz);
    d->artifact_type = js_str(o, "artifactType");
    json_t *urls = json_object_get(o, "urls");
    d->has_urls = json_is_array(urls) && json_array_size(urls) > 0;
    json_t *ann = json_object_get(o, "annotations");
    if (ann && !json_is_object(ann))
        return sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID",
                            "%s.annotations must be an object", what);
    d->annotations = ann;
    json_t *plat = json_object_get(o, "platform");
    if (json_is_object(plat)) {
        d->platform_os = js_str(plat, "os");
        d->platform_arch = js_str(plat, "architecture");
    }
    return 0;
}

void reg_manifest_done(reg_manifest *m)
{
    if (!m)
        return;
    free(m->descs);
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

int reg_manifest_parse(const char *data, size_t len, const char *content_type, reg_manifest *ret,
                       sk_err *err)
{
    reg_manifest m = { 0 };
    if (len > REG_MANIFEST_MAX)
        return sk_err_typed(err, SK_E_LIMIT, "MANIFEST_INVALID", "manifest is larger than %u bytes",
                            REG_MANIFEST_MAX);
    json_error_t jerr;
    m.root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!m.root || !json_is_object(m.root)) {
        json_decref(m.root);
        return sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "manifest is not a JSON object");
    }
    int r = -1;
    json_t *sv = json_object_get(m.root, "schemaVersion");
    const char *doc_mt = js_str(m.root, "mediaType");
    if (json_object_get(m.root, "mediaType") && !doc_mt) {
        sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "mediaType must be a string");
        goto fail;
    }
    char ct[128] = "";
    if (!strempty(content_type)) {
        /* strip parameters */
        size_t l = strcspn(content_type, "; ");
        if (l >= sizeof(ct))
            l = sizeof(ct) - 1;
        memcpy(ct, content_type, l);
        ct[l] = 0;
    }
    if (json_is_integer(sv) && json_integer_value(sv) == 1) {
        sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "schema 1 manifests are not supported");
        goto fail;
    }
    if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
        sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "schemaVersion must be 2");
        goto fail;
    }
    const char *mt = doc_mt;
    if (*ct && !streq(ct, "application/json") && !streq(ct, "application/octet-stream")) {
        if (doc_mt && !streq(doc_mt, ct)) {
            sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID",
                         "mediaType '%s' does not match the declared type '%s'", doc_mt, ct);
            goto fail;
        }
        mt = m.root ? ct : NULL;
    }
    json_t *layers = json_object_get(m.root, "layers");
    json_t *manifests = json_object_get(m.root, "manifests");
    if (!mt) {
        /* OCI allows omitting mediaType: infer from the structure. */
        if (json_is_array(manifests) && !json_object_get(m.root, "config"))
            mt = REG_MT_OCI_INDEX;
        else if (json_object_get(m.root, "config"))
            mt = REG_MT_OCI_MANIFEST;
        else {
            sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "manifest has no mediaType");
            goto fail;
        }
    }
    if (!reg_media_type_known(mt)) {
        sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "unsupported manifest media type '%s'",
                     mt);
        goto fail;
    }
    /* the stored media type must outlive content_type: point into static strings */
    if (streq(mt, REG_MT_OCI_MANIFEST))
        m.media_type = REG_MT_OCI_MANIFEST;
    else if (streq(mt, REG_MT_OCI_INDEX))
        m.media_type = REG_MT_OCI_INDEX;
    else if (streq(mt, REG_MT_DOCKER_MANIFEST))
        m.media_type = REG_MT_DOCKER_MANIFEST;
    else
        m.media_type = REG_MT_DOCKER_LIST;
    json_t *at = json_object_get(m.root, "artifactType");
    if (at && !json_is_string(at)) {
        sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "artifactType must be a string");
        goto fail;
    }
    json_t *ann = json_object_get(m.root, "annotations");
    if (ann && !json_is_object(ann)) {
        sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "annotations must be an object");
        goto fail;
    }
    m.annotations = ann;
    json_t *list;
    if (reg_media_type_is_index(m.media_type)) {
        m.kind = REG_MANIFEST_INDEX;
        if (!json_is_array(manifests)) {
            sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "manifests must be an array");
            goto fail;
        }
        list = manifests;
    } else {
        m.kind = REG_MANIFEST_IMAGE;
        if (desc_parse(json_object_get(m.root, "config"), "config", &m.config, err) < 0)
            goto fail;
        if (!json_is_array(layers)) {
            sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "layers must be an array");
            goto fail;
        }
        list = layers;
    }
    size_t n = json_array_size(list);
    if (n > 10000) {
        sk_err_typed(err, SK_E_LIMIT, "MANIFEST_INVALID", "too many descriptors (%zu)", n);
        goto fail;
    }
    m.descs = xcalloc(n ? n : 1, sizeof(reg_desc));
    m.ndescs = n;
    for (size_t i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof(what), "%s[%zu]",
                 m.kind == REG_MANIFEST_INDEX ? "manifests" : "layers", i);
        if (desc_parse(json_array_get(list, i), what, &m.descs[i], err) < 0)
            goto fail;
        if (m.kind == REG_MANIFEST_INDEX && m.descs[i].media_type &&
            !reg_media_type_known(m.descs[i].media_type) &&
            !startswith(m.descs[i].media_type, "application/")) {
            sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID", "%s.mediaType is invalid", what);
            goto fail;
        }
    }
    json_t *subj = json_object_get(m.root, "subject");
    if (subj && !json_is_null(subj)) {
        if (desc_parse(subj, "subject", &m.subject, err) < 0)
            goto fail;
        m.has_subject = true;
    }
    m.artifact_type = json_string_value(at);
    if (!m.artifact_type && m.kind == REG_MANIFEST_IMAGE)
        m.artifact_type = m.config.media_type;
    *ret = m;
    return 0;
fail:
    reg_manifest_done(&m);
    return r;
}

/* --- tokens --- */

static void token_mac(const uint8_t *key, size_t keylen, const char *msg, char out[65])
{
    uint8_t mac[SHA256_LEN];
    hmac_sha256(key, keylen, msg, strlen(msg), mac);
    hex_encode(mac, SHA256_LEN, out);
}

char *reg_token_make(const uint8_t *key, size_t keylen, const char *account, const char *region,
                     uint64_t expires)
{
    char nonce[17];
    random_hex(nonce, 16);
    _cleanup_free_ char *msg =
            xasprintf("1:%s:%s:%llu:%s", account, region, (unsigned long long) expires, nonce);
    char mac[65];
    token_mac(key, keylen, msg, mac);
    _cleanup_free_ char *full = xasprintf("%s:%s", msg, mac);
    return base64_encode(full, strlen(full));
}

int reg_token_verify(const uint8_t *key, size_t keylen, const char *password, uint64_t now,
                     reg_token_claims *ret)
{
    if (!password)
        return -EACCES;
    size_t pl = strlen(password);
    if (pl == 0 || pl > 512)
        return -EACCES;
    _cleanup_free_ uint8_t *raw = NULL;
    size_t rl;
    if (base64_decode(password, pl, &raw, &rl) < 0)
        return -EACCES;
    _cleanup_free_ char *s = xstrndup((const char *) raw, rl);
    if (strlen(s) != rl)
        return -EACCES;
    /* 1:ACCOUNT:REGION:EXPIRES:NONCE:MAC */
    char *f[6];
    char *p = s;
    for (int i = 0; i < 6; i++) {
        f[i] = p;
        char *c = strchr(p, ':');
        if (i < 5) {
            if (!c)
                return -EACCES;
            *c = 0;
            p = c + 1;
        } else if (c)
            return -EACCES;
    }
    if (!streq(f[0], "1") || strlen(f[1]) != REG_ACCOUNT_LEN || strlen(f[2]) == 0 ||
        strlen(f[2]) > REG_REGION_MAX || strlen(f[5]) != 64)
        return -EACCES;
    _cleanup_free_ char *msg = xasprintf("%s:%s:%s:%s:%s", f[0], f[1], f[2], f[3], f[4]);
    char mac[65];
    token_mac(key, keylen, msg, mac);
    if (!mem_equal_ct(mac, f[5], 64))
        return -EACCES;
    uint64_t exp;
    if (parse_u64(f[3], &exp) < 0)
        return -EACCES;
    if (exp <= now)
        return -ETIMEDOUT;
    if (ret) {
        strlcpy_s(ret->account, f[1], sizeof(ret->account));
        strlcpy_s(ret->region, f[2], sizeof(ret->region));
        ret->expires = exp;
    }
    return 0;
}

int reg_basic_auth_parse(const char *header, char **ret_user, char **ret_pass)
{
    if (!header)
        return -EINVAL;
    while (*header == ' ')
        header++;
    if (strncasecmp(header, "Basic ", 6) != 0)
        return -EINVAL;
    const char *b = header + 6;
    while (*b == ' ')
        b++;
    size_t bl = strlen(b);
    while (bl > 0 && b[bl - 1] == ' ')
        bl--;
    if (bl == 0 || bl > 2048)
        return -EINVAL;
    _cleanup_free_ uint8_t *raw = NULL;
    size_t rl;
    if (base64_decode(b, bl, &raw, &rl) < 0)
        return -EINVAL;
    const char *colon = memchr(raw, ':', rl);
    if (!colon || memchr(raw, 0, rl))
        return -EINVAL;
    *ret_user = xstrndup((const char *) raw, (size_t) (colon - (const char *) raw));
    *ret_pass = xstrndup(colon + 1, rl - (size_t) (colon - (const char *) raw) - 1);
    return 0;
}

void reg_url_sign(const uint8_t *key, size_t keylen, const char *account, const char *region,
                  const char *repo, const char *digest, uint64_t expires, char out[65])
{
    _cleanup_free_ char *msg = xasprintf("dl:%s:%s:%s:%s:%llu", account, region, repo, digest,
                                         (unsigned long long) expires);
    token_mac(key, keylen, msg, out);
}

int reg_host_parse(const char *host, char account[REG_ACCOUNT_LEN + 1],
                   char region[REG_REGION_MAX + 1])
{
    if (!host)
        return -EINVAL;
    size_t hl = strcspn(host, ":");
    const char *suffix = ".amazonaws.com";
    size_t sl = strlen(suffix);
    if (hl < REG_ACCOUNT_LEN + 9 + sl || strncasecmp(host + hl - sl, suffix, sl) != 0)
        return -EINVAL;
    for (size_t i = 0; i < REG_ACCOUNT_LEN; i++)
        if (host[i] < '0' || host[i] > '9')
            return -EINVAL;
    if (strncasecmp(host + REG_ACCOUNT_LEN, ".dkr.ecr.", 9) != 0)
        return -EINVAL;
    const char *rb = host + REG_ACCOUNT_LEN + 9;
    size_t rl = (size_t) (host + hl - sl - rb);
    if (rl == 0 || rl > REG_REGION_MAX)
        return -EINVAL;
    for (size_t i = 0; i < rl; i++)
        if (!(is_lower_alnum(rb[i]) || rb[i] == '-'))
            return -EINVAL;
    memcpy(account, host, REG_ACCOUNT_LEN);
    account[REG_ACCOUNT_LEN] = 0;
    memcpy(region, rb, rl);
    region[rl] = 0;
    return 0;
}

/* --- lifecycle --- */

bool reg_wildcard_match(const char *pat, const char *s)
{
    const char *star = NULL, *ss = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            ss = s;
        } else if (*pat == *s) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++ss;
        } else
            return false;
    }
    while (*pat == '*')
        pat++;
    return *pat == 0;
}

void reg_lc_done(reg_lc_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nrules; i++) {
        for (size_t j = 0; j < p->rules[i].nprefixes; j++)
            free(p->rules[i].prefixes[j]);
        for (size_t j = 0; j < p->rules[i].npatterns; j++)
            free(p->rules[i].patterns[j]);
    }
    p->nrules = 0;
}

static int lc_invalid(sk_err *err, const char *detail)
{
    return sk_err_typed(err, SK_E_INVALID, "InvalidParameterException",
                        "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
                        "'%s'",
                        detail);
}

static int cmp_rule(const void *a, const void *b)
{
    const reg_lc_rule *x = a, *y = b;
    return x->priority < y->priority ? -1 : x->priority > y->priority;
}

static int string_list(json_t *arr, char **out, size_t *n, const char *what, sk_err *err)
{
    if (!arr)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > REG_LC_MAX_PREFIX) {
        char m[96];
        snprintf(m, sizeof(m), "%s must be a non-empty list of at most %d strings", what,
                 REG_LC_MAX_PREFIX);
        return lc_invalid(err, m);
    }
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > 255) {
            char m[96];
            snprintf(m, sizeof(m), "%s entries must be non-empty strings", what);
            return lc_invalid(err, m);
        }
        out[(*n)++] = xstrdup(json_string_value(e));
    }
    return 0;
}

int reg_lc_parse(const char *text, reg_lc_policy *ret, sk_err *err)
{
    memset(ret, 0, sizeof(*ret));
    if (!text)
        return lc_invalid(err, "Lifecycle policy is empty");
    json_error_t jerr;
    _cleanup_json_ json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root))
        return lc_invalid(err, "Lifecycle policy validation failure: invalid JSON");
    json_t *rules = json_object_get(root, "rules");
    if (!json_is_array(rules) || json_array_size(rules) == 0)
        return lc_invalid(err,
                          "Lifecycle policy validation failure: rules must be a non-empty list");
    if (json_array_size(rules) > REG_LC_MAX_RULES)
        return lc_invalid(err, "Lifecycle policy validation failure: too many rules");
    size_t i;
    json_t *jr;
    json_array_foreach(rules, i, jr) {
        reg_lc_rule *r = &ret->rules[ret->nrules++];
        if (!json_is_object(jr))
            goto bad_rule;
        json_t *prio = json_object_get(jr, "rulePriority");
        if (!json_is_integer(prio) || json_integer_value(prio) < 1 ||
            json_integer_value(prio) > 999) {
            reg_lc_done(ret);
            return lc_invalid(err, "Lifecycle policy validation failure: rulePriority must be an "
                                   "integer between 1 and 999");
        }
        r->priority = json_integer_value(prio);
        json_t *sel = json_object_get(jr, "selection");
        json_t *act = json_object_get(jr, "action");
        if (!json_is_object(sel) || !json_is_object(act))
            goto bad_rule;
        const char *atype = js_str(act, "type");
        if (!atype || strcasecmp(atype, "expire") != 0) {
            reg_lc_done(ret);
            return lc_invalid(err, "Lifecycle policy validation failure: action.type must be "
                                   "'expire'");
        }
        const char *ts = js_str(sel, "tagStatus");
        if (!ts)
            goto bad_rule;
        if (strcasecmp(ts, "tagged") == 0)
            r->tag_status = REG_LC_TAGGED;
        else if (strcasecmp(ts, "untagged") == 0)
            r->tag_status = REG_LC_UNTAGGED;
        else if (strcasecmp(ts, "any") == 0)
            r->tag_status = REG_LC_ANY;
        else
            goto bad_rule;
        if (string_list(json_object_get(sel, "tagPrefixList"), r->prefixes, &r->nprefixes,
                        "tagPrefixList", err) < 0 ||
            string_list(json_object_get(sel, "tagPatternList"), r->patterns, &r->npatterns,
                        "tagPatternList", err) < 0) {
            reg_lc_done(ret);
            return -1;
        }
        if (r->tag_status == REG_LC_TAGGED && r->nprefixes == 0 && r->npatterns == 0) {
            reg_lc_done(ret);
            return lc_invalid(err, "Lifecycle policy validation failure: tagPrefixList or "
                                   "tagPatternList is required when tagStatus is tagged");
        }
        if (r->tag_status != REG_LC_TAGGED && (r->nprefixes || r->npatterns)) {
            reg_lc_done(ret);
            return lc_invalid(err, "Lifecycle policy validation failure: tagPrefixList and "
                                   "tagPatternList can only be used with tagStatus tagged");
        }
        if (r->nprefixes && r->npatterns) {
            reg_lc_done(ret);
            return lc_invalid(err, "Lifecycle policy validation failure: tagPrefixList and "
                                   "tagPatternList cannot both be set");
        }
        const char *ct = js_str(sel, "countType");
        json_t *cn = json_object_get(sel, "countNumber");
        const char *cu = js_str(sel, "countUnit");
        if (!ct || !json_is_integer(cn) || json_integer_value(cn) < 1)
            goto bad_rule;
        r->count_number = json_integer_value(cn);
        if (streq(ct, "imageCountMoreThan")) {
            r->count_type = REG_LC_COUNT_MORE_THAN;
            if (cu) {
                reg_lc_done(ret);
                return lc_invalid(err, "Lifecycle policy validation failure: countUnit cannot "
                                       "be used with imageCountMoreThan");
            }
        } else if (streq(ct, "sinceImagePushed")) {
            r->count_type = REG_LC_SINCE_PUSHED;
            if (!cu || !streq(cu, "days")) {
                reg_lc_done(ret);
                return lc_invalid(err, "Lifecycle policy validation failure: countUnit must be "
                                       "'days' with sinceImagePushed");
            }
        } else
            goto bad_rule;
        continue;
bad_rule:
        reg_lc_done(ret);
        return lc_invalid(err, "Lifecycle policy validation failure: each rule needs "
                               "rulePriority, selection{tagStatus,countType,countNumber} and "
                               "action{type}");
    }
    qsort(ret->rules, ret->nrules, sizeof(reg_lc_rule), cmp_rule);
    for (size_t k = 0; k < ret->nrules; k++) {
        if (k > 0 && ret->rules[k].priority == ret->rules[k - 1].priority) {
            reg_lc_done(ret);
            return lc_invalid(err, "Lifecycle policy validation failure: rulePriority values "
                                   "must be unique");
        }
        if (ret->rules[k].tag_status == REG_LC_ANY && k + 1 != ret->nrules) {
            reg_lc_done(ret);
            return lc_invalid(err, "Lifecycle policy validation failure: a rule with tagStatus "
                                   "any must have the highest rulePriority");
        }
    }
    return 0;
}

static bool rule_selects(const reg_lc_rule *r, const reg_lc_image *img)
{
    switch (r->tag_status) {
    case REG_LC_ANY:
        return true;
    case REG_LC_UNTAGGED:
        return img->ntags == 0;
    case REG_LC_TAGGED:
        if (img->ntags == 0)
            return false;
        /* Every listed prefix (pattern) must match at least one tag. */
        for (size_t i = 0; i < r->nprefixes; i++) {
            bool any = false;
            for (size_t t = 0; t < img->ntags && !any; t++)
                any = startswith(img->tags[t], r->prefixes[i]) != NULL;
            if (!any)
                return false;
        }
        for (size_t i = 0; i < r->npatterns; i++) {
            bool any = false;
            for (size_t t = 0; t < img->ntags && !any; t++)
                any = reg_wildcard_match(r->patterns[i], img->tags[t]);
            if (!any)
                return false;
        }
        return true;
    }
    return false;
}

typedef struct lc_sort {
    size_t idx;
    uint64_t pushed;
    const char *digest;
} lc_sort;

static int cmp_newest(const void *a, const void *b)
{
    const lc_sort *x = a, *y = b;
    if (x->pushed != y->pushed)
        return x->pushed > y->pushed ? -1 : 1;
    return strcmp(x->digest ? x->digest : "", y->digest ? y->digest : "");
}

void reg_lc_eval(const reg_lc_policy *p, reg_lc_image *imgs, size_t n, uint64_t now_usec)
{
    _cleanup_free_ bool *claimed = xcalloc(n ? n : 1, sizeof(bool));
    _cleanup_free_ lc_sort *sel = xcalloc(n ? n : 1, sizeof(lc_sort));
    for (size_t i = 0; i < n; i++)
        imgs[i].expired_by = 0;
    for (size_t k = 0; k < p->nrules; k++) {
        const reg_lc_rule *r = &p->rules[k];
        size_t ns = 0;
        for (size_t i = 0; i < n; i++)
            if (rule_selects(r, &imgs[i]))
                sel[ns++] = (lc_sort){ i, imgs[i].pushed_at, imgs[i].digest };
        qsort(sel, ns, sizeof(lc_sort), cmp_newest);
        for (size_t j = 0; j < ns; j++) {
            size_t i = sel[j].idx;
            bool expire;
            if (r->count_type == REG_LC_COUNT_MORE_THAN)
                expire = (int64_t) j >= r->count_number;
            else {
                uint64_t age = (uint64_t) r->count_number * 86400ULL * 1000000ULL;
                expire = now_usec > imgs[i].pushed_at && now_usec - imgs[i].pushed_at > age;
            }
            if (expire && !claimed[i] && imgs[i].expired_by == 0)
                imgs[i].expired_by = r->priority;
        }
        for (size_t j = 0; j < ns; j++)
            claimed[sel[j].idx] = true;
    }
}
