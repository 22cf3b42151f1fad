/* Unit tests of the registry's pure parsers (src/registry/reg-parse.c):
 * repository names, tags, digests, /v2/ routes, Content-Range and Range,
 * manifests, auth tokens, hosts and lifecycle policy evaluation. */
#include <errno.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "registry/reg-parse.h"
#include "shared/digest.h"
#include "tap.h"

TEST(repo_names)
{
    static const char *const ok[] = { "ab",   "my-repo", "a/b",         "team/app.v2",
                                      "x__y", "a---b",   "a_b/c.d/e-f", "0a" };
    static const char *const bad[] = { "",       "a",     "A1",    "-ab",   "ab-", "a//b",
                                       "a/../b", "../ab", "a_._b", "a___b", "ab/", "/ab",
                                       "a b",    "a@b",   "a:b",   "a..b",  "a.-b" };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++)
        if (!reg_repo_name_valid(ok[i]))
            TAP_FAIL("'%s' should be valid", ok[i]);
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        if (reg_repo_name_valid(bad[i]))
            TAP_FAIL("'%s' should be invalid", bad[i]);
    char big[300];
    memset(big, 'a', 256);
    big[256] = 0;
    ASSERT_TRUE(reg_repo_name_valid(big));
    big[256] = 'a';
    big[257] = 0;
    ASSERT_FALSE(reg_repo_name_valid(big));
}

