/* Image reference parsing, following the grammar of distribution/reference:
 *
 *   reference        := name [ ":" tag ] [ "@" digest ]
 *   name             := [domain '/'] path-component ['/' path-component]*
 *   domain           := host [':' port-number]
 *   host             := domain-component ['.' domain-component]* | '[' ipv6 ']'
 *   domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
 *   path-component   := alpha-numeric [separator alpha-numeric]*
 *   alpha-numeric    := /[a-z0-9]+/
 *   separator        := /[_.]|__|[-]+/
 *   tag              := /[\w][\w.-]{0,127}/
 *   digest           := "sha256:" /[a-f0-9]{64}/   (the only algorithm we store)
 *
 * The first component is a domain when it contains '.' or ':', is
 * "localhost", or has upper-case letters; otherwise the name is on Docker Hub. */
#include <ctype.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "cas.h"
#include "image-internal.h"
#include "image.h"

#define NAME_TOTAL_MAX 255
#define TAG_MAX        128

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_word(char c)
{
    return is_alnum(c) || c == '_';
}

static bool valid_tag(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > TAG_MAX || !is_word(t[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_word(t[i]) && t[i] != '.' && t[i] != '-')
            return false;
    return true;
}

/* One path component: alnum runs joined by '.', '_', '__' or '-'+. */
static bool valid_path_component(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    while (i < n) {
        while (i < n && is_lower_alnum(s[i]))
            i++;
        if (i == n)
            break;
        size_t sep = i;
        if (s[i] == '.')
            i++;
        else if (s[i] == '_')
            i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
        else if (s[i] == '-')
            while (i < n && s[i] == '-')
                i++;
        else
            return false;
        if (i == sep || i >= n || !is_lower_alnum(s[i]))
            return false;
    }
    return true;
}

static bool valid_domain_component(const char *s, size_t n)
{
    if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}

static bool valid_port(const char *s, size_t n)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned) (s[i] - '0');
    }
    return v <= 65535;
}

bool img_domain_valid(const char *s, size_t n)
{
    size_t hostlen;
    if (n == 0)
        return false;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close == s + 1)
            return false;
        for (const char *p = s + 1; p < close; p++)
            if (!isxdigit((unsigned char) *p) && *p != ':')
                return false;
        hostlen = (size_t) (close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        hostlen = colon ? (size_t) (colon - s) : n;
        size_t start = 0;
        for (size_t i = 0; i <= hostlen; i++) {
            if (i == hostlen || s[i] == '.') {
                if (!valid_domain_component(s + start, i - start))
                    return false;
                start = i + 1;
            }
        }
    }
    if (hostlen == n)
        return true;
    if (s[hostlen] != ':')
        return false;
    return valid_port(s + hostlen + 1, n - hostlen - 1);
}

static int fail(sk_err *err, const char *ref, const char *why)
{
    return sk_err_set(err, SK_E_INVALID, "invalid reference format '%s': %s", ref, why);
}

int img_ref_parse(const char *s, img_ref *ret, sk_err *err)
{
    if (!s || !*s)
        return sk_err_set(err, SK_E_INVALID, "invalid reference format: empty reference");
    size_t len = strnlen(s, IMG_REF_MAX + 1);
    if (len > IMG_REF_MAX)
        return sk_err_set(err, SK_E_INVALID, "invalid reference format: longer than %d characters",
                          IMG_REF_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) s[i] <= ' ' || (unsigned char) s[i] >= 0x7f)
            return sk_err_set(err, SK_E_INVALID,
                              "invalid reference format: unexpected character at offset %zu", i);

    _cleanup_free_ char *copy = xstrdup(s);
    _cleanup_free_ char *digest = NULL, *tag = NULL, *registry = NULL, *repo = NULL;

    char *at = strchr(copy, '@');
    if (at) {
        *at = 0;
        const char *d = at + 1;
        if (!startswith(d, "sha256:")) {
            if (strchr(d, ':'))
                return fail(err, s, "unsupported digest algorithm (only sha256)");
            return fail(err, s, "invalid digest");
        }
        if (!cas_digest_valid(d))
            return fail(err, s, "invalid digest (expected sha256 and 64 lower-case hex digits)");
        digest = xstrdup(d);
    }

    char *name = copy;
    char *slash = strrchr(name, '/');
    char *colon = strrchr(name, ':');
    if (colon && (!slash || colon > slash)) {
        *colon = 0;
        if (!valid_tag(colon + 1))
            return fail(err, s, "invalid tag");
        tag = xstrdup(colon + 1);
    }
    if (!*name)
        return fail(err, s, "missing repository name");

    const char *path = name;
    char *first = strchr(name, '/');
    if (first) {
        size_t n = (size_t) (first - name);
        bool upper = false;
        for (size_t i = 0; i < n; i++)
            upper |= (name[i] >= 'A' && name[i] <= 'Z');
        if (memchr(name, '.', n) || memchr(name, ':', n) ||
            (n == 9 && !strncmp(name, "localhost", 9)) || upper || name[0] == '[') {
            if (!img_domain_valid(name, n))
                return fail(err, s, "invalid registry host");
            registry = xstrndup(name, n);
            path = first + 1;
        }
    }

    for (const char *p = path; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            return fail(err, s, "repository name must be lowercase");
    for (const char *p = path;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t) (e - p) : strlen(p);
        if (!valid_path_component(p, n))
            return fail(err, s, "invalid repository name");
        if (!e)
            break;
        p = e + 1;
    }

    bool hub = !registry || streq(registry, "docker.io") || streq(registry, "index.docker.io") ||
               streq(registry, "registry-1.docker.io");
    if (hub) {
        free(registry);
        registry = xstrdup(IMG_DOCKER_HUB_REGISTRY);
        repo = strchr(path, '/') ? xstrdup(path) : xasprintf("library/%s", path);
    } else
        repo = xstrdup(path);
    /* Measured on the normalised name, as distribution does ("docker.io/library/x"). */
    if (strlen(hub ? "docker.io" : registry) + 1 + strlen(repo) > NAME_TOTAL_MAX)
        return fail(err, s, "repository name is longer than 255 characters");
    if (!tag && !digest)
        tag = xstrdup("latest");

    *ret = (img_ref){
        .registry = TAKE_PTR(registry),
        .repository = TAKE_PTR(repo),
        .tag = TAKE_PTR(tag),
        .digest = TAKE_PTR(digest),
    };
    return 0;
}

void img_ref_done(img_ref *r)
{
    if (!r)
        return;
    free(r->registry);
    free(r->repository);
    free(r->tag);
    free(r->digest);
    *r = (img_ref){ 0 };
}

char *img_ref_string(const img_ref *r)
{
    return xasprintf("%s/%s%s%s%s%s", r->registry, r->repository, r->tag ? ":" : "",
                     r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "");
}
