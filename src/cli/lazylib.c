/* Lazy binding of libcurl and libarchive for the skiff executable.
 *
 * Only the node agent and the image-pull worker use these libraries, yet
 * linking them loads some forty shared objects (TLS, Kerberos, LDAP, ICU,
 * libxml2, libstdc++...) into every skiff process, the control plane
 * included. The executable therefore defines the functions skiff calls
 * itself: each forwards to the real library, which is dlopen()ed on first
 * use. Unit tests and fuzzers link the libraries directly instead.
 *
 * The variadic setters (curl_easy_setopt, curl_multi_setopt,
 * curl_easy_getinfo) forward their single argument as a pointer-sized
 * integer: every argument libcurl accepts there (long, curl_off_t, a pointer)
 * is passed in a general-purpose register on the 64-bit ABIs we support. */
#define CURL_DISABLE_TYPECHECK 1
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
#    error "lazylib.c forwards variadic arguments as pointers: check the ABI first"
#endif

static void *lib_curl, *lib_archive;

/* soname may list alternatives separated by ':', tried in order. */
static void *lazy_sym(void **lib, const char *soname, const char *name)
{
    if (!*lib) {
        char buf[128];
        for (const char *p = soname; *p && !*lib;) {
            size_t n = strcspn(p, ":");
            snprintf(buf, sizeof(buf), "%.*s", (int) n, p);
            *lib = dlopen(buf, RTLD_NOW | RTLD_LOCAL);
            p += n + (p[n] == ':');
        }
        if (!*lib) {
            fprintf(stderr, "skiff: cannot load %s: %s\n", soname, dlerror());
            abort();
        }
    }
    void *p = dlsym(*lib, name);
    if (!p) {
        fprintf(stderr, "skiff: %s lacks %s\n", soname, name);
        abort();
    }
    return p;
}

/* The GnuTLS build first: the server already maps GnuTLS through
 * libmicrohttpd, while the OpenSSL build costs another few MiB. */
#define CURL_SO    "libcurl-gnutls.so.4:libcurl.so.4"
#define ARCHIVE_SO "libarchive.so.13"

