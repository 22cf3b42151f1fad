#include "err.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"

int sk_err_vset(sk_err *err, sk_errc code, const char *type, const char *fmt, va_list ap)
{
    if (!err)
        return -1;
    free(err->msg);
    err->code = code;
    err->type = type;
    err->sys_errno = 0;
    err->msg = xvasprintf(fmt, ap);
    return -1;
}

int sk_err_set(sk_err *err, sk_errc code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err_vset(err, code, NULL, fmt, ap);
    va_end(ap);
    return -1;
}

int sk_err_typed(sk_err *err, sk_errc code, const char *type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err_vset(err, code, type, fmt, ap);
    va_end(ap);
    return -1;
}

int sk_err_sys(sk_err *err, int sys_errno, const char *fmt, ...)
{
    if (sys_errno < 0)
        sys_errno = -sys_errno;
    if (sys_errno == 0)
        sys_errno = EIO;
    if (!err)
        return -sys_errno;
    char *base;
    va_list ap;
    va_start(ap, fmt);
    base = xvasprintf(fmt, ap);
    va_end(ap);
    free(err->msg);
    err->code = SK_E_SYSTEM;
    err->type = NULL;
    err->sys_errno = sys_errno;
    err->msg = xasprintf("%s: %s", base, strerror(sys_errno));
    free(base);
    return -sys_errno;
}

int sk_err_wrap(sk_err *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char *prefix;
    va_list ap;
    va_start(ap, fmt);
    prefix = xvasprintf(fmt, ap);
    va_end(ap);
    char *n = xasprintf("%s: %s", prefix, err->msg ? err->msg : "unknown error");
    free(prefix);
    free(err->msg);
    err->msg = n;
    if (err->code == SK_E_NONE)
        err->code = SK_E_INTERNAL;
    return err->sys_errno ? -err->sys_errno : -1;
}

void sk_err_move(sk_err *dst, sk_err *src)
{
    sk_err_done(dst);
    *dst = *src;
    *src = (sk_err){ 0 };
}

void sk_err_done(sk_err *err)
{
    if (!err)
        return;
    free(err->msg);
    *err = (sk_err){ 0 };
}

const char *sk_err_msg(const sk_err *err)
{
    if (!err || !err->msg)
        return "unknown error";
    return err->msg;
}

const char *sk_errc_name(sk_errc code)
{
    static const char *const names[_SK_E_MAX] = {
        [SK_E_NONE] = "none",           [SK_E_INVALID] = "invalid",
        [SK_E_NOT_FOUND] = "not-found", [SK_E_EXISTS] = "exists",
        [SK_E_CONFLICT] = "conflict",   [SK_E_LIMIT] = "limit",
        [SK_E_AUTH] = "auth",           [SK_E_UNAVAILABLE] = "unavailable",
        [SK_E_SYSTEM] = "system",       [SK_E_INTERNAL] = "internal",
    };
    if ((int) code < 0 || code >= _SK_E_MAX)
        return "unknown";
    return names[code];
}
