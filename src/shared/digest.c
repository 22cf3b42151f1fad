#include "digest.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"

struct sk_sha256 {
    EVP_MD_CTX *ctx;
};

sk_sha256 *sk_sha256_new(void)
{
    sk_sha256 *h = xmalloc(sizeof(*h));
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
        oom();
    return h;
}

void sk_sha256_update(sk_sha256 *h, const void *p, size_t n)
{
    EVP_DigestUpdate(h->ctx, p, n);
}

void sk_sha256_final(sk_sha256 *h, uint8_t out[SHA256_LEN])
{
    unsigned len = SHA256_LEN;
    EVP_DigestFinal_ex(h->ctx, out, &len);
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void sk_sha256_free(sk_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void sha256(const void *p, size_t n, uint8_t out[SHA256_LEN])
{
    unsigned len = SHA256_LEN;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

void sha256_hex(const void *p, size_t n, char out[SHA256_HEX_LEN + 1])
{
    uint8_t d[SHA256_LEN];
    sha256(p, n, d);
    hex_encode(d, SHA256_LEN, out);
}

void hmac_sha256(const void *key, size_t keylen, const void *p, size_t n, uint8_t out[SHA256_LEN])
{
    unsigned len = SHA256_LEN;
    HMAC(EVP_sha256(), key, (int) keylen, p, n, out, &len);
}

bool mem_equal_ct(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

char *base64_encode(const void *p, size_t n)
{
    size_t outlen = 4 * ((n + 2) / 3) + 1;
    char *out = xmalloc(outlen);
    EVP_EncodeBlock((unsigned char *) out, p, (int) n);
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
    uint8_t *out = xmalloc(n / 4 * 3 + 1);
    int len = n ? EVP_DecodeBlock(out, (const unsigned char *) s, (int) n) : 0;
    if (len < 0) {
        free(out);
        return -EINVAL;
    }
    if (n >= 1 && s[n - 1] == '=')
        len--;
    if (n >= 2 && s[n - 2] == '=')
        len--;
    out[len] = 0;
    *ret = out;
    *ret_len = (size_t) len;
    return 0;
}
