/* Pagination tokens: opaque to clients, authenticated with a per-database key
 * so that a forged or truncated token is rejected before it reaches a query. */
#include <inttypes.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "logs-internal.h"
#include "shared/digest.h"

#define MAC_HEX 32

static void token_mac(const uint8_t key[LOGS_TOKEN_KEY_LEN], const char *prefix, const char *scope,
                      const void *payload, size_t len, char out[MAC_HEX + 1])
{
    size_t pl = strlen(prefix), sl = strlen(scope);
    size_t n = pl + 1 + sl + 1 + len;
    _cleanup_free_ uint8_t *msg = xmalloc(n);
    memcpy(msg, prefix, pl);
    msg[pl] = 0;
    memcpy(msg + pl + 1, scope, sl);
    msg[pl + 1 + sl] = 0;
    if (len)
        memcpy(msg + pl + sl + 2, payload, len);
    uint8_t mac[SHA256_LEN];
    hmac_sha256(key, LOGS_TOKEN_KEY_LEN, msg, n, mac);
    hex_encode(mac, MAC_HEX / 2, out);
}

char *logs_token_encode(const uint8_t key[LOGS_TOKEN_KEY_LEN], const char *prefix,
                        const char *scope, const char *payload)
{
    char mac[MAC_HEX + 1];
    size_t len = strlen(payload);
    token_mac(key, prefix, scope, payload, len, mac);
    _cleanup_free_ char *b = base64_encode(payload, len);
    return xasprintf("%s%s.%s", prefix, b, mac);
}

static int bad_token(sk_err *err)
{
    return sk_err_typed(err, SK_E_INVALID, "InvalidParameterException",
                        "The specified nextToken is invalid.");
}

int logs_token_decode(const uint8_t key[LOGS_TOKEN_KEY_LEN], const char *token, const char *prefix,
                      const char *scope, char **ret_payload, sk_err *err)
{
    if (!token || strlen(token) > LOGS_MAX_TOKEN)
        return bad_token(err);
    const char *body = startswith(token, prefix);
    if (!body)
        return bad_token(err);
    const char *dot = strrchr(body, '.');
    if (!dot || strlen(dot + 1) != MAC_HEX || !is_hex(dot + 1, MAC_HEX))
        return bad_token(err);
    uint8_t *payload = NULL;
    size_t len = 0;
    if (base64_decode(body, (size_t) (dot - body), &payload, &len) < 0)
        return bad_token(err);
    char mac[MAC_HEX + 1];
    token_mac(key, prefix, scope, payload, len, mac);
    if (!mem_equal_ct(mac, dot + 1, MAC_HEX) || memchr(payload, 0, len)) {
        free(payload);
        return bad_token(err);
    }
    char *s = xmalloc(len + 1);
    if (len)
        memcpy(s, payload, len);
    s[len] = 0;
    free(payload);
    *ret_payload = s;
    return 0;
}

char *logs_pos_format(logs_pos p)
{
    return xasprintf("%" PRId64 ":%" PRId64, p.ts, p.id);
}

int logs_pos_parse(const char *s, logs_pos *ret)
{
    const char *colon = s ? strchr(s, ':') : NULL;
    if (!colon || colon - s > 24)
        return -EINVAL;
    char a[32];
    memcpy(a, s, (size_t) (colon - s));
    a[colon - s] = 0;
    logs_pos p;
    if (parse_i64(a, &p.ts) < 0 || parse_i64(colon + 1, &p.id) < 0)
        return -EINVAL;
    *ret = p;
    return 0;
}
