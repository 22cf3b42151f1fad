#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/err.h"
#include "basic/hmap.h"
#include "basic/omap.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "tap.h"

static int fail_inner(sk_err *err)
{
    return sk_err_set(err, SK_E_INVALID, "value '%s' is bad", "x");
}

TEST(err_chain)
{
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FAIL(fail_inner(&err));
    sk_err_wrap(&err, "register task definition");
    ASSERT_EQ(err.code, SK_E_INVALID);
    ASSERT_STREQ(err.msg, "register task definition: value 'x' is bad");
    sk_err_sys(&err, ENOENT, "open '%s'", "/nope");
    ASSERT_EQ(err.sys_errno, ENOENT);
    ASSERT_STREQ(err.msg, "open '/nope': No such file or directory");
}

TEST(buf_cap)
{
    _cleanup_buf_ sk_buf b;
    sk_buf_init(&b, 8);
    ASSERT_OK(sk_buf_puts(&b, "abcd"));
    ASSERT_OK(sk_buf_printf(&b, "%d", 123));
    ASSERT_EQ(sk_buf_puts(&b, "xyz"), -E2BIG);
    ASSERT_STREQ(b.data, "abcd123");
    ASSERT_OK(sk_buf_putc(&b, '!'));
    ASSERT_EQ(b.len, 8);
}

TEST(parse_numbers)
{
    uint64_t u;
    int64_t i;
    ASSERT_OK(parse_u64("18446744073709551615", &u));
    ASSERT_TRUE(u == UINT64_MAX);
    ASSERT_EQ(parse_u64("18446744073709551616", &u), -ERANGE);
    ASSERT_EQ(parse_u64("12a", &u), -EINVAL);
    ASSERT_EQ(parse_u64("", &u), -EINVAL);
    ASSERT_OK(parse_i64("-9223372036854775808", &i));
    ASSERT_TRUE(i == INT64_MIN);
    ASSERT_OK(parse_duration_usec("1h30m", &u));
    ASSERT_TRUE(u == 5400ULL * 1000000);
    ASSERT_OK(parse_duration_usec("250ms", &u));
    ASSERT_EQ(u, 250000);
    ASSERT_OK(parse_duration_usec("30", &u));
    ASSERT_EQ(u, 30000000);
    ASSERT_FAIL(parse_duration_usec("5x", &u));
    ASSERT_OK(parse_size("512m", &u));
    ASSERT_EQ(u, 512ULL << 20);
}

TEST(uri_codec)
{
    _cleanup_free_ char *e = uri_encode("a b/c~", 6, false);
    ASSERT_STREQ(e, "a%20b%2Fc~");
    _cleanup_free_ char *d = NULL;
    size_t n;
    ASSERT_OK(uri_decode("a%20b+c", 7, true, &d, &n));
    ASSERT_STREQ(d, "a b c");
    char *bad = NULL;
    ASSERT_FAIL(uri_decode("%2", 2, false, &bad, NULL));
    ASSERT_FAIL(uri_decode("%zz", 3, false, &bad, NULL));
}

TEST(hmap_basic)
{
    sk_hmap m;
    sk_hmap_init(&m);
    char keys[1000][8];
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], 8, "k%d", i);
        ASSERT_NULL(sk_hmap_put(&m, keys[i], (void *) (intptr_t) (i + 1)));
    }
    ASSERT_EQ(sk_hmap_size(&m), 1000);
    for (int i = 0; i < 1000; i += 2)
        ASSERT_EQ((intptr_t) sk_hmap_remove(&m, keys[i]), i + 1);
    ASSERT_EQ(sk_hmap_size(&m), 500);
    ASSERT_NULL(sk_hmap_get(&m, "k0"));
    ASSERT_EQ((intptr_t) sk_hmap_get(&m, "k999"), 1000);
    size_t it = 0, count = 0;
    while (sk_hmap_next(&m, &it, NULL, NULL))
        count++;
    ASSERT_EQ(count, 500);
    sk_hmap_done(&m);
}

TEST(omap_order)
{
    sk_omap *m = sk_omap_new();
    const char *keys[] = { "b/2", "a/1", "b/1", "c", "b/10", "a/2" };
    for (size_t i = 0; i < ELEMENTSOF(keys); i++)
        sk_omap_put(m, keys[i], (void *) keys[i]);
    sk_omap_node *n = sk_omap_seek(m, "b/");
    ASSERT_STREQ(sk_omap_node_key(n), "b/1");
    n = sk_omap_next(n);
    ASSERT_STREQ(sk_omap_node_key(n), "b/10");
    n = sk_omap_next(n);
    ASSERT_STREQ(sk_omap_node_key(n), "b/2");
    ASSERT_NOT_NULL(sk_omap_remove(m, "b/10"));
    ASSERT_NULL(sk_omap_remove(m, "b/10"));
    ASSERT_EQ(sk_omap_size(m), 5);
    n = sk_omap_seek(m, NULL);
    ASSERT_STREQ(sk_omap_node_key(n), "a/1");
    sk_omap_free(m, NULL);
}

TEST(time_formats)
{
    char out[32];
    format_amz_date(1700000000, out);
    ASSERT_STREQ(out, "20231114T221320Z");
    time_t t;
    ASSERT_OK(parse_amz_date("20231114T221320Z", &t));
    ASSERT_EQ(t, 1700000000);
    ASSERT_FAIL(parse_amz_date("20231314T221320Z", &t));
    usec_t u;
    ASSERT_OK(parse_rfc3339("2023-11-14T22:13:20.5Z", &u));
    ASSERT_TRUE(u == 1700000000500000ULL);
    ASSERT_OK(parse_rfc3339("2018-06-18", &u));
    format_rfc3339(1700000000500000ULL, out);
    ASSERT_STREQ(out, "2023-11-14T22:13:20.500Z");
}

TAP_MAIN()
