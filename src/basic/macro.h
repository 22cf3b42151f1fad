/* Small language-level helpers shared by every layer: cleanup attributes,
 * ownership transfer, array sizing. libc only. */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_       __attribute__((unused))
#define _noreturn_     __attribute__((noreturn))
#define _warn_unused_  __attribute__((warn_unused_result))
#define _likely_(x)    __builtin_expect(!!(x), 1)
#define _unlikely_(x)  __builtin_expect(!!(x), 0)

#define ELEMENTSOF(a)  (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)               \
    ({                          \
        __typeof__(a) _a = (a); \
        __typeof__(b) _b = (b); \
        _a < _b ? _a : _b;      \
    })
#define MAX(a, b)               \
    ({                          \
        __typeof__(a) _a = (a); \
        __typeof__(b) _b = (b); \
        _a > _b ? _a : _b;      \
    })
#define CLAMP(x, lo, hi)                                   \
    ({                                                     \
        __typeof__(x) _cx = (x);                           \
        __typeof__(x) _clo = (lo), _chi = (hi);            \
        (_cx < _clo) ? _clo : ((_cx > _chi) ? _chi : _cx); \
    })

/* Hand over ownership: returns the value and resets the variable so that its
 * cleanup attribute becomes a no-op. */
#define TAKE_PTR(p)              \
    ({                           \
        __typeof__(p) _tp = (p); \
        (p) = NULL;              \
        _tp;                     \
    })
#define TAKE_FD(fd)      \
    ({                   \
        int _tfd = (fd); \
        (fd) = -EBADF;   \
        _tfd;            \
    })

static inline void freep(void *p)
{
    free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
#define _cleanup_close_ _cleanup_(closep)

/* DEFINE_CLEANUP_FUNC(foo, foo_free) defines foo_freep(foo **) for _cleanup_. */
#define DEFINE_CLEANUP_FUNC(type, fn)  \
    static inline void fn##p(type **p) \
    {                                  \
        if (*p)                        \
            fn(*p);                    \
    }

static inline int negative_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}
