/* A growable byte buffer with a hard cap. Appends past the cap fail with
 * -E2BIG and leave the buffer unchanged; the data is always NUL-terminated
 * (the terminator is not counted in len). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

typedef struct sk_buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap; /* 0 means SIZE_MAX/2 */
} sk_buf;

void sk_buf_init(sk_buf *b, size_t cap);
void sk_buf_done(sk_buf *b);
void sk_buf_reset(sk_buf *b);
/* Makes room for extra more bytes in one allocation (no doubling); fails
 * like an append past the cap. */
int sk_buf_reserve(sk_buf *b, size_t extra);
int sk_buf_append(sk_buf *b, const void *p, size_t n);
int sk_buf_puts(sk_buf *b, const char *s);
int sk_buf_putc(sk_buf *b, char c);
int sk_buf_printf(sk_buf *b, const char *fmt, ...) _printf_(2, 3);
/* Returns the data and resets the buffer; the caller frees. Never NULL. */
char *sk_buf_steal(sk_buf *b);

#define _cleanup_buf_ _cleanup_(sk_buf_done)
