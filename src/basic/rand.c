#include "rand.h"

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>

#include "alloc.h"
#include "strutil.h"

void random_bytes(void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = getrandom(b, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            abort();
        }
        b += r;
        n -= (size_t) r;
    }
}

uint64_t random_u64(void)
{
    uint64_t v;
    random_bytes(&v, sizeof(v));
    return v;
}

void random_hex(char *out, size_t n)
{
    uint8_t b[64] = { 0 };
    size_t nb = (n + 1) / 2;
    if (nb > sizeof(b))
        abort();
    random_bytes(b, nb);
    char tmp[129];
    hex_encode(b, nb, tmp);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[i];
    out[n] = 0;
}

void random_uuid(char out[37])
{
    uint8_t b[16];
    random_bytes(b, sizeof(b));
    b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}
