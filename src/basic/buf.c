#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

void sk_buf_init(sk_buf *b, size_t cap)
{
    *b = (sk_buf){ .cap = cap ? cap : SIZE_MAX / 2 };
}

void sk_buf_done(sk_buf *b)
{
    free(b->data);
    size_t cap = b->cap;
    *b = (sk_buf){ .cap = cap };
}

void sk_buf_reset(sk_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

static int reserve(sk_buf *b, size_t extra)
{
    size_t cap = b->cap ? b->cap : SIZE_MAX / 2;
    if (extra > cap || b->len > cap - extra)
        return -E2BIG;
    size_t need = b->len + extra + 1;
    if (need <= b->alloc)
        return 0;
    size_t n = b->alloc ? b->alloc : 64;
    while (n < need)
        n *= 2;
    b->data = xrealloc(b->data, n);
    b->alloc = n;
    return 0;
}

int sk_buf_reserve(sk_buf *b, size_t extra)
{
    size_t cap = b->cap ? b->cap : SIZE_MAX / 2;
    if (extra > cap || b->len > cap - extra)
        return -E2BIG;
    size_t need = b->len + extra + 1;
    if (need > b->alloc) {
        b->data = xrealloc(b->data, need);
        b->alloc = need;
    }
    return 0;
}

int sk_buf_append(sk_buf *b, const void *p, size_t n)
{
    int r = reserve(b, n);
    if (r < 0)
        return r;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int sk_buf_puts(sk_buf *b, const char *s)
{
    return sk_buf_append(b, s, strlen(s));
}

int sk_buf_putc(sk_buf *b, char c)
{
    return sk_buf_append(b, &c, 1);
}

int sk_buf_printf(sk_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    int r = reserve(b, (size_t) n);
    if (r < 0)
        return r;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t) n;
    return 0;
}

char *sk_buf_steal(sk_buf *b)
{
    char *d = b->data ? b->data : xstrdup("");
    size_t cap = b->cap;
    *b = (sk_buf){ .cap = cap };
    return d;
}
