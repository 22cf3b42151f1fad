/* CloudWatch Logs filter patterns: a table of (pattern, message, expected). */
#include <string.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/macro.h"
#include "logs/logs-internal.h"
#include "tap.h"

typedef struct match_case {
    const char *pattern;
    const char *message;
    bool match;
} match_case;

static const match_case cases[] = {
    /* empty: everything */
    { "", "anything", true },
    { "   ", "anything", true },
    { "\"\"", "anything", true },
    /* plain terms: all must appear, case-sensitive substrings */
    { "ERROR", "[ERROR] disk full", true },
    { "ERROR", "[error] disk full", false },
    { "ERROR disk", "[ERROR] disk full", true },
    { "ERROR memory", "[ERROR] disk full", false },
    { "disk ERROR", "[ERROR] disk full", true },
    { "user=bob", "login user=bob ok", true },
    /* quoted phrases */
    { "\"disk full\"", "[ERROR] disk full", true },
    { "\"full disk\"", "[ERROR] disk full", false },
    { "\"[ERROR]\"", "[ERROR] disk full", true },
    { "\"say \\\"hi\\\"\"", "they say \"hi\" there", true },
    { "\"back\\\\slash\"", "a back\\slash b", true },
    /* ?optional: any one of them */
    { "?ERROR ?WARN", "WARN low memory", true },
    { "?ERROR ?WARN", "INFO all good", false },
    { "?ERROR ?\"low memory\"", "WARN low memory", true },
    /* -excluded */
    { "-DEBUG", "INFO start", true },
    { "-DEBUG", "DEBUG start", false },
    { "ERROR -retrying", "ERROR timeout, retrying", false },
    { "ERROR -retrying", "ERROR timeout", true },
    { "-\"health check\"", "GET /health-check", true },
    { "-\"health check\"", "GET health check", false },
    /* combined: required AND any optional AND none excluded */
    { "GET ?200 ?304 -healthz", "GET /index 200", true },
    { "GET ?200 ?304 -healthz", "GET /healthz 200", false },
    { "GET ?200 ?304 -healthz", "GET /index 500", false },
    /* a lone '-' or '?' is a literal term */
    { "-", "a - b", true },
    { "?", "what?", true },
    /* JSON: strings */
    { "{ $.level = \"error\" }", "{\"level\":\"error\",\"msg\":\"x\"}", true },
    { "{ $.level = \"error\" }", "{\"level\":\"info\"}", false },
    { "{$.level=\"error\"}", "{\"level\":\"error\"}", true },
    { "{ $.level = error }", "{\"level\":\"error\"}", true },
    { "{ $.level != \"error\" }", "{\"level\":\"info\"}", true },
    { "{ $.level != \"error\" }", "{\"level\":\"error\"}", false },
    { "{ $.level != \"error\" }", "{\"other\":1}", false },
    { "{ $.level = \"err*\" }", "{\"level\":\"error\"}", true },
    { "{ $.level = \"*or\" }", "{\"level\":\"error\"}", true },
    { "{ $.level = \"e*x\" }", "{\"level\":\"error\"}", false },
    { "{ $.level = \"e*r*r\" }", "{\"level\":\"error\"}", true },
    { "{ $.level = \"e*r*o*\" }", "{\"level\":\"error\"}", true },
    { "{ $.level = \"error\" }", "{\"level\":\"ERROR\"}", false },
    { "{ $.level = \"error\" }", "level=error", false },
    { "{ $.level = \"error\" }", "", false },
    { "{ $.level = \"error\" }", "[1,2]", false },
    /* JSON: numbers */
    { "{ $.status = 200 }", "{\"status\":200}", true },
    { "{ $.status = 200 }", "{\"status\":200.0}", true },
    { "{ $.status = 200 }", "{\"status\":\"200\"}", false },
    { "{ $.status != 200 }", "{\"status\":404}", true },
    { "{ $.status >= 500 }", "{\"status\":503}", true },
    { "{ $.status >= 500 }", "{\"status\":499}", false },
    { "{ $.latency < 0.5 }", "{\"latency\":0.25}", true },
    { "{ $.latency > -1 }", "{\"latency\":-0.5}", true },
    { "{ $.n <= 1e3 }", "{\"n\":1000}", true },
    /* JSON: paths */
    { "{ $.user.name = \"bob\" }", "{\"user\":{\"name\":\"bob\"}}", true },
    { "{ $.user.name = \"bob\" }", "{\"user\":\"bob\"}", false },
    { "{ $.items[1].id = 7 }", "{\"items\":[{\"id\":1},{\"id\":7}]}", true },
    { "{ $.items[2].id = 7 }", "{\"items\":[{\"id\":1},{\"id\":7}]}", false },
    { "{ $.a-b = 1 }", "{\"a-b\":1}", true },
    /* JSON: IS / NOT EXISTS */
    { "{ $.ok IS TRUE }", "{\"ok\":true}", true },
    { "{ $.ok IS TRUE }", "{\"ok\":\"true\"}", false },
    { "{ $.ok IS FALSE }", "{\"ok\":false}", true },
    { "{ $.v IS NULL }", "{\"v\":null}", true },
    { "{ $.v IS NULL }", "{}", false },
    { "{ $.v NOT EXISTS }", "{}", true },
    { "{ $.v NOT EXISTS }", "{\"v\":null}", false },
    /* JSON: && || () */
    { "{ $.a = 1 && $.b = 2 }", "{\"a\":1,\"b\":2}", true },
    { "{ $.a = 1 && $.b = 2 }", "{\"a\":1,\"b\":3}", false },
    { "{ $.a = 1 || $.b = 2 }", "{\"a\":0,\"b\":2}", true },
    { "{ $.a = 1 || $.b = 2 && $.c = 3 }", "{\"a\":1}", true },
    { "{ ($.a = 1 || $.b = 2) && $.c = 3 }", "{\"a\":1}", false },
    { "{ ($.a = 1 || $.b = 2) && $.c = 3 }", "{\"b\":2,\"c\":3}", true },
    { "{ (($.a = 1)) }", "{\"a\":1}", true },
};