#define LAZY(lib, so, ret, name, params, args)              \
    ret name params                                         \
    {                                                       \
        static ret(*fp) params;                             \
        if (!fp)                                            \
            fp = (ret(*) params) lazy_sym(&lib, so, #name); \
        return fp args;                                     \
    }

#define LAZY_VOID(lib, so, name, params, args)               \
    void name params                                         \
    {                                                        \
        static void(*fp) params;                             \
        if (!fp)                                             \
            fp = (void(*) params) lazy_sym(&lib, so, #name); \
        fp args;                                             \
    }

/* --- libcurl --- */
/* Debian's libcurl-gnutls shares GnuTLS with libmicrohttpd, but it also
 * links libssh2, whose first libssh2_init() initialises OpenSSL and touches
 * some 3 MiB of libcrypto. skiff never speaks SSH (every handle is limited
 * to HTTP and HTTPS), so libssh2 is initialised first without its crypto;
 * curl's own libssh2_init() then only counts. */
CURLcode curl_global_init(long flags)
{
    static CURLcode (*fp)(long);
    if (!fp)
        fp = (CURLcode(*)(long)) lazy_sym(&lib_curl, CURL_SO, "curl_global_init");
    void *ssh = dlopen("libssh2.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (ssh) {
        int (*ssh_init)(int) = (int (*)(int)) dlsym(ssh, "libssh2_init");
        if (ssh_init)
            ssh_init(0x0001 /* LIBSSH2_INIT_NO_CRYPTO */);
        dlclose(ssh);
    }
    return fp(flags);
}
LAZY(lib_curl, CURL_SO, CURL *, curl_easy_init, (void), ())
LAZY_VOID(lib_curl, CURL_SO, curl_easy_cleanup, (CURL * h), (h))
LAZY(lib_curl, CURL_SO, CURLcode, curl_easy_perform, (CURL * h), (h))
LAZY(lib_curl, CURL_SO, const char *, curl_easy_strerror, (CURLcode c), (c))
LAZY(lib_curl, CURL_SO, CURLM *, curl_multi_init, (void), ())
LAZY(lib_curl, CURL_SO, CURLMcode, curl_multi_cleanup, (CURLM * m), (m))
LAZY(lib_curl, CURL_SO, CURLMcode, curl_multi_add_handle, (CURLM * m, CURL *h), (m, h))
LAZY(lib_curl, CURL_SO, CURLMcode, curl_multi_remove_handle, (CURLM * m, CURL *h), (m, h))
LAZY(lib_curl, CURL_SO, CURLMcode, curl_multi_assign, (CURLM * m, curl_socket_t s, void *p),
     (m, s, p))
LAZY(lib_curl, CURL_SO, CURLMsg *, curl_multi_info_read, (CURLM * m, int *left), (m, left))
LAZY(lib_curl, CURL_SO, CURLMcode, curl_multi_perform, (CURLM * m, int *running), (m, running))
LAZY(lib_curl, CURL_SO, CURLMcode, curl_multi_poll,
     (CURLM * m, struct curl_waitfd *fds, unsigned n, int timeout, int *numfds),
     (m, fds, n, timeout, numfds))
LAZY(lib_curl, CURL_SO, CURLMcode, curl_multi_socket_action,
     (CURLM * m, curl_socket_t s, int ev, int *running), (m, s, ev, running))
LAZY(lib_curl, CURL_SO, const char *, curl_multi_strerror, (CURLMcode c), (c))
LAZY(lib_curl, CURL_SO, struct curl_slist *, curl_slist_append,
     (struct curl_slist * l, const char *s), (l, s))
LAZY_VOID(lib_curl, CURL_SO, curl_slist_free_all, (struct curl_slist * l), (l))

CURLcode curl_easy_setopt(CURL *h, CURLoption o, ...)
{
    static CURLcode (*fp)(CURL *, CURLoption, ...);
    if (!fp)
        fp = (CURLcode(*)(CURL *, CURLoption, ...)) lazy_sym(&lib_curl, CURL_SO,
                                                             "curl_easy_setopt");
    va_list ap;
    va_start(ap, o);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fp(h, o, arg);
}

CURLcode curl_easy_getinfo(CURL *h, CURLINFO i, ...)
{
    static CURLcode (*fp)(CURL *, CURLINFO, ...);
    if (!fp)
        fp = (CURLcode(*)(CURL *, CURLINFO, ...)) lazy_sym(&lib_curl, CURL_SO, "curl_easy_getinfo");
    va_list ap;
    va_start(ap, i);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fp(h, i, arg);
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption o, ...)
{
    static CURLMcode (*fp)(CURLM *, CURLMoption, ...);
    if (!fp)
        fp = (CURLMcode(*)(CURLM *, CURLMoption, ...)) lazy_sym(&lib_curl, CURL_SO,
                                                                "curl_multi_setopt");
    va_list ap;
    va_start(ap, o);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fp(m, o, arg);
}

/* --- libarchive --- */
LAZY(lib_archive, ARCHIVE_SO, struct archive *, archive_read_new, (void), ())
LAZY(lib_archive, ARCHIVE_SO, int, archive_read_free, (struct archive * a), (a))
LAZY(lib_archive, ARCHIVE_SO, int, archive_read_support_filter_gzip, (struct archive * a), (a))
LAZY(lib_archive, ARCHIVE_SO, int, archive_read_support_filter_xz, (struct archive * a), (a))
LAZY(lib_archive, ARCHIVE_SO, int, archive_read_support_filter_zstd, (struct archive * a), (a))
LAZY(lib_archive, ARCHIVE_SO, int, archive_read_support_format_raw, (struct archive * a), (a))
LAZY(lib_archive, ARCHIVE_SO, int, archive_read_support_format_tar, (struct archive * a), (a))
LAZY(lib_archive, ARCHIVE_SO, int, archive_read_open,
     (struct archive * a, void *d, archive_open_callback *o, archive_read_callback *r,
      archive_close_callback *c),
     (a, d, o, r, c))
LAZY(lib_archive, ARCHIVE_SO, int, archive_read_next_header,
     (struct archive * a, struct archive_entry **e), (a, e))
LAZY(lib_archive, ARCHIVE_SO, la_ssize_t, archive_read_data,
     (struct archive * a, void *p, size_t n), (a, p, n))
LAZY(lib_archive, ARCHIVE_SO, int, archive_read_data_block,
     (struct archive * a, const void **p, size_t *n, la_int64_t *off), (a, p, n, off))
LAZY(lib_archive, ARCHIVE_SO, const char *, archive_error_string, (struct archive * a), (a))
LAZY(lib_archive, ARCHIVE_SO, time_t, archive_entry_atime, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, int, archive_entry_atime_is_set, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, long, archive_entry_atime_nsec, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, time_t, archive_entry_mtime, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, int, archive_entry_mtime_is_set, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, long, archive_entry_mtime_nsec, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, __LA_MODE_T, archive_entry_filetype, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, __LA_MODE_T, archive_entry_perm, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, la_int64_t, archive_entry_gid, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, la_int64_t, archive_entry_uid, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, la_int64_t, archive_entry_size, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, int, archive_entry_size_is_set, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, const char *, archive_entry_hardlink, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, const char *, archive_entry_pathname, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, const char *, archive_entry_symlink, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, int, archive_entry_xattr_reset, (struct archive_entry * e), (e))
LAZY(lib_archive, ARCHIVE_SO, int, archive_entry_xattr_next,
     (struct archive_entry * e, const char **n, const void **v, size_t *s), (e, n, v, s))

void archive_set_error(struct archive *a, int err, const char *fmt, ...)
{
    static void (*fp)(struct archive *, int, const char *, ...);
    if (!fp)
        fp = (void (*)(struct archive *, int, const char *, ...)) lazy_sym(&lib_archive, ARCHIVE_SO,
                                                                           "archive_set_error");
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fp(a, err, "%s", msg);
}
