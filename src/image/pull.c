/* Registry client: pulls an image through the OCI distribution API.
 *
 * Flow: GET /v2/ (learn the auth scheme) → authenticate (Basic, or a bearer
 * token per the distribution token spec) → GET the manifest (resolving an
 * index to the requested platform) → fetch the config → fetch the missing
 * layers in parallel on one curl multi handle, streaming each into a
 * cas_writer that verifies its digest → unpack each layer once → write the
 * image record. Runs single-threaded; see img_pull() in image.h about forks. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "config.h"
#include "image-internal.h"
#include "image.h"
#include "shared/digest.h"
#include "shared/jsonutil.h"

#define DEFAULT_PARALLEL  4
#define MAX_PARALLEL      16
#define DEFAULT_MAX_BLOB  (8ULL << 30)
#define ERROR_BODY_MAX    (64 * 1024)
#define HEADER_VALUE_MAX  IMG_AUTH_HEADER_MAX
#define BLOB_ATTEMPTS     3
#define REQUEST_TIMEOUT_S 300L
#define ACCEPT_MANIFESTS                                                             \
    "Accept: " IMG_MT_OCI_MANIFEST ", " IMG_MT_OCI_INDEX ", " IMG_MT_DOCKER_MANIFEST \
    ", " IMG_MT_DOCKER_LIST

unsigned img_debug_peak_transfers;

DEFINE_CLEANUP_FUNC(img_manifest, img_manifest_free);

/* ---- helpers ---- */

static bool is_loopback(const char *host, size_t n)
{
    if ((n == 9 && !strncasecmp(host, "localhost", 9)) || (n == 5 && !memcmp(host, "[::1]", 5)))
        return true;
    /* 127.0.0.0/8 in dotted-quad form */
    unsigned parts = 0, val = 0, digits = 0, first = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || host[i] == '.') {
            if (digits == 0 || val > 255)
                return false;
            if (parts == 0)
                first = val;
            parts++;
            val = digits = 0;
        } else if (host[i] >= '0' && host[i] <= '9' && digits < 4) {
            val = val * 10 + (unsigned) (host[i] - '0');
            digits++;
        } else
            return false;
    }
    return parts == 4 && first == 127;
}

/* Length of the host part of "host[:port]". */
static size_t host_len(const char *host)
{
    if (host[0] == '[') {
        const char *e = strchr(host, ']');
        return e ? (size_t) (e - host) + 1 : strlen(host);
    }
    return strcspn(host, ":");
}

bool img_registry_insecure(const char *host, const char *insecure_list)
{
    size_t hl = host_len(host);
    if (is_loopback(host, hl))
        return true;
    for (const char *p = insecure_list; p && *p;) {
        const char *e = strchrnul(p, ',');
        const char *a = p, *b = e;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        size_t n = (size_t) (b - a);
        if (n && ((n == strlen(host) && !strncasecmp(a, host, n)) ||
                  (n == hl && !strncasecmp(a, host, n))))
            return true;
        p = *e ? e + 1 : e;
    }
    return false;
}

static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s < 0x21 || (unsigned char) *s > 0x7e)
            return false;
    return true;
}

/* ---- HTTP plumbing ---- */

typedef struct http_resp {
    long status;
    sk_buf body;
    bool truncated; /* the body exceeded its cap */
    sk_buf www_auth;
    char *content_type;
    char errbuf[CURL_ERROR_SIZE];
} http_resp;

static void http_resp_init(http_resp *r, size_t cap)
{
    *r = (http_resp){ 0 };
    sk_buf_init(&r->body, cap);
    sk_buf_init(&r->www_auth, HEADER_VALUE_MAX);
}

static void http_resp_done(http_resp *r)
{
    sk_buf_done(&r->body);
    sk_buf_done(&r->www_auth);
    free(r->content_type);
    r->content_type = NULL;
}

/* Collects the headers we use; a new status line (redirects, 100-continue)
 * resets them so that only the final response's headers remain. */
