/* Unit tests of the registry's store-backed core (src/registry/reg-meta.c,
 * registry.c) on a real SQLite store and CAS in a temporary directory:
 * manifest validation against blob links, tags and immutability, deletes,
 * the garbage collector's grace period, lifecycle expiry and the token key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "registry/reg-internal.h"
#include "shared/digest.h"
#include "tap.h"

typedef struct fixture {
    char dir[64];
    ev_loop *loop;
    store *st;
    reg_registry *r;
    reg_ns ns;
} fixture;

static int fx_open(fixture *f)
{
    memset(f, 0, sizeof(*f));
    strcpy(f->dir, "/tmp/test-registry-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    _cleanup_free_ char *db = xasprintf("sqlite:%s/state.db", f->dir);
    _cleanup_free_ char *casdir = xasprintf("%s/registry", f->dir);
    sk_err err = { 0 };
    f->loop = ev_loop_new();
    if (store_open(db, &f->st, &err) < 0)
        goto fail;
    reg_config cfg = { .data_dir = casdir,
                       .host = "127.0.0.1:1",
                       .account_id = "123456789012",
                       .region = "eu-west-1" };
    if (reg_new(f->loop, f->st, &cfg, &f->r, &err) < 0)
        goto fail;
    strcpy(f->ns.account, "123456789012");
    strcpy(f->ns.region, "eu-west-1");
    return 0;
fail:
    printf("# fixture: %s\n", sk_err_msg(&err));
    sk_err_done(&err);
    return -1;
}

static void fx_close(fixture *f)
{
    reg_free(f->r);
    store_close(f->st);
    ev_loop_free(f->loop);
    rm_rf(f->dir);
}

static int put_repo(fixture *f, const char *name, const char *mutability)
{
    _cleanup_free_ char *k = reg_key(&f->ns, "repo", "%s", name);
    _cleanup_json_ json_t *v =
            json_pack("{s:s, s:s}", "repositoryName", name, "imageTagMutability", mutability);
    sk_err err = { 0 };
    int r = store_put_json(f->st, k, v, &err);
    sk_err_done(&err);
    return r;
}

/* Stores data in the CAS and links it into repo; digest into out. */
static int push_blob(fixture *f, const char *repo, const char *data, char out[CAS_DIGEST_MAX])
{
    sk_err err = { 0 };
    int r = cas_put(f->r->cas, data, strlen(data), NULL, out, &err);
    if (r >= 0)
        r = reg_blob_link(f->r, &f->ns, repo, out, strlen(data), &err);
    sk_err_done(&err);
    return r;
}

static char *image_manifest(const char *cfg, size_t cfg_len, const char *layer, size_t layer_len)
{
    return xasprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
                     "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
                     "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
                     "\"digest\":\"%s\",\"size\":%zu}]}",
                     REG_MT_OCI_MANIFEST, cfg, cfg_len, layer, layer_len);
}

static int put_image(fixture *f, const char *repo, const char *m, const char *tag,
                     reg_put_result *res, sk_err *err)
{
    _cleanup_json_ json_t *doc = reg_repo_get(f->r, &f->ns, repo);
    return reg_image_put(f->r, &f->ns, doc, repo, m, strlen(m), NULL, tag, NULL, res, err);
}

