/* A tiny TAP test runner. Each test file defines TEST(name) functions and
 * ends with TAP_MAIN(). Assertions report the failing expression and values,
 * mark the test "not ok", and return from it. Exit status is 0 only when
 * every test passed; SKIP() inside a test marks it skipped. */
#pragma once

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct tap_test {
    const char *name;
    void (*fn)(void);
} tap_test;

extern tap_test tap_tests[];
extern int tap_ntests;
extern bool tap_failed_current;
extern const char *tap_skip_reason;

#define TAP_MAX_TESTS 256
#define TEST(name)                                                      \
    static void test_##name(void);                                      \
    __attribute__((constructor)) static void register_##name(void)      \
    {                                                                   \
        if (tap_ntests < TAP_MAX_TESTS)                                 \
            tap_tests[tap_ntests++] = (tap_test){ #name, test_##name }; \
    }                                                                   \
    static void test_##name(void)

#define TAP_FAIL(...)                              \
    do {                                           \
        printf("#   %s:%d: ", __FILE__, __LINE__); \
        printf(__VA_ARGS__);                       \
        printf("\n");                              \
        tap_failed_current = true;                 \
        return;                                    \
    } while (0)

#define ASSERT_TRUE(e)                            \
    do {                                          \
        if (!(e))                                 \
            TAP_FAIL("assertion failed: %s", #e); \
    } while (0)
#define ASSERT_FALSE(e) ASSERT_TRUE(!(e))
#define ASSERT_OK(e)                            \
    do {                                        \
        long _r = (long) (e);                   \
        if (_r < 0)                             \
            TAP_FAIL("%s failed: %ld", #e, _r); \
    } while (0)
#define ASSERT_OK_ERR(e, err)                                                      \
    do {                                                                           \
        long _r = (long) (e);                                                      \
        if (_r < 0)                                                                \
            TAP_FAIL("%s failed: %ld: %s", #e, _r, (err)->msg ? (err)->msg : "?"); \
    } while (0)
#define ASSERT_FAIL(e)                                          \
    do {                                                        \
        long _r = (long) (e);                                   \
        if (_r >= 0)                                            \
            TAP_FAIL("%s unexpectedly succeeded: %ld", #e, _r); \
    } while (0)
#define ASSERT_EQ(a, b)                                         \
    do {                                                        \
        long long _a = (long long) (a), _b = (long long) (b);   \
        if (_a != _b)                                           \
            TAP_FAIL("%s == %s: %lld != %lld", #a, #b, _a, _b); \
    } while (0)
#define ASSERT_STREQ(a, b)                                                                      \
    do {                                                                                        \
        const char *_a = (a), *_b = (b);                                                        \
        if (!_a || !_b || strcmp(_a, _b) != 0)                                                  \
            TAP_FAIL("%s == %s: '%s' != '%s'", #a, #b, _a ? _a : "(null)", _b ? _b : "(null)"); \
    } while (0)
#define ASSERT_NULL(a)                      \
    do {                                    \
        if ((a) != NULL)                    \
            TAP_FAIL("%s is not NULL", #a); \
    } while (0)
#define ASSERT_NOT_NULL(a)              \
    do {                                \
        if ((a) == NULL)                \
            TAP_FAIL("%s is NULL", #a); \
    } while (0)
#define SKIP(reason)                \
    do {                            \
        tap_skip_reason = (reason); \
        return;                     \
    } while (0)

#define TAP_MAIN()                                                                           \
    tap_test tap_tests[TAP_MAX_TESTS];                                                       \
    int tap_ntests;                                                                          \
    bool tap_failed_current;                                                                 \
    const char *tap_skip_reason;                                                             \
    int main(void)                                                                           \
    {                                                                                        \
        int failed = 0;                                                                      \
        setvbuf(stdout, NULL, _IONBF, 0);                                                    \
        printf("1..%d\n", tap_ntests);                                                       \
        for (int i = 0; i < tap_ntests; i++) {                                               \
            tap_failed_current = false;                                                      \
            tap_skip_reason = NULL;                                                          \
            tap_tests[i].fn();                                                               \
            if (tap_skip_reason)                                                             \
                printf("ok %d - %s # SKIP %s\n", i + 1, tap_tests[i].name, tap_skip_reason); \
            else if (tap_failed_current) {                                                   \
                printf("not ok %d - %s\n", i + 1, tap_tests[i].name);                        \
                failed++;                                                                    \
            } else                                                                           \
                printf("ok %d - %s\n", i + 1, tap_tests[i].name);                            \
        }                                                                                    \
        return failed ? 1 : 0;                                                               \
    }