static void header_line(const char *p, size_t n, sk_buf *www_auth, char **content_type)
{
    if (n >= 5 && !strncmp(p, "HTTP/", 5)) {
        sk_buf_reset(www_auth);
        free(*content_type);
        *content_type = NULL;
        return;
    }
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return;
    size_t nlen = (size_t) (colon - p);
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t) (end - v);
    if (nlen == 16 && !strncasecmp(p, "WWW-Authenticate", 16)) {
        if (www_auth->len)
            (void) sk_buf_puts(www_auth, ", ");
        (void) sk_buf_append(www_auth, v, vlen);
    } else if (nlen == 12 && !strncasecmp(p, "Content-Type", 12) && vlen < 256) {
        free(*content_type);
        *content_type = xstrndup(v, vlen);
    }
}

static size_t resp_header_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    http_resp *r = ud;
    header_line(p, size * nmemb, &r->www_auth, &r->content_type);
    return size * nmemb;
}

static size_t resp_body_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    http_resp *r = ud;
    if (sk_buf_append(&r->body, p, size * nmemb) < 0) {
        r->truncated = true;
        return 0;
    }
    return size * nmemb;
}

typedef struct puller {
    img_store *s;
    const img_pull_opts *o;
    img_ref ref;
    char *name; /* the repository as the user wrote it, for messages */
    char *host; /* host[:port] contacted */
    char *base; /* scheme://host */
    bool insecure;
    char *auth; /* full "Authorization: ..." header, or NULL */
    char *token_scope;
    bool basic_tried;
    unsigned parallel;
    uint64_t max_blob;
} puller;

/* libcurl's own sockets lack SOCK_CLOEXEC. */
static curl_socket_t open_socket_cb(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static CURL *easy_new(puller *p, const char *url)
{
    CURL *h = curl_easy_init();
    if (!h)
        oom();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    /* Never downgrade a TLS registry to plain HTTP through a redirect. */
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, p->insecure ? "http,https" : "https");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "skiff/" SKIFF_VERSION);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
    return h;
}

/* One request with the current credentials. Returns 0 with resp filled (any
 * status), or < 0 on transport failure (resp->errbuf says why). */
static int http_get_once(puller *p, const char *url, const char *accept, http_resp *resp)
{
    CURL *h = easy_new(p, url);
    struct curl_slist *hdrs = NULL;
    if (p->auth)
        hdrs = curl_slist_append(hdrs, p->auth);
    if (accept)
        hdrs = curl_slist_append(hdrs, accept);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, resp->errbuf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, resp_header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, resp_body_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    sk_buf_reset(&resp->body);
    resp->truncated = false;
    resp->errbuf[0] = 0;
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && resp->truncated)) {
        if (!resp->errbuf[0])
            snprintf(resp->errbuf, sizeof(resp->errbuf), "%s", curl_easy_strerror(rc));
        return -1;
    }
    return 0;
}

/* "code: message" of the first error in a distribution error body. */
static char *registry_error(const sk_buf *body)
{
    if (!body->len)
        return NULL;
    _cleanup_json_ json_t *j = json_loadb(body->data, body->len, 0, NULL);
    const json_t *e = json_array_get(js_arr(j, "errors"), 0);
    const char *code = js_str(e, "code"), *msg = js_str(e, "message");
    if (!code)
        return NULL;
    char *s = xasprintf("%s%s%s", code, msg ? ": " : "", msg ? msg : "");
    /* As distribution renders its error codes: "MANIFEST_UNKNOWN" → "manifest unknown". */
    for (char *c = s; *c && *c != ':'; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char) (*c - 'A' + 'a');
        else if (*c == '_')
            *c = ' ';
    }
    for (char *c = s; *c; c++)
        if ((unsigned char) *c < 0x20)
            *c = ' ';
    return s;
}

static int access_denied(puller *p, const http_resp *resp, sk_err *err)
{
    _cleanup_free_ char *detail = registry_error(&resp->body);
    if (!detail && resp->www_auth.len) {
        img_auth_challenge ch = { 0 };
        if (img_auth_parse(resp->www_auth.data, resp->www_auth.len, &ch, NULL) >= 0 && ch.error)
            detail = xasprintf("%s: authorization failed", ch.error);
        img_auth_challenge_done(&ch);
    }
    return sk_err_set(err, SK_E_AUTH,
                      "pull access denied for %s, repository does not exist or may require "
                      "authorization: server message: %s",
                      p->name, detail ? detail : "authorization failed");
}

