/* The one error type of skiff.
 *
 * Fallible operations have the shape `int f(..., sk_err *err)`: they return
 * >= 0 on success without touching err, and < 0 on failure after filling err
 * exactly once at the origin. Callers may add context with sk_err_wrap(), which
 * prefixes the message ("outer: inner"). A zero-initialised sk_err means "no
 * error"; sk_err_done() releases it.
 *
 * `type` optionally names the wire-level error (an AWS `__type` such as
 * "ClusterNotFoundException", or an OCI distribution code such as
 * "BLOB_UNKNOWN"). It must point to static storage. When it is NULL the edge
 * that renders the error derives a type from `code`. */
#pragma once

#include <stdarg.h>

#include "macro.h"

typedef enum sk_errc {
    SK_E_NONE = 0,
    SK_E_INVALID,     /* bad input from a client */
    SK_E_NOT_FOUND,   /* the named thing does not exist */
    SK_E_EXISTS,      /* the thing already exists */
    SK_E_CONFLICT,    /* a compare-and-swap or state precondition failed */
    SK_E_LIMIT,       /* a size or count cap was reached */
    SK_E_AUTH,        /* authentication or authorisation failed */
    SK_E_UNAVAILABLE, /* try again later */
    SK_E_SYSTEM,      /* a system call failed; sys_errno is set */
    SK_E_INTERNAL,    /* a bug or an impossible state */
    _SK_E_MAX,
} sk_errc;

typedef struct sk_err {
    sk_errc code;
    int sys_errno;
    const char *type;
    char *msg;
} sk_err;

/* Each returns -1 (or -sys_errno for sk_err_sys) so that `return sk_err_set(...)` works. */
int sk_err_set(sk_err *err, sk_errc code, const char *fmt, ...) _printf_(3, 4);
int sk_err_typed(sk_err *err, sk_errc code, const char *type, const char *fmt, ...) _printf_(4, 5);
int sk_err_sys(sk_err *err, int sys_errno, const char *fmt, ...) _printf_(3, 4);
int sk_err_wrap(sk_err *err, const char *fmt, ...) _printf_(2, 3);
int sk_err_vset(sk_err *err, sk_errc code, const char *type, const char *fmt, va_list ap)
        _printf_(4, 0);

/* Moves src into dst (dst must be empty); src becomes empty. */
void sk_err_move(sk_err *dst, sk_err *src);
void sk_err_done(sk_err *err);
/* The message including the errno text, e.g. "open 'x': No such file or directory". */
const char *sk_err_msg(const sk_err *err);
const char *sk_errc_name(sk_errc code);

#define _cleanup_err_ _cleanup_(sk_err_done)