TEST(match_table)
{
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        const match_case *c = &cases[i];
        logs_filter *f = NULL;
        _cleanup_err_ sk_err err = { 0 };
        if (logs_filter_parse(c->pattern, &f, &err) < 0)
            TAP_FAIL("case %zu: parse '%s': %s", i, c->pattern, err.msg);
        bool m = logs_filter_match(f, c->message, strlen(c->message));
        logs_filter_free(f);
        if (m != c->match)
            TAP_FAIL("case %zu: '%s' on '%s': got %d, want %d", i, c->pattern, c->message, m,
                     c->match);
    }
}

static const char *const invalid_patterns[] = {
    "\"unterminated",
    "\"a\"b",
    "[ip, user, status]",
    "%ERROR.*%",
    "{ $.a = 1",
    "{ $.a = 1 } trailing",
    "{ }",
    "{ level = 1 }",
    "{ $ = 1 }",
    "{ $. = 1 }",
    "{ $.a }",
    "{ $.a == 1 }",
    "{ $.a = }",
    "{ $.a < \"x\" }",
    "{ $.a > abc }",
    "{ $.a IS MAYBE }",
    "{ $.a NOT THERE }",
    "{ $.a[*] = 1 }",
    "{ $.* = 1 }",
    "{ $.a[x] = 1 }",
    "{ $.a[1 = 1 }",
    "{ ($.a = 1 }",
    "{ $.a = 1 && }",
    "{ $.a = 1 || || $.b = 2 }",
    "{ ((((((((((((((((((($.a = 1))))))))))))))))))) }",
};

TEST(invalid_patterns)
{
    for (size_t i = 0; i < ELEMENTSOF(invalid_patterns); i++) {
        logs_filter *f = NULL;
        _cleanup_err_ sk_err err = { 0 };
        if (logs_filter_parse(invalid_patterns[i], &f, &err) >= 0) {
            logs_filter_free(f);
            TAP_FAIL("'%s' parsed but should not", invalid_patterns[i]);
        }
        ASSERT_EQ(err.code, SK_E_INVALID);
        ASSERT_STREQ(err.type, "InvalidParameterException");
    }
}

TEST(limits)
{
    /* longer than 1024 bytes */
    char big[LOGS_MAX_PATTERN + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    logs_filter *f = NULL;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FAIL(logs_filter_parse(big, &f, &err));
    sk_err_done(&err);
    big[LOGS_MAX_PATTERN] = 0;
    ASSERT_OK(logs_filter_parse(big, &f, &err));
    logs_filter_free(f);
    /* more than 64 comparisons */
    _cleanup_buf_ sk_buf many;
    sk_buf_init(&many, 0);
    sk_buf_puts(&many, "{ $.a = 1");
    for (int i = 0; i < 70; i++)
        sk_buf_puts(&many, " || $.a=1");
    sk_buf_puts(&many, " }");
    ASSERT_FAIL(logs_filter_parse(many.data, &f, &err));
    sk_err_done(&err);
    /* wildcard-heavy values stay fast */
    ASSERT_OK(logs_filter_parse("{ $.s = \"*a*a*a*a*a*a*a*a*a*a*a*a*b\" }", &f, &err));
    _cleanup_buf_ sk_buf msg;
    sk_buf_init(&msg, 0);
    sk_buf_puts(&msg, "{\"s\":\"");
    for (int i = 0; i < 250000; i++)
        sk_buf_putc(&msg, 'a');
    sk_buf_puts(&msg, "\"}");
    ASSERT_FALSE(logs_filter_match(f, msg.data, msg.len));
    logs_filter_free(f);
    /* NUL bytes in a message never crash a text match */
    ASSERT_OK(logs_filter_parse("b", &f, &err));
    ASSERT_TRUE(logs_filter_match(f, "a\0b", 3));
    logs_filter_free(f);
}

TAP_MAIN()