static int unexpected_status(puller *p, const char *url, const http_resp *resp, sk_err *err)
{
    _cleanup_free_ char *detail = registry_error(&resp->body);
    if (resp->status == 429)
        return sk_err_set(err, SK_E_UNAVAILABLE, "failed to resolve reference \"%s\": %s",
                          p->o->ref, detail ? detail : "toomanyrequests: rate limit exceeded");
    return sk_err_set(err, SK_E_UNAVAILABLE,
                      "failed to resolve reference \"%s\": unexpected status from GET request to "
                      "%s: %ld%s%s",
                      p->o->ref, url, resp->status, detail ? ": " : "", detail ? detail : "");
}

/* ---- authentication ---- */

static char *basic_header(const char *user, const char *pass)
{
    _cleanup_free_ char *raw = xasprintf("%s:%s", user, pass ? pass : "");
    _cleanup_free_ char *b64 = base64_encode(raw, strlen(raw));
    return xasprintf("Authorization: Basic %s", b64);
}

static void append_query(sk_buf *b, const char *key, const char *value, bool *first)
{
    _cleanup_free_ char *v = uri_encode(value, strlen(value), false);
    (void) sk_buf_printf(b, "%s%s=%s", *first ? "" : "&", key, v);
    *first = false;
}

/* GETs a bearer token from the challenge's realm. */
static int fetch_token(puller *p, const img_auth_challenge *ch, const char *scope, sk_err *err)
{
    const char *realm = ch->realm;
    if (!realm || !(startswith(realm, "https://") || startswith(realm, "http://")) ||
        !header_safe(realm))
        return sk_err_set(err, SK_E_UNAVAILABLE,
                          "failed to resolve reference \"%s\": registry sent an invalid token "
                          "realm",
                          p->o->ref);
    if (startswith(realm, "http://") && !p->insecure && p->o->username)
        return sk_err_set(err, SK_E_AUTH,
                          "failed to resolve reference \"%s\": refusing to send credentials to "
                          "plain-HTTP token realm '%s'",
                          p->o->ref, realm);

    _cleanup_buf_ sk_buf url;
    sk_buf_init(&url, 16384);
    (void) sk_buf_puts(&url, realm);
    (void) sk_buf_putc(&url, strchr(realm, '?') ? '&' : '?');
    bool first = true;
    if (ch->service)
        append_query(&url, "service", ch->service, &first);
    /* Several scopes may be space-separated; each is its own parameter. */
    _cleanup_free_ char *scopes = xstrdup(scope);
    char *save = NULL;
    for (char *sc = strtok_r(scopes, " ", &save); sc; sc = strtok_r(NULL, " ", &save))
        append_query(&url, "scope", sc, &first);
    if (url.len >= url.cap - 1)
        return sk_err_set(err, SK_E_LIMIT, "token request URL too long");

    _cleanup_(http_resp_done) http_resp resp;
    http_resp_init(&resp, IMG_TOKEN_MAX);
    CURL *h = easy_new(p, url.data);
    /* The token service may live on another host: curl sends these Basic
     * credentials to the realm only, not across redirects to other hosts. */
    if (p->o->username) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, p->o->username);
        curl_easy_setopt(h, CURLOPT_PASSWORD, p->o->password ? p->o->password : "");
    }
    curl_easy_setopt(h, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, resp.errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, resp_body_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK)
        return sk_err_set(err, SK_E_UNAVAILABLE,
                          "failed to resolve reference \"%s\": failed to fetch auth token from "
                          "%s: %s",
                          p->o->ref, realm, resp.errbuf[0] ? resp.errbuf : curl_easy_strerror(rc));
    if (resp.status == 401 || resp.status == 403)
        return access_denied(p, &resp, err);
    if (resp.status != 200)
        return sk_err_set(err, SK_E_UNAVAILABLE,
                          "failed to resolve reference \"%s\": unexpected status %ld from token "
                          "service %s",
                          p->o->ref, resp.status, realm);
    _cleanup_json_ json_t *j = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    const char *token = js_str(j, "token");
    if (strempty(token))
        token = js_str(j, "access_token");
    if (strempty(token) || !header_safe(token))
        return sk_err_set(err, SK_E_UNAVAILABLE,
                          "failed to resolve reference \"%s\": token service returned no valid "
                          "token",
                          p->o->ref);
    free(p->auth);
    p->auth = xasprintf("Authorization: Bearer %s", token);
    free_and_strdup(&p->token_scope, scope);
    return 0;
}

