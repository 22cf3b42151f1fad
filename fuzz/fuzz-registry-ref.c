/* libFuzzer target for /v2/ route parsing (repository name + tag/digest in
 * the path), the name/tag/digest validators and the Basic-auth and token
 * parsers. A parsed route must carry a valid repository name. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "registry/reg-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    _cleanup_free_ char *s = xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    reg_route r;
    int k = reg_route_parse(s, &r);
    if (k == 0) {
        if (r.kind < REG_ROUTE_BASE || r.kind > REG_ROUTE_REFERRERS)
            abort();
        if (r.kind != REG_ROUTE_BASE && r.kind != REG_ROUTE_CATALOG && !reg_repo_name_valid(r.name))
            abort();
        if (strlen(r.ref) > REG_REF_MAX)
            abort();
    } else if (k != -ENOENT && k != -EINVAL && k != -E2BIG)
        abort();
    (void) reg_tag_valid(s);
    if (reg_digest_valid(s) && !reg_digest_syntax(s))
        abort();
    if (reg_repo_name_valid(s) && (strstr(s, "..") || strstr(s, "//") || s[0] == '/'))
        abort();
    char *u = NULL, *p = NULL;
    if (reg_basic_auth_parse(s, &u, &p) == 0) {
        free(u);
        free(p);
    }
    uint8_t key[32] = { 0 };
    reg_token_claims c;
    if (reg_token_verify(key, sizeof(key), s, 0, &c) == 0)
        abort(); /* forging a MAC by chance is not expected */
    char acct[REG_ACCOUNT_LEN + 1], region[REG_REGION_MAX + 1];
    if (reg_host_parse(s, acct, region) == 0 && strlen(acct) != REG_ACCOUNT_LEN)
        abort();
    return 0;
}