TEST(manifest_links_tags_immutability)
{
    fixture f;
    if (fx_open(&f) < 0)
        TAP_FAIL("fixture");
    ASSERT_OK(put_repo(&f, "app", "MUTABLE"));
    char cfg[CAS_DIGEST_MAX], layer[CAS_DIGEST_MAX], cfg2[CAS_DIGEST_MAX];
    ASSERT_OK(push_blob(&f, "app", "{\"a\":1}", cfg));
    _cleanup_free_ char *missing =
            image_manifest(cfg, 7,
                           "sha256:"
                           "0000000000000000000000000000000000000000000000000000000000000000",
                           3);
    reg_put_result res;
    sk_err err = { 0 };
    ASSERT_FAIL(put_image(&f, "app", missing, "v1", &res, &err));
    ASSERT_STREQ(err.type, "MANIFEST_BLOB_UNKNOWN");
    sk_err_done(&err);
    ASSERT_OK(push_blob(&f, "app", "layer-bytes", layer));
    _cleanup_free_ char *m1 = image_manifest(cfg, 7, layer, 11);
    /* wrong size → MANIFEST_INVALID */
    _cleanup_free_ char *badsize = image_manifest(cfg, 8, layer, 11);
    ASSERT_FAIL(put_image(&f, "app", badsize, "v1", &res, &err));
    ASSERT_STREQ(err.type, "MANIFEST_INVALID");
    sk_err_done(&err);
    ASSERT_OK_ERR(put_image(&f, "app", m1, "v1", &res, &err), &err);
    ASSERT_FALSE(res.image_existed);
    char want[CAS_DIGEST_MAX];
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(m1, strlen(m1), hex);
    snprintf(want, sizeof(want), "sha256:%s", hex);
    ASSERT_STREQ(res.digest, want);
    _cleanup_free_ char *d = reg_tag_resolve(f.r, &f.ns, "app", "v1");
    ASSERT_STREQ(d, want);
    /* a blob linked in another repository is not visible here */
    ASSERT_OK(put_repo(&f, "other", "MUTABLE"));
    ASSERT_FAIL(put_image(&f, "other", m1, "v1", &res, &err));
    ASSERT_STREQ(err.type, "MANIFEST_BLOB_UNKNOWN");
    sk_err_done(&err);
    /* retag v1 to a second image: the first becomes untagged */
    ASSERT_OK(push_blob(&f, "app", "{\"a\":2}", cfg2));
    _cleanup_free_ char *m2 = image_manifest(cfg2, 7, layer, 11);
    ASSERT_OK_ERR(put_image(&f, "app", m2, "v1", &res, &err), &err);
    _cleanup_json_ json_t *old = reg_image_get(f.r, &f.ns, "app", want);
    ASSERT_EQ(json_array_size(js_arr(old, "tags")), 0);
    /* immutable: moving v1 back is refused, re-pushing the same is not */
    ASSERT_OK(put_repo(&f, "app", "IMMUTABLE"));
    ASSERT_FAIL(put_image(&f, "app", m1, "v1", &res, &err));
    ASSERT_STREQ(err.type, "TAG_IMMUTABLE");
    sk_err_done(&err);
    ASSERT_OK_ERR(put_image(&f, "app", m2, "v1", &res, &err), &err);
    ASSERT_TRUE(res.tag_unchanged);
    /* delete: image and tag go */
    ASSERT_OK_ERR(reg_image_delete(f.r, &f.ns, "app", res.digest, &err), &err);
    _cleanup_free_ char *gone = reg_tag_resolve(f.r, &f.ns, "app", "v1");
    ASSERT_NULL(gone);
    ASSERT_FAIL(reg_image_delete(f.r, &f.ns, "app", res.digest, &err));
    ASSERT_STREQ(err.type, "MANIFEST_UNKNOWN");
    sk_err_done(&err);
    ASSERT_OK_ERR(reg_repo_delete_all(f.r, &f.ns, "app", &err), &err);
    ASSERT_FALSE(reg_repo_has_images(f.r, &f.ns, "app"));
    fx_close(&f);
}