/* Reacts to a 401 challenge. Returns 1 when new credentials were set up and
 * the request should be retried, 0 when there is nothing new to try, < 0 on
 * error. */
static int authenticate(puller *p, const sk_buf *www_auth, sk_err *err)
{
    img_auth_challenge ch = { 0 };
    if (!www_auth->len || img_auth_parse(www_auth->data, www_auth->len, &ch, NULL) < 0)
        return 0;
    int r = 0;
    if (streq(ch.scheme, "basic")) {
        if (p->o->username && !p->basic_tried) {
            free(p->auth);
            p->auth = basic_header(p->o->username, p->o->password);
            p->basic_tried = true;
            r = 1;
        }
    } else {
        _cleanup_free_ char *scope =
                ch.scope ? xstrdup(ch.scope) : xasprintf("repository:%s:pull", p->ref.repository);
        if (!p->token_scope || !streq(p->token_scope, scope)) {
            r = fetch_token(p, &ch, scope, err);
            if (r >= 0)
                r = 1;
        }
    }
    img_auth_challenge_done(&ch);
    return r;
}

/* GET with one authentication round on 401. Transport failures are
 * reported as "failed to resolve reference". */
static int registry_get(puller *p, const char *url, const char *accept, http_resp *resp,
                        sk_err *err)
{
    for (int attempt = 0;; attempt++) {
        if (http_get_once(p, url, accept, resp) < 0)
            return sk_err_set(err, SK_E_UNAVAILABLE,
                              "failed to resolve reference \"%s\": failed to do request: GET %s: "
                              "%s",
                              p->o->ref, url, resp->errbuf);
        if (resp->status != 401 || attempt >= 2)
            return 0;
        int r = authenticate(p, &resp->www_auth, err);
        if (r < 0)
            return r;
        if (r == 0)
            return 0;
    }
}

/* ---- manifests ---- */

static int fetch_manifest(puller *p, const char *what, const char *expected, char **ret_data,
                          size_t *ret_len, char **ret_ct, sk_err *err)
{
    _cleanup_free_ char *url = xasprintf("%s/v2/%s/manifests/%s", p->base, p->ref.repository, what);
    _cleanup_(http_resp_done) http_resp resp;
    http_resp_init(&resp, IMG_MANIFEST_MAX);
    int r = registry_get(p, url, ACCEPT_MANIFESTS, &resp, err);
    if (r < 0)
        return r;
    if (resp.status == 401 || resp.status == 403)
        return access_denied(p, &resp, err);
    if (resp.status == 404) {
        _cleanup_free_ char *detail = registry_error(&resp.body);
        if (detail && startswith(detail, "name unknown"))
            return sk_err_set(err, SK_E_NOT_FOUND,
                              "pull access denied for %s, repository does not exist or may "
                              "require authorization: server message: %s",
                              p->name, detail);
        return sk_err_set(err, SK_E_NOT_FOUND, "manifest for %s not found: %s", p->o->ref,
                          detail ? detail : "manifest unknown");
    }
    if (resp.status != 200)
        return unexpected_status(p, url, &resp, err);
    if (resp.truncated)
        return sk_err_set(err, SK_E_LIMIT,
                          "failed to resolve reference \"%s\": manifest larger than %d bytes",
                          p->o->ref, IMG_MANIFEST_MAX);
    if (expected) {
        char hex[SHA256_HEX_LEN + 1];
        sha256_hex(resp.body.data, resp.body.len, hex);
        if (!streq(hex, expected + 7))
            return sk_err_typed(err, SK_E_INVALID, "DIGEST_INVALID",
                                "manifest for %s: digest mismatch: expected '%s', got "
                                "'sha256:%s'",
                                p->o->ref, expected, hex);
    }
    *ret_len = resp.body.len;
    *ret_data = sk_buf_steal(&resp.body);
    *ret_ct = TAKE_PTR(resp.content_type);
    return 0;
}

/* ---- blobs ---- */