TEST(tags_and_digests)
{
    ASSERT_TRUE(reg_tag_valid("latest"));
    ASSERT_TRUE(reg_tag_valid("_x.Y-1"));
    ASSERT_FALSE(reg_tag_valid(".x"));
    ASSERT_FALSE(reg_tag_valid("-x"));
    ASSERT_FALSE(reg_tag_valid("a/b"));
    ASSERT_FALSE(reg_tag_valid(""));
    char t[200];
    memset(t, 'a', 129);
    t[129] = 0;
    ASSERT_FALSE(reg_tag_valid(t));
    t[128] = 0;
    ASSERT_TRUE(reg_tag_valid(t));
    const char *d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    ASSERT_TRUE(reg_digest_valid(d));
    ASSERT_TRUE(reg_digest_syntax(d));
    ASSERT_FALSE(reg_digest_valid("sha256:0123"));
    ASSERT_FALSE(reg_digest_valid(
            "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    ASSERT_TRUE(reg_digest_syntax("sha512:abc"));
    ASSERT_FALSE(reg_digest_syntax("sha256"));
    ASSERT_FALSE(reg_digest_syntax(":abc"));
    ASSERT_FALSE(reg_digest_syntax("sha256:"));
    ASSERT_FALSE(reg_digest_syntax("SHA256:abc"));
}

TEST(routes)
{
    reg_route r;
    ASSERT_OK(reg_route_parse("/v2/", &r));
    ASSERT_EQ(r.kind, REG_ROUTE_BASE);
    ASSERT_OK(reg_route_parse("/v2/_catalog", &r));
    ASSERT_EQ(r.kind, REG_ROUTE_CATALOG);
    ASSERT_OK(reg_route_parse("/v2/a/b/manifests/latest", &r));
    ASSERT_EQ(r.kind, REG_ROUTE_MANIFEST);
    ASSERT_STREQ(r.name, "a/b");
    ASSERT_STREQ(r.ref, "latest");
    ASSERT_OK(reg_route_parse("/v2/foo/blobs/uploads/", &r));
    ASSERT_EQ(r.kind, REG_ROUTE_UPLOAD_NEW);
    ASSERT_STREQ(r.name, "foo");
    ASSERT_OK(reg_route_parse("/v2/foo/blobs/uploads", &r));
    ASSERT_EQ(r.kind, REG_ROUTE_UPLOAD_NEW);
    ASSERT_OK(reg_route_parse("/v2/foo/blobs/uploads/1234-abcd", &r));
    ASSERT_EQ(r.kind, REG_ROUTE_UPLOAD);
    ASSERT_STREQ(r.ref, "1234-abcd");
    ASSERT_OK(reg_route_parse("/v2/x/blobs/blobs/sha256%3Aab", &r));
    ASSERT_EQ(r.kind, REG_ROUTE_BLOB);
    ASSERT_STREQ(r.name, "x/blobs");
    ASSERT_STREQ(r.ref, "sha256:ab");
    ASSERT_OK(reg_route_parse("/v2/ns/tags/tags/list", &r));
    ASSERT_EQ(r.kind, REG_ROUTE_TAGS);
    ASSERT_STREQ(r.name, "ns/tags");
    ASSERT_OK(reg_route_parse("/v2/ns/referrers/sha256:ab", &r));
    ASSERT_EQ(r.kind, REG_ROUTE_REFERRERS);
    ASSERT_EQ(reg_route_parse("/v2/Bad/manifests/x", &r), -EINVAL);
    ASSERT_EQ(reg_route_parse("/v2/a/../b/manifests/x", &r), -EINVAL);
    ASSERT_EQ(reg_route_parse("/v2/ab/unknown/x", &r), -ENOENT);
    ASSERT_EQ(reg_route_parse("/v3/", &r), -ENOENT);
    ASSERT_EQ(reg_route_parse("/v2/ab/manifests/", &r), -ENOENT);
    ASSERT_EQ(reg_route_parse("/v2/a%00b/manifests/x", &r), -EINVAL);
}

TEST(content_range)
{
    uint64_t a, b;
    ASSERT_OK(reg_content_range_parse("0-1023", &a, &b));
    ASSERT_EQ(a, 0);
    ASSERT_EQ(b, 1023);
    ASSERT_OK(reg_content_range_parse("bytes 10-20/*", &a, &b));
    ASSERT_EQ(a, 10);
    ASSERT_EQ(b, 20);
    ASSERT_OK(reg_content_range_parse("bytes=5-5/100", &a, &b));
    ASSERT_FAIL(reg_content_range_parse("20-10", &a, &b));
    ASSERT_FAIL(reg_content_range_parse("-10", &a, &b));
    ASSERT_FAIL(reg_content_range_parse("10-", &a, &b));
    ASSERT_FAIL(reg_content_range_parse("a-b", &a, &b));
    ASSERT_FAIL(reg_content_range_parse("99999999999999999999-1", &a, &b));
    ASSERT_FAIL(reg_content_range_parse("1-2/x", &a, &b));
}

TEST(range_header)
{
    uint64_t off, len;
    ASSERT_OK(reg_range_parse("bytes=0-9", 100, &off, &len));
    ASSERT_EQ(off, 0);
    ASSERT_EQ(len, 10);
    ASSERT_OK(reg_range_parse("bytes=90-", 100, &off, &len));
    ASSERT_EQ(len, 10);
    ASSERT_OK(reg_range_parse("bytes=-5", 100, &off, &len));
    ASSERT_EQ(off, 95);
    ASSERT_EQ(len, 5);
    ASSERT_OK(reg_range_parse("bytes=50-500", 100, &off, &len));
    ASSERT_EQ(len, 50);
    ASSERT_EQ(reg_range_parse("bytes=100-", 100, &off, &len), -ERANGE);
    ASSERT_EQ(reg_range_parse("bytes=0-1,5-6", 100, &off, &len), -EINVAL);
    ASSERT_EQ(reg_range_parse("items=0-1", 100, &off, &len), -EINVAL);
    ASSERT_EQ(reg_range_parse("bytes=5-1", 100, &off, &len), -EINVAL);
}

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

TEST(manifest_image)
{
    const char *m = "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_OCI_MANIFEST "\","
                    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                    "\"digest\":\"" D1 "\",\"size\":10},"
                    "\"layers\":[{\"mediaType\":\"x\",\"digest\":\"" D2 "\",\"size\":5}],"
                    "\"subject\":{\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"digest\":\"" D1
                    "\",\"size\":3}}";
    reg_manifest mf;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(reg_manifest_parse(m, strlen(m), NULL, &mf, &err), &err);
    ASSERT_EQ(mf.kind, REG_MANIFEST_IMAGE);
    ASSERT_EQ(mf.ndescs, 1);
    ASSERT_STREQ(mf.descs[0].digest, D2);
    ASSERT_TRUE(mf.has_subject);
    ASSERT_STREQ(mf.artifact_type, "application/vnd.oci.image.config.v1+json");
    reg_manifest_done(&mf);
    /* declared type mismatch */
    sk_err e2 = { 0 };
    ASSERT_FAIL(reg_manifest_parse(m, strlen(m), REG_MT_DOCKER_MANIFEST, &mf, &e2));
    ASSERT_STREQ(e2.type, "MANIFEST_INVALID");
    sk_err_done(&e2);
}

TEST(manifest_invalid)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{\"schemaVersion\":1}",
        "{\"schemaVersion\":2,\"mediaType\":\"application/x\",\"config\":{}}",
        "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_OCI_MANIFEST "\",\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_OCI_MANIFEST
        "\",\"config\":{\"digest\":\"x\",\"size\":1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_OCI_MANIFEST
        "\",\"config\":{\"digest\":\"" D1 "\",\"size\":-1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_OCI_INDEX "\",\"manifests\":{}}",
        "{\"schemaVersion\":2,\"schemaVersion\":2}",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        reg_manifest mf;
        sk_err err = { 0 };
        if (reg_manifest_parse(bad[i], strlen(bad[i]), NULL, &mf, &err) >= 0) {
            reg_manifest_done(&mf);
            TAP_FAIL("accepted bad manifest %zu", i);
        }
        if (!err.type || !streq(err.type, "MANIFEST_INVALID"))
            TAP_FAIL("manifest %zu: type %s", i, err.type ? err.type : "(null)");
        sk_err_done(&err);
    }
}

TEST(manifest_index)
{
    const char *m = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" REG_MT_OCI_MANIFEST
                    "\",\"digest\":\"" D1 "\",\"size\":10,\"platform\":{\"os\":\"linux\","
                    "\"architecture\":\"amd64\"}}]}";
    reg_manifest mf;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(reg_manifest_parse(m, strlen(m), REG_MT_OCI_INDEX, &mf, &err), &err);
    ASSERT_EQ(mf.kind, REG_MANIFEST_INDEX);
    ASSERT_STREQ(mf.media_type, REG_MT_OCI_INDEX);
    ASSERT_STREQ(mf.descs[0].platform_arch, "amd64");
    reg_manifest_done(&mf);
    ASSERT_TRUE(
            reg_accept_allows("application/json, " REG_MT_OCI_INDEX ";q=0.5", REG_MT_OCI_INDEX));
    ASSERT_FALSE(reg_accept_allows(REG_MT_DOCKER_MANIFEST, REG_MT_OCI_INDEX));
    ASSERT_TRUE(reg_accept_allows("*/*", REG_MT_OCI_INDEX));
    ASSERT_TRUE(reg_accept_allows("", REG_MT_OCI_INDEX));
}

TEST(tokens)
{
    uint8_t key[32], other[32];
    memset(key, 7, sizeof(key));
    memset(other, 8, sizeof(other));
    _cleanup_free_ char *t = reg_token_make(key, sizeof(key), "123456789012", "eu-west-1", 2000);
    reg_token_claims c;
    ASSERT_OK(reg_token_verify(key, sizeof(key), t, 1000, &c));
    ASSERT_STREQ(c.account, "123456789012");
    ASSERT_STREQ(c.region, "eu-west-1");
    ASSERT_EQ(c.expires, 2000);
    ASSERT_EQ(reg_token_verify(key, sizeof(key), t, 2000, &c), -ETIMEDOUT);
    ASSERT_EQ(reg_token_verify(other, sizeof(other), t, 1000, &c), -EACCES);
    /* tampering with the payload (account) breaks the MAC */
    size_t l;
    uint8_t *raw = NULL;
    ASSERT_OK(base64_decode(t, strlen(t), &raw, &l));
    raw[3] = raw[3] == '9' ? '8' : '9';
    _cleanup_free_ char *t2 = base64_encode(raw, l);
    free(raw);
    ASSERT_EQ(reg_token_verify(key, sizeof(key), t2, 1000, &c), -EACCES);
    ASSERT_EQ(reg_token_verify(key, sizeof(key), "garbage", 1000, &c), -EACCES);
    ASSERT_EQ(reg_token_verify(key, sizeof(key), "", 1000, &c), -EACCES);
    char *u = NULL, *p = NULL;
    ASSERT_OK(reg_basic_auth_parse("Basic QVdTOnNlY3JldDpwYXJ0", &u, &p));
    ASSERT_STREQ(u, "AWS");
    ASSERT_STREQ(p, "secret:part");
    free(u);
    free(p);
    ASSERT_FAIL(reg_basic_auth_parse("Bearer abc", &u, &p));
    ASSERT_FAIL(reg_basic_auth_parse("Basic !!!", &u, &p));
    char acct[13], region[64];
    ASSERT_OK(reg_host_parse("123456789012.dkr.ecr.us-west-2.amazonaws.com:443", acct, region));
    ASSERT_STREQ(acct, "123456789012");
    ASSERT_STREQ(region, "us-west-2");
    ASSERT_FAIL(reg_host_parse("127.0.0.1:4566", acct, region));
    ASSERT_FAIL(reg_host_parse("12345678901x.dkr.ecr.us-west-2.amazonaws.com", acct, region));
}

#define DAY (86400ULL * 1000000ULL)

TEST(lifecycle_parse)
{
    reg_lc_policy p;
    sk_err err = { 0 };
    ASSERT_FAIL(reg_lc_parse("{}", &p, &err));
    sk_err_done(&err);
    ASSERT_FAIL(reg_lc_parse("{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":"
                             "\"tagged\",\"countType\":\"imageCountMoreThan\",\"countNumber\":1},"
                             "\"action\":{\"type\":\"expire\"}}]}",
                             &p, &err));
    sk_err_done(&err);
    /* any must be last */
    ASSERT_FAIL(reg_lc_parse(
            "{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"any\",\"countType\":"
            "\"imageCountMoreThan\",\"countNumber\":1},\"action\":{\"type\":\"expire\"}},"
            "{\"rulePriority\":2,\"selection\":{\"tagStatus\":\"untagged\",\"countType\":"
            "\"imageCountMoreThan\",\"countNumber\":1},\"action\":{\"type\":\"expire\"}}]}",
            &p, &err));
    sk_err_done(&err);
    ASSERT_FAIL(reg_lc_parse("{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":"
                             "\"untagged\",\"countType\":\"sinceImagePushed\",\"countNumber\":1},"
                             "\"action\":{\"type\":\"expire\"}}]}",
                             &p, &err));
    sk_err_done(&err);
}

TEST(lifecycle_eval)
{
    const char *text =
            "{\"rules\":["
            "{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"tagged\",\"tagPrefixList\":"
            "[\"prod\"],\"countType\":\"imageCountMoreThan\",\"countNumber\":1},\"action\":"
            "{\"type\":\"expire\"}},"
            "{\"rulePriority\":2,\"selection\":{\"tagStatus\":\"untagged\",\"countType\":"
            "\"sinceImagePushed\",\"countUnit\":\"days\",\"countNumber\":3},\"action\":{\"type\":"
            "\"expire\"}},"
            "{\"rulePriority\":3,\"selection\":{\"tagStatus\":\"any\",\"countType\":"
            "\"imageCountMoreThan\",\"countNumber\":2},\"action\":{\"type\":\"expire\"}}]}";
    reg_lc_policy p;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(reg_lc_parse(text, &p, &err), &err);
    ASSERT_EQ(p.nrules, 3);
    const char *t_prod1[] = { "prod-1" }, *t_prod2[] = { "prod-2" }, *t_dev[] = { "dev" },
               *t_dev2[] = { "dev2" };
    uint64_t now = 100 * DAY;
    reg_lc_image imgs[] = {
        { "a", t_prod1, 1, now - 1 * DAY, 0 }, /* newest prod: kept by rule 1, protected */
        { "b", t_prod2, 1, now - 2 * DAY, 0 }, /* rule 1 expires */
        { "c", NULL, 0, now - 5 * DAY, 0 },    /* untagged, old: rule 2 */
        { "d", NULL, 0, now - 1 * DAY, 0 },    /* untagged, young: protected by rule 2 match */
        { "e", t_dev, 1, now - 3 * DAY, 0 },   /* any rule: counted with a,b,c,d; only e,f free */
        { "f", t_dev2, 1, now - 4 * DAY, 0 },
    };
    reg_lc_eval(&p, imgs, ELEMENTSOF(imgs), now);
    ASSERT_EQ(imgs[0].expired_by, 0);
    ASSERT_EQ(imgs[1].expired_by, 1);
    ASSERT_EQ(imgs[2].expired_by, 2);
    ASSERT_EQ(imgs[3].expired_by, 0);
    ASSERT_EQ(imgs[4].expired_by, 3);
    ASSERT_EQ(imgs[5].expired_by, 3);
    reg_lc_done(&p);
    ASSERT_TRUE(reg_wildcard_match("v*-rc*", "v1.2-rc3"));
    ASSERT_FALSE(reg_wildcard_match("v*-rc", "v1.2-rc3"));
    ASSERT_TRUE(reg_wildcard_match("*", ""));
}

TAP_MAIN()