TEST(gc_grace_and_references)
{
    fixture f;
    if (fx_open(&f) < 0)
        TAP_FAIL("fixture");
    ASSERT_OK(put_repo(&f, "gc", "MUTABLE"));
    char cfg[CAS_DIGEST_MAX], layer[CAS_DIGEST_MAX], orphan[CAS_DIGEST_MAX];
    ASSERT_OK(push_blob(&f, "gc", "{\"g\":1}", cfg));
    ASSERT_OK(push_blob(&f, "gc", "gc-layer", layer));
    ASSERT_OK(push_blob(&f, "gc", "orphan-bytes", orphan));
    _cleanup_free_ char *m = image_manifest(cfg, 7, layer, 8);
    reg_put_result res;
    sk_err err = { 0 };
    ASSERT_OK_ERR(put_image(&f, "gc", m, "t", &res, &err), &err);
    /* young blobs survive */
    ASSERT_EQ(reg_gc_run(f.r, &err), 0);
    ASSERT_TRUE(cas_has(f.r->cas, orphan));
    /* with no grace the orphan goes, referenced blobs and the manifest stay */
    f.r->gc_grace = 0;
    usleep(2000);
    ASSERT_EQ(reg_gc_run(f.r, &err), 1);
    ASSERT_FALSE(cas_has(f.r->cas, orphan));
    ASSERT_FALSE(reg_blob_linked(f.r, &f.ns, "gc", orphan, NULL));
    ASSERT_TRUE(cas_has(f.r->cas, cfg));
    ASSERT_TRUE(cas_has(f.r->cas, layer));
    ASSERT_TRUE(cas_has(f.r->cas, res.digest));
    /* once the image is deleted everything is collectable */
    ASSERT_OK_ERR(reg_image_delete(f.r, &f.ns, "gc", res.digest, &err), &err);
    ASSERT_EQ(reg_gc_run(f.r, &err), 3);
    fx_close(&f);
}

TEST(lifecycle_apply)
{
    fixture f;
    if (fx_open(&f) < 0)
        TAP_FAIL("fixture");
    ASSERT_OK(put_repo(&f, "lc", "MUTABLE"));
    char layer[CAS_DIGEST_MAX];
    ASSERT_OK(push_blob(&f, "lc", "lc-layer", layer));
    char digests[3][CAS_DIGEST_MAX];
    for (int i = 0; i < 3; i++) {
        char body[32], cfg[CAS_DIGEST_MAX];
        snprintf(body, sizeof(body), "{\"n\":%d}", i);
        ASSERT_OK(push_blob(&f, "lc", body, cfg));
        _cleanup_free_ char *m = image_manifest(cfg, strlen(body), layer, 8);
        reg_put_result res;
        sk_err err = { 0 };
        ASSERT_OK_ERR(put_image(&f, "lc", m, NULL, &res, &err), &err);
        memcpy(digests[i], res.digest, CAS_DIGEST_MAX);
        usleep(2000);
    }
    const char *policy = "{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":"
                         "\"untagged\",\"countType\":\"imageCountMoreThan\",\"countNumber\":1},"
                         "\"action\":{\"type\":\"expire\"}}]}";
    sk_err err = { 0 };
    json_t *preview = NULL;
    ASSERT_EQ(reg_lifecycle_apply(f.r, &f.ns, "lc", policy, true, &preview, &err), 2);
    ASSERT_EQ(json_array_size(preview), 2);
    json_decref(preview);
    ASSERT_TRUE(reg_repo_has_images(f.r, &f.ns, "lc"));
    _cleanup_free_ char *k = reg_key(&f.ns, "lifecycle", "%s", "lc");
    _cleanup_json_ json_t *v = json_pack("{s:s}", "text", policy);
    ASSERT_OK(store_put_json(f.st, k, v, &err));
    ASSERT_EQ(reg_lifecycle_run(f.r, &err), 2);
    _cleanup_json_ json_t *newest = reg_image_get(f.r, &f.ns, "lc", digests[2]);
    _cleanup_json_ json_t *oldest = reg_image_get(f.r, &f.ns, "lc", digests[0]);
    ASSERT_NOT_NULL(newest);
    ASSERT_NULL(oldest);
    fx_close(&f);
}

TEST(token_key_persists)
{
    fixture f;
    if (fx_open(&f) < 0)
        TAP_FAIL("fixture");
    uint8_t key[32];
    memcpy(key, f.r->token_key, sizeof(key));
    reg_free(f.r);
    _cleanup_free_ char *casdir = xasprintf("%s/registry", f.dir);
    reg_config cfg = { .data_dir = casdir, .account_id = "123456789012", .region = "eu-west-1" };
    sk_err err = { 0 };
    ASSERT_OK_ERR(reg_new(f.loop, f.st, &cfg, &f.r, &err), &err);
    ASSERT_TRUE(memcmp(key, f.r->token_key, sizeof(key)) == 0);
    fx_close(&f);
}

TAP_MAIN()