typedef struct xfer {
    puller *p;
    const img_descriptor *d;
    CURL *h;
    struct curl_slist *hdrs;
    cas_writer *w;
    uint64_t got;
    bool overflow;
    sk_err werr;    /* from the cas writer */
    sk_buf errbody; /* non-2xx body */
    sk_buf www_auth;
    char *content_type;
    unsigned attempts;
    bool reauthed;
    char errbuf[CURL_ERROR_SIZE];
} xfer;

static size_t xfer_header_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    header_line(p, size * nmemb, &x->www_auth, &x->content_type);
    return size * nmemb;
}

static size_t xfer_write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    if (status / 100 != 2) {
        (void) sk_buf_append(&x->errbody, ptr, MIN(n, x->errbody.cap - x->errbody.len));
        return n;
    }
    if (n > x->d->size - x->got) {
        x->overflow = true;
        return 0;
    }
    if (cas_writer_write(x->w, ptr, n, &x->werr) < 0)
        return 0;
    x->got += n;
    return n;
}

static void xfer_reset(xfer *x)
{
    if (x->h)
        curl_easy_cleanup(x->h);
    x->h = NULL;
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    cas_writer_abort(x->w);
    x->w = NULL;
    x->got = 0;
    x->overflow = false;
    sk_err_done(&x->werr);
    sk_buf_reset(&x->errbody);
    sk_buf_reset(&x->www_auth);
    free(x->content_type);
    x->content_type = NULL;
}

static int xfer_start(xfer *x, CURLM *multi, sk_err *err)
{
    puller *p = x->p;
    xfer_reset(x);
    int r = cas_writer_new(p->s->cas, &x->w, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *url =
            xasprintf("%s/v2/%s/blobs/%s", p->base, p->ref.repository, x->d->digest);
    x->h = easy_new(p, url);
    if (p->auth)
        x->hdrs = curl_slist_append(x->hdrs, p->auth);
    curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, xfer_header_cb);
    curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, xfer_write_cb);
    curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
    x->errbuf[0] = 0;
    x->attempts++;
    if (curl_multi_add_handle(multi, x->h) != CURLM_OK)
        return sk_err_set(err, SK_E_INTERNAL, "curl_multi_add_handle failed");
    return 0;
}

/* Evaluates a finished transfer: 0 committed, 1 retry, < 0 fatal. */
static int xfer_finish(xfer *x, CURLcode rc, sk_err *err)
{
    puller *p = x->p;
    const char *dg = x->d->digest;
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);

    if (x->overflow)
        return sk_err_set(err, SK_E_INVALID,
                          "failed to copy blob %s: registry sent more than the %" PRIu64
                          " bytes its manifest declares",
                          dg, x->d->size);
    if (x->werr.code) {
        sk_err_move(err, &x->werr);
        return sk_err_wrap(err, "failed to copy blob %s", dg);
    }
    if (rc != CURLE_OK) {
        if (x->attempts < BLOB_ATTEMPTS)
            return 1;
        if (rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR)
            return sk_err_set(err, SK_E_UNAVAILABLE, "failed to copy blob %s: unexpected EOF", dg);
        return sk_err_set(err, SK_E_UNAVAILABLE, "failed to copy blob %s: %s", dg,
                          x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    }
    if (status == 401 && !x->reauthed) {
        /* Tokens can expire during long pulls: renew once. */
        x->reauthed = true;
        free(p->token_scope);
        p->token_scope = NULL;
        p->basic_tried = false;
        int r = authenticate(p, &x->www_auth, err);
        if (r < 0)
            return r;
        x->attempts = 0;
        return 1;
    }
    if (status == 401 || status == 403) {
        http_resp fake = { .status = status, .body = x->errbody, .www_auth = x->www_auth };
        return access_denied(p, &fake, err);
    }
    if ((status >= 500 || status == 429 || status == 408) && x->attempts < BLOB_ATTEMPTS)
        return 1;
    if (status != 200) {
        _cleanup_free_ char *detail = registry_error(&x->errbody);
        return sk_err_set(err, status == 404 ? SK_E_NOT_FOUND : SK_E_UNAVAILABLE,
                          "failed to copy blob %s: unexpected status %ld%s%s", dg, status,
                          detail ? ": " : "", detail ? detail : "");
    }
    if (x->got < x->d->size) {
        if (x->attempts < BLOB_ATTEMPTS)
            return 1;
        return sk_err_set(err, SK_E_UNAVAILABLE,
                          "failed to copy blob %s: unexpected EOF (%" PRIu64 " of %" PRIu64
                          " bytes)",
                          dg, x->got, x->d->size);
    }
    cas_writer *w = TAKE_PTR(x->w);
    int r = cas_writer_commit(w, dg, NULL, err);
    if (r < 0)
        return sk_err_wrap(err, "failed to copy blob %s", dg);
    return 0;
}

