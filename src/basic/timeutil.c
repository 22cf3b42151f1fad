#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "strutil.h"

usec_t now_realtime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

usec_t now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

double usec_to_epoch(usec_t t)
{
    /* Millisecond precision, as AWS returns. */
    return (double) (t / 1000) / 1000.0;
}

void format_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static int digits(const char *s, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return 0;
}

static int tm_to_time(int y, int mo, int d, int h, int mi, int sec, time_t *ret)
{
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return -EINVAL;
    struct tm tm = { .tm_year = y - 1900,
                     .tm_mon = mo - 1,
                     .tm_mday = d,
                     .tm_hour = h,
                     .tm_min = mi,
                     .tm_sec = sec };
    time_t t = timegm(&tm);
    if (t == (time_t) -1)
        return -EINVAL;
    /* Reject what timegm normalised (Feb 31, second 60, ...). */
    struct tm back;
    if (!gmtime_r(&t, &back) || back.tm_year != y - 1900 || back.tm_mon != mo - 1 ||
        back.tm_mday != d || back.tm_hour != h || back.tm_min != mi || back.tm_sec != sec)
        return -EINVAL;
    *ret = t;
    return 0;
}

int parse_amz_date(const char *s, time_t *ret)
{
    int y, mo, d, h, mi, sec;
    if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return -EINVAL;
    if (digits(s, 4, &y) < 0 || digits(s + 4, 2, &mo) < 0 || digits(s + 6, 2, &d) < 0 ||
        digits(s + 9, 2, &h) < 0 || digits(s + 11, 2, &mi) < 0 || digits(s + 13, 2, &sec) < 0)
        return -EINVAL;
    return tm_to_time(y, mo, d, h, mi, sec, ret);
}

void format_rfc3339(usec_t t, char out[32])
{
    time_t sec = (time_t) (t / USEC_PER_SEC);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char buf[64];
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int) ((t / 1000) % 1000));
    strlcpy_s(out, buf, 32);
}

int parse_rfc3339(const char *s, usec_t *ret)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    size_t n = strlen(s);
    if (n < 10 || s[4] != '-' || s[7] != '-')
        return -EINVAL;
    if (digits(s, 4, &y) < 0 || digits(s + 5, 2, &mo) < 0 || digits(s + 8, 2, &d) < 0)
        return -EINVAL;
    const char *p = s + 10;
    long frac_us = 0, off = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        if (strlen(p) < 9 || p[3] != ':' || p[6] != ':')
            return -EINVAL;
        if (digits(p + 1, 2, &h) < 0 || digits(p + 4, 2, &mi) < 0 || digits(p + 7, 2, &sec) < 0)
            return -EINVAL;
        p += 9;
        if (*p == '.') {
            p++;
            long scale = 100000;
            if (*p < '0' || *p > '9')
                return -EINVAL;
            while (*p >= '0' && *p <= '9') {
                frac_us += (*p - '0') * scale;
                scale /= 10;
                p++;
            }
        }
        if (*p == 'Z' || *p == 'z')
            p++;
        else if (*p == '+' || *p == '-') {
            int oh, om;
            if (strlen(p) != 6 || p[3] != ':' || digits(p + 1, 2, &oh) < 0 ||
                digits(p + 4, 2, &om) < 0)
                return -EINVAL;
            off = (oh * 3600L + om * 60L) * (*p == '+' ? 1 : -1);
            p += 6;
        }
    }
    if (*p)
        return -EINVAL;
    time_t t;
    if (tm_to_time(y, mo, d, h, mi, sec, &t) < 0)
        return -EINVAL;
    t -= off;
    if (t < 0)
        return -EINVAL;
    *ret = (usec_t) t * USEC_PER_SEC + (usec_t) frac_us;
    return 0;
}
