/* Process-wide logging to stderr. Only the edges of the program log: request
 * handlers render errors to clients, loops log what they cannot return. */
#pragma once

#include "macro.h"

typedef enum sk_log_level {
    SK_LOG_ERROR = 0,
    SK_LOG_WARN,
    SK_LOG_INFO,
    SK_LOG_DEBUG,
} sk_log_level;

void sk_log_setup(const char *ident, sk_log_level level);
sk_log_level sk_log_get_level(void);
void sk_log(sk_log_level level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) sk_log(SK_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  sk_log(SK_LOG_WARN, __VA_ARGS__)
#define log_info(...)  sk_log(SK_LOG_INFO, __VA_ARGS__)
#define log_debug(...)                          \
    do {                                        \
        if (sk_log_get_level() >= SK_LOG_DEBUG) \
            sk_log(SK_LOG_DEBUG, __VA_ARGS__);  \
    } while (0)