/* Downloads the given blobs into the content store, up to p->parallel at a
 * time. Every blob is digest-verified before it becomes visible. */
static int fetch_blobs(puller *p, const img_descriptor *const *descs, size_t n, sk_err *err)
{
    if (n == 0)
        return 0;
    CURLM *multi = curl_multi_init();
    if (!multi)
        oom();
    xfer *xs = xcalloc(n, sizeof(xfer));
    for (size_t i = 0; i < n; i++) {
        xs[i].p = p;
        xs[i].d = descs[i];
        sk_buf_init(&xs[i].errbody, ERROR_BODY_MAX);
        sk_buf_init(&xs[i].www_auth, HEADER_VALUE_MAX);
    }
    size_t next = 0, active = 0, done = 0;
    int r = 0;

    while (done < n) {
        while (active < p->parallel && next < n) {
            r = xfer_start(&xs[next], multi, err);
            if (r < 0)
                goto out;
            next++;
            active++;
        }
        img_debug_peak_transfers = MAX(img_debug_peak_transfers, (unsigned) active);
        int running = 0;
        CURLMcode mc = curl_multi_perform(multi, &running);
        if (mc != CURLM_OK) {
            r = sk_err_set(err, SK_E_INTERNAL, "curl: %s", curl_multi_strerror(mc));
            goto out;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            xfer *x = NULL;
            CURLcode rc = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &x);
            curl_multi_remove_handle(multi, msg->easy_handle);
            active--;
            int q = xfer_finish(x, rc, err);
            if (q < 0) {
                r = q;
                goto out;
            }
            if (q == 1) {
                r = xfer_start(x, multi, err);
                if (r < 0)
                    goto out;
                active++;
                continue;
            }
            xfer_reset(x);
            done++;
        }
        if (done < n && running > 0) {
            mc = curl_multi_poll(multi, NULL, 0, 1000, NULL);
            if (mc != CURLM_OK) {
                r = sk_err_set(err, SK_E_INTERNAL, "curl: %s", curl_multi_strerror(mc));
                goto out;
            }
        }
    }
out:
    for (size_t i = 0; i < n; i++) {
        if (xs[i].h)
            curl_multi_remove_handle(multi, xs[i].h);
        xfer_reset(&xs[i]);
        sk_buf_done(&xs[i].errbody);
        sk_buf_done(&xs[i].www_auth);
    }
    free(xs);
    curl_multi_cleanup(multi);
    return r;
}

/* ---- the pull ---- */

static void puller_done(puller *p)
{
    img_ref_done(&p->ref);
    free(p->name);
    free(p->host);
    free(p->base);
    free(p->auth);
    free(p->token_scope);
}

/* The repository part of the reference as written ("busybox" for
 * "busybox:latest"). */
static char *given_name(const char *ref)
{
    char *s = xstrdup(ref);
    char *at = strchr(s, '@');
    if (at)
        *at = 0;
    char *slash = strrchr(s, '/'), *colon = strrchr(s, ':');
    if (colon && (!slash || colon > slash))
        *colon = 0;
    return s;
}

static void ensure_curl(void)
{
    static bool done;
    if (!done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        done = true;
    }
}

static bool record_complete(img_store *s, const char *ref)
{
    img_image *img = NULL;
    if (img_lookup(s, ref, &img, NULL) < 0)
        return false;
    bool ok = cas_has(s->cas, img->manifest_digest) && cas_has(s->cas, img->config_digest);
    img_image_free(img);
    return ok;
}

