/* Allocation helpers. The daemons abort on out-of-memory: every size an
 * attacker controls is capped before it reaches an allocator. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "macro.h"

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
char *xasprintf(const char *fmt, ...) _printf_(1, 2);
char *xvasprintf(const char *fmt, va_list ap) _printf_(1, 0);
_noreturn_ void oom(void);

/* Replace *dst with a copy of src (NULL allowed). */
void free_and_strdup(char **dst, const char *src);
