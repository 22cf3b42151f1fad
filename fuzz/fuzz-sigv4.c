/* libFuzzer target for SigV4 parsing and verification. The input is split on
 * '\n' into:
 *   line 1  Authorization header value (empty: no header)
 *   line 2  X-Amz-Date header value (empty: no header)
 *   line 3  raw query string (empty: none)
 *   line 4  raw path (empty: "/")
 *   line 5+ extra headers as "name:value"
 * It runs sigv4_parse, then sigv4_verify with a fixed secret at the request's
 * own time, sigv4_canonical_request, and a sign → verify round trip: a request
 * re-signed with sigv4_authorization must verify. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "shared/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINES 16
#define SECRET    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define PAYLOAD   "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

static bool lists_header(const char *signed_headers, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = signed_headers; *p;) {
        size_t l = strcspn(p, ";");
        if (l == nl && strncmp(p, name, nl) == 0)
            return true;
        p += l;
        if (*p == ';')
            p++;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *buf = xmalloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    char *lines[MAX_LINES] = { 0 };
    size_t nlines = 0;
    for (char *p = buf; nlines < MAX_LINES;) {
        lines[nlines++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = 0;
        p = nl + 1;
    }
    sigv4_header hs[MAX_LINES + 3];
    size_t nh = 0;
    hs[nh++] = (sigv4_header){ "Host", "ecs.us-east-1.amazonaws.com" };
    if (nlines > 1 && *lines[1])
        hs[nh++] = (sigv4_header){ "X-Amz-Date", lines[1] };
    if (nlines > 0 && *lines[0])
        hs[nh++] = (sigv4_header){ "Authorization", lines[0] };
    for (size_t i = 4; i < nlines; i++) {
        char *colon = strchr(lines[i], ':');
        if (!colon)
            continue;
        *colon = 0;
        hs[nh++] = (sigv4_header){ lines[i], colon + 1 };
    }
    sigv4_request req = {
        .method = "POST",
        .path = nlines > 3 && *lines[3] ? lines[3] : "/",
        .query = nlines > 2 && *lines[2] ? lines[2] : NULL,
        .headers = hs,
        .nheaders = nh,
        .payload_hash = PAYLOAD,
    };

    sigv4_auth a;
    sk_err err = { 0 };
    if (sigv4_parse(&req, &a, &err) < 0) {
        if (err.code != SK_E_AUTH || !err.type || !err.msg)
            abort();
        sk_err_done(&err);
        char *cr = sigv4_canonical_request(&req, "host;x-amz-date");
        free(cr);
        free(buf);
        return 0;
    }
    if (!a.signed_headers || strlen(a.amz_date) != 16 || strlen(a.signature) == 0)
        abort();

    time_t t = 0;
    time_t now = parse_amz_date(a.amz_date, &t) == 0 ? t : 1700000000;
    if (sigv4_verify(&req, &a, SECRET, now, &err) < 0) {
        if (err.code != SK_E_AUTH || !err.type || !err.msg)
            abort();
        sk_err_done(&err);
    }
    char *cr = sigv4_canonical_request(&req, a.signed_headers);
    char *sts = sigv4_string_to_sign(a.amz_date, "20231114/us-east-1/ecs/aws4_request", cr);
    free(sts);
    free(cr);

    /* Round trip: re-sign the request in header form and verify it. Skipped
     * when the signature would cover the Authorization header itself, or when
     * the date cannot verify at all. */
    if (!a.presigned && parse_amz_date(a.amz_date, &t) == 0 &&
        strncmp(a.amz_date, a.date, 8) == 0 && !lists_header(a.signed_headers, "authorization")) {
        char *auth = sigv4_authorization(&req, a.access_key, SECRET, a.region, a.service,
                                         a.amz_date, a.signed_headers);
        for (size_t i = 0; i < nh; i++)
            if (strcasecmp(hs[i].name, "authorization") == 0) {
                hs[i].value = auth;
                break;
            }
        sigv4_auth b;
        if (sigv4_parse(&req, &b, &err) < 0)
            abort();
        if (sigv4_verify(&req, &b, SECRET, t, &err) < 0)
            abort();
        sigv4_auth_done(&b);
        free(auth);
    }
    sigv4_auth_done(&a);
    free(buf);
    return 0;
}