static int pull_locked(puller *p, sk_err *err)
{
    img_store *s = p->s;
    const img_pull_opts *o = p->o;

    /* Ping: learns the auth scheme; a 401 here triggers authentication. */
    _cleanup_free_ char *ping = xasprintf("%s/v2/", p->base);
    {
        _cleanup_(http_resp_done) http_resp resp;
        http_resp_init(&resp, ERROR_BODY_MAX);
        int r = registry_get(p, ping, NULL, &resp, err);
        if (r < 0)
            return r;
    }

    _cleanup_free_ char *data = NULL, *ct = NULL, *index_digest = NULL;
    size_t len = 0;
    const char *what = p->ref.digest ? p->ref.digest : p->ref.tag;
    int r = fetch_manifest(p, what, p->ref.digest, &data, &len, &ct, err);
    if (r < 0)
        return r;
    img_manifest *m = NULL;
    r = img_manifest_parse(data, len, ct, &m, err);
    if (r < 0)
        return sk_err_wrap(err, "failed to resolve reference \"%s\"", o->ref);
    _cleanup_(img_manifest_freep) img_manifest *manifest = m;
    char mdigest[CAS_DIGEST_MAX];

    if (manifest->kind == IMG_MANIFEST_INDEX) {
        r = cas_put(s->cas, data, len, p->ref.digest, mdigest, err);
        if (r < 0)
            return sk_err_wrap(err, "store index of %s", o->ref);
        index_digest = xstrdup(mdigest);
        const img_descriptor *d = img_manifest_select(manifest, o->os, o->arch);
        if (!d)
            return sk_err_set(err, SK_E_NOT_FOUND,
                              "no matching manifest for %s/%s in the manifest list entries of %s",
                              o->os ? o->os : "linux", o->arch ? o->arch : "amd64", o->ref);
        if (d->size > IMG_MANIFEST_MAX)
            return sk_err_set(err, SK_E_LIMIT, "manifest for %s larger than %d bytes", o->ref,
                              IMG_MANIFEST_MAX);
        _cleanup_free_ char *child = xstrdup(d->digest);
        free(data);
        free(ct);
        data = ct = NULL;
        r = fetch_manifest(p, child, child, &data, &len, &ct, err);
        if (r < 0)
            return r;
        img_manifest *cm = NULL;
        r = img_manifest_parse(data, len, ct, &cm, err);
        if (r < 0)
            return sk_err_wrap(err, "failed to resolve reference \"%s\"", o->ref);
        img_manifest_free(manifest);
        manifest = cm;
        if (manifest->kind != IMG_MANIFEST_IMAGE)
            return sk_err_set(err, SK_E_INVALID,
                              "failed to resolve reference \"%s\": nested manifest index", o->ref);
        r = cas_put(s->cas, data, len, child, mdigest, err);
    } else
        r = cas_put(s->cas, data, len, p->ref.digest, mdigest, err);
    if (r < 0)
        return sk_err_wrap(err, "store manifest of %s", o->ref);

    /* Config. */
    const img_descriptor *cfgd = &manifest->config;
    if (cfgd->size > IMG_CONFIG_MAX)
        return sk_err_set(err, SK_E_LIMIT, "image config of %s larger than %d bytes", o->ref,
                          IMG_CONFIG_MAX);
    if (!cas_has(s->cas, cfgd->digest)) {
        const img_descriptor *one[] = { cfgd };
        r = fetch_blobs(p, one, 1, err);
        if (r < 0)
            return r;
    }
    _cleanup_free_ char *cfgdata = NULL;
    size_t cfglen = 0;
    r = cas_get(s->cas, cfgd->digest, IMG_CONFIG_MAX, &cfgdata, &cfglen, err);
    if (r < 0)
        return sk_err_wrap(err, "read image config of %s", o->ref);
    _cleanup_(img_config_done) img_config cfg = { 0 };
    r = img_config_parse(cfgdata, cfglen, &cfg, err);
    if (r < 0)
        return sk_err_wrap(err, "image %s", o->ref);
    if (cfg.n_diff_ids != manifest->nlayers)
        return sk_err_set(err, SK_E_INVALID, "image %s: config lists %zu layers, manifest %zu",
                          o->ref, cfg.n_diff_ids, manifest->nlayers);

    /* Layers: download what is neither unpacked nor stored, once per digest. */
    uint64_t total = 0;
    const img_descriptor **need = xcalloc(manifest->nlayers + 1, sizeof(*need));
    size_t nneed = 0;
    for (size_t i = 0; i < manifest->nlayers; i++) {
        const img_descriptor *d = &manifest->layers[i];
        total += d->size;
        if (d->size > p->max_blob) {
            free(need);
            return sk_err_set(err, SK_E_LIMIT, "layer %s of %s is larger than %" PRIu64 " bytes",
                              d->digest, o->ref, p->max_blob);
        }
        if (img_layer_present(s, cfg.diff_ids[i]) || cas_has(s->cas, d->digest))
            continue;
        bool dup = false;
        for (size_t j = 0; j < nneed; j++)
            dup |= streq(need[j]->digest, d->digest);
        if (!dup)
            need[nneed++] = d;
    }
    r = fetch_blobs(p, need, nneed, err);
    free(need);
    if (r < 0)
        return r;
    for (size_t i = 0; i < manifest->nlayers; i++) {
        r = img_layer_ensure(s, manifest->layers[i].digest, cfg.diff_ids[i], err);
        if (r < 0)
            return sk_err_wrap(err, "image %s", o->ref);
    }

    /* Record. */
    usec_t now = now_realtime();
    _cleanup_json_ json_t *rec = json_object();
    js_set_str(rec, "ref", o->ref);
    _cleanup_free_ char *canonical = img_ref_string(&p->ref);
    js_set_str(rec, "resolved", canonical);
    js_set_str(rec, "index_digest", index_digest);
    js_set_str(rec, "manifest_digest", mdigest);
    js_set_str(rec, "config_digest", cfgd->digest);
    js_set_str(rec, "os", cfg.os);
    js_set_str(rec, "architecture", cfg.arch);
    json_t *layers = js_ensure_arr(rec, "layers");
    for (size_t i = 0; i < manifest->nlayers; i++) {
        json_t *l = json_object();
        js_set_str(l, "digest", manifest->layers[i].digest);
        js_set_str(l, "diff_id", cfg.diff_ids[i]);
        js_set_int(l, "size", (int64_t) manifest->layers[i].size);
        json_array_append_new(layers, l);
    }
    js_set(rec, "config", json_incref(cfg.config));
    js_set_int(rec, "size", (int64_t) total);
    js_set_int(rec, "pulled_at", (int64_t) now);
    js_set_int(rec, "last_used", (int64_t) now);
    return img_record_write(s, o->ref, rec, err);
}

