/* libFuzzer target for CloudWatch Logs filter patterns: the first line of the
 * input is the pattern, the rest the log message it is matched against. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "logs/logs-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Patterns are capped at LOGS_MAX_PATTERN and messages at an event's size. */
    if (size > LOGS_MAX_PATTERN + LOGS_MAX_EVENT_BYTES)
        return 0;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t plen = nl ? (size_t) (nl - data) : size;
    _cleanup_free_ char *pattern = xmalloc(plen + 1);
    memcpy(pattern, data, plen);
    pattern[plen] = '\0';
    const char *msg = nl ? (const char *) nl + 1 : "";
    size_t mlen = nl ? size - plen - 1 : 0;
    logs_filter *f = NULL;
    _cleanup_err_ sk_err err = { 0 };
    if (logs_filter_parse(pattern, &f, &err) < 0)
        return 0;
    (void) logs_filter_match(f, msg, mlen);
    logs_filter_free(f);
    return 0;
}
