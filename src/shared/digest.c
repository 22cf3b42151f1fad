#include "digest.h"

#include <errno.h>
#include <nettle/base64.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"

struct sk_sha256 {
    struct sha256_ctx ctx;
};

sk_sha256 *sk_sha256_new(void)
{
    sk_sha256 *h = xmalloc(sizeof(*h));
    sha256_init(&h->ctx);
    return h;
}

void sk_sha256_update(sk_sha256 *h, const void *p, size_t n)
{
    sha256_update(&h->ctx, n, p);
}

void sk_sha256_final(sk_sha256 *h, uint8_t out[SHA256_LEN])
{
    /* sha256_digest also re-initialises the context. */
    sha256_digest(&h->ctx, SHA256_LEN, out);
}

void sk_sha256_free(sk_sha256 *h)
{
    free(h);
}

void sha256(const void *p, size_t n, uint8_t out[SHA256_LEN])
{
    struct sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, n, p);
    sha256_digest(&c, SHA256_LEN, out);
}

void sha256_hex(const void *p, size_t n, char out[SHA256_HEX_LEN + 1])
{
    uint8_t d[SHA256_LEN];
    sha256(p, n, d);
    hex_encode(d, SHA256_LEN, out);
}

void sha512_hex(const void *p, size_t n, char out[SHA512_HEX_LEN + 1])
{
    uint8_t d[SHA512_DIGEST_SIZE];
    struct sha512_ctx c;
    sha512_init(&c);
    sha512_update(&c, n, p);
    sha512_digest(&c, sizeof(d), d);
    hex_encode(d, sizeof(d), out);
}

void hmac_sha256(const void *key, size_t keylen, const void *p, size_t n, uint8_t out[SHA256_LEN])
{
    struct hmac_sha256_ctx c;
    hmac_sha256_set_key(&c, keylen, key);
    hmac_sha256_update(&c, n, p);
    hmac_sha256_digest(&c, SHA256_LEN, out);
}

bool mem_equal_ct(const void *a, const void *b, size_t n)
{
    return nettle_memeql_sec(a, b, n) != 0;
}

char *base64_encode(const void *p, size_t n)
{
    char *out = xmalloc(BASE64_ENCODE_RAW_LENGTH(n) + 1);
    base64_encode_raw(out, n, p);
    out[BASE64_ENCODE_RAW_LENGTH(n)] = '\0';
    return out;
}

int base64_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len)
{
    if (n % 4 != 0 || n > (size_t) INT32_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/' || (c == '=' && i >= n - 2);
        if (!ok)
            return -EINVAL;
        if (c != '=' && i >= n - 2 && i > 0 && s[i - 1] == '=')
            return -EINVAL;
    }
    uint8_t *out = xmalloc(BASE64_DECODE_LENGTH(n) + 1);
    struct base64_decode_ctx ctx;
    size_t len = BASE64_DECODE_LENGTH(n);
    base64_decode_init(&ctx);
    if (!base64_decode_update(&ctx, &len, out, n, s) || !base64_decode_final(&ctx)) {
        free(out);
        return -EINVAL;
    }
    out[len] = 0;
    *ret = out;
    *ret_len = len;
    return 0;
}