int img_pull(img_store *s, const img_pull_opts *o, sk_err *err)
{
    if (!o || strempty(o->ref))
        return sk_err_set(err, SK_E_INVALID, "invalid reference format: empty reference");
    _cleanup_(puller_done) puller p = { .s = s, .o = o };
    int r = img_ref_parse(o->ref, &p.ref, err);
    if (r < 0)
        return r;
    p.name = given_name(o->ref);
    p.parallel = o->parallel ? MIN(o->parallel, (unsigned) MAX_PARALLEL) : DEFAULT_PARALLEL;
    p.max_blob = o->max_blob_size ? o->max_blob_size : DEFAULT_MAX_BLOB;

    const char *host =
            o->rewrite_host ? o->rewrite_host(o->rewrite_userdata, p.ref.registry) : NULL;
    if (!host)
        host = p.ref.registry;
    if (!img_domain_valid(host, strlen(host)))
        return sk_err_set(err, SK_E_INVALID, "invalid registry host '%s' for %s", host, o->ref);
    p.host = xstrdup(host);
    p.insecure = img_registry_insecure(p.host, o->insecure_registries) ||
                 img_registry_insecure(p.ref.registry, o->insecure_registries);
    p.base = xasprintf("%s://%s", p.insecure ? "http" : "https", p.host);
    if (o->username && strchr(o->username, ':'))
        return sk_err_set(err, SK_E_INVALID, "registry username must not contain ':'");

    img_debug_peak_transfers = 0;
    _cleanup_close_ int lock_fd = -EBADF;
    r = img_store_lock(s, LOCK_SH, &lock_fd);
    if (r < 0)
        return sk_err_sys(err, r, "lock image store");
    if (p.ref.digest && record_complete(s, o->ref))
        return 0;
    ensure_curl();
    return pull_locked(&p, err);
}
