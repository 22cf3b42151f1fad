/* Time helpers. usec_t is microseconds. */
#pragma once

#include <stdint.h>
#include <time.h>

typedef uint64_t usec_t;
#define USEC_PER_SEC  1000000ULL
#define USEC_PER_MSEC 1000ULL
#define USEC_INFINITY UINT64_MAX

usec_t now_realtime(void);
usec_t now_monotonic(void);
/* Seconds since the epoch as a double, as AWS JSON timestamps are. */
double usec_to_epoch(usec_t t);
/* ISO 8601 basic "YYYYMMDDTHHMMSSZ" (SigV4) into out[17]. */
void format_amz_date(time_t t, char out[17]);
/* Parse the SigV4 basic format; -EINVAL when malformed. */
int parse_amz_date(const char *s, time_t *ret);
/* RFC 3339 "YYYY-MM-DDTHH:MM:SS.mmmZ" into out[32]. */
void format_rfc3339(usec_t t, char out[32]);
/* Accepts RFC 3339 with optional fraction and Z or +hh:mm, or a plain date. */
int parse_rfc3339(const char *s, usec_t *ret);
