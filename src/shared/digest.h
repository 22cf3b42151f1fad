/* Hashing, HMAC and base64 on GNU Nettle. Nettle rather than OpenSSL 3:
 * OpenSSL's provider initialisation touches 2-3 MiB of libcrypto in every
 * process on the first digest, while Nettle is already mapped into the server
 * through libmicrohttpd's GnuTLS and costs nothing extra (docs/ARCHITECTURE.md). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN     32
#define SHA256_HEX_LEN 64
#define SHA512_HEX_LEN 128

typedef struct sk_sha256 sk_sha256;

sk_sha256 *sk_sha256_new(void);
void sk_sha256_update(sk_sha256 *h, const void *p, size_t n);
/* Writes the digest and resets the context for reuse. */
void sk_sha256_final(sk_sha256 *h, uint8_t out[SHA256_LEN]);
void sk_sha256_free(sk_sha256 *h);

void sha256(const void *p, size_t n, uint8_t out[SHA256_LEN]);
void sha256_hex(const void *p, size_t n, char out[SHA256_HEX_LEN + 1]);
void sha512_hex(const void *p, size_t n, char out[SHA512_HEX_LEN + 1]);
void hmac_sha256(const void *key, size_t keylen, const void *p, size_t n, uint8_t out[SHA256_LEN]);
/* Constant-time equality. */
bool mem_equal_ct(const void *a, const void *b, size_t n);

/* Standard base64 with padding; returns a malloc'd NUL-terminated string. */
char *base64_encode(const void *p, size_t n);
/* Accepts padded standard base64, ignoring no characters; -EINVAL on bad input. */
int base64_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len);
