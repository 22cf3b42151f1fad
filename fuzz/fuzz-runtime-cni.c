/* libFuzzer target for the CNI result parser (rt_cni_parse_result), which
 * reads plugin output and cached results. On success the fields must be
 * terminated strings and the address/gateway valid IPv4. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/err.h"
#include "basic/strutil.h"
#include "runtime/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rt_net_result r;
    sk_err err = { 0 };
    memset(&r, 0xaa, sizeof(r));
    if (rt_cni_parse_result((const char *) data, size, &r, &err) < 0) {
        if (!err.msg)
            abort();
        sk_err_done(&err);
        return 0;
    }
    if (!memchr(r.ip, 0, sizeof(r.ip)) || !memchr(r.cidr, 0, sizeof(r.cidr)) ||
        !memchr(r.gateway, 0, sizeof(r.gateway)) || !memchr(r.mac, 0, sizeof(r.mac)) ||
        !memchr(r.ifname, 0, sizeof(r.ifname)))
        abort();
    struct in_addr a;
    if (inet_pton(AF_INET, r.ip, &a) != 1)
        abort();
    uint32_t addr;
    unsigned prefix;
    if (rt_parse_ipv4_cidr(r.cidr, &addr, &prefix) < 0 || ntohl(a.s_addr) != addr)
        abort();
    if (r.gateway[0] && inet_pton(AF_INET, r.gateway, &a) != 1)
        abort();
    if (!r.ifname[0])
        abort();
    return 0;
}
