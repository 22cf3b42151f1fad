/* Root credentials: created once per data dir and kept in the store under
 * "iam/keys/<access key id>"; written out as an AWS shared-credentials file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "cp.h"
#include "shared/jsonutil.h"

static bool key_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 16 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

static void random_chars(char *out, size_t n, const char *alphabet)
{
    size_t al = strlen(alphabet);
    uint8_t b[64];
    random_bytes(b, n);
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[b[i] % al];
    out[n] = 0;
}

int cp_credentials_init(store *st, const char *account_id, const char *region,
                        const char *cred_path, sk_err *err)
{
    const store_kv *root = store_get(st, "iam/root");
    _cleanup_free_ char *akid = NULL, *secret = NULL;
    if (root) {
        _cleanup_json_ json_t *r = json_loadb(root->value, root->len, 0, NULL);
        akid = xstrdup(js_str_or(r, "accessKeyId", ""));
        _cleanup_free_ char *kk = xasprintf("iam/keys/%s", akid);
        _cleanup_json_ json_t *k = store_get_json(st, kk);
        if (!k)
            return sk_err_set(err, SK_E_INTERNAL, "root key %s is missing from the store", akid);
        if (!streq_ptr(js_str(k, "account"), account_id))
            return sk_err_set(
                    err, SK_E_INVALID,
                    "the data dir belongs to account %s, not %s; start with --account-id %s or use another --data dir",
                    js_str_or(k, "account", "?"), account_id, js_str_or(k, "account", "?"));
        secret = xstrdup(js_str_or(k, "secretAccessKey", ""));
    } else {
        const char *ek = getenv("SKIFF_ROOT_ACCESS_KEY_ID");
        const char *es = getenv("SKIFF_ROOT_SECRET_ACCESS_KEY");
        if (ek && *ek) {
            if (!key_id_ok(ek))
                return sk_err_set(
                        err, SK_E_INVALID,
                        "SKIFF_ROOT_ACCESS_KEY_ID must be 16-128 upper-case letters and digits");
            if (!es || strlen(es) < 16 || strlen(es) > 128)
                return sk_err_set(
                        err, SK_E_INVALID,
                        "SKIFF_ROOT_SECRET_ACCESS_KEY must be set (16-128 characters) with SKIFF_ROOT_ACCESS_KEY_ID");
            akid = xstrdup(ek);
            secret = xstrdup(es);
        } else {
            char a[21], s[41];
            random_chars(a + 4, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
            memcpy(a, "AKIA", 4);
            random_chars(s, 40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
            akid = xstrdup(a);
            secret = xstrdup(s);
        }
        store_txn *t = store_txn_new(st);
        json_t *k = json_pack("{s:s, s:s, s:s, s:s}", "accessKeyId", akid, "secretAccessKey",
                              secret, "account", account_id, "user", "root");
        json_t *r = json_pack("{s:s}", "accessKeyId", akid);
        _cleanup_free_ char *kk = xasprintf("iam/keys/%s", akid);
        store_txn_put_json(t, kk, k);
        store_txn_put_json(t, "iam/root", r);
        json_decref(k);
        json_decref(r);
        if (store_txn_commit(t, err) < 0 || store_flush(st, err) < 0)
            return -1;
    }
    _cleanup_free_ char *content = xasprintf(
            "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = %s\n", akid,
            secret, region);
    int r = write_file_atomic(cred_path, content, strlen(content), 0600);
    explicit_bzero(content, strlen(content));
    if (r < 0)
        return sk_err_sys(err, r, "write credentials file '%s'", cred_path);
    return 0;
}

/* The returned strings live in a small cache valid until the next call. */
int cp_key_lookup(void *userdata, const char *access_key, const char **ret_secret,
                  const char **ret_account)
{
    static char secret[160], account[16];
    store *st = userdata;
    if (!key_id_ok(access_key))
        return -1;
    char kk[160];
    snprintf(kk, sizeof(kk), "iam/keys/%s", access_key);
    const store_kv *kv = store_get(st, kk);
    if (!kv)
        return -1;
    json_t *k = json_loadb(kv->value, kv->len, 0, NULL);
    if (!k)
        return -1;
    strlcpy_s(secret, js_str_or(k, "secretAccessKey", ""), sizeof(secret));
    strlcpy_s(account, js_str_or(k, "account", ""), sizeof(account));
    json_decref(k);
    *ret_secret = secret;
    *ret_account = account;
    return 0;
}

int cp_root_credentials(store *st, char **ret_access_key, char **ret_secret, sk_err *err)
{
    _cleanup_json_ json_t *r = store_get_json(st, "iam/root");
    const char *akid = js_str(r, "accessKeyId");
    if (!akid)
        return sk_err_set(err, SK_E_NOT_FOUND, "no root credentials in the store");
    _cleanup_free_ char *kk = xasprintf("iam/keys/%s", akid);
    _cleanup_json_ json_t *k = store_get_json(st, kk);
    const char *secret = js_str(k, "secretAccessKey");
    if (!secret)
        return sk_err_set(err, SK_E_NOT_FOUND, "root key %s is missing from the store", akid);
    *ret_access_key = xstrdup(akid);
    *ret_secret = xstrdup(secret);
    return 0;
}
