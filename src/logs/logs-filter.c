/* Filter patterns for FilterLogEvents; the supported syntax is described in
 * logs-internal.h. Parsing is bounded (pattern length, nesting depth, number
 * of comparisons) and matching is linear in the message for text terms and
 * O(message × value) for JSON wildcards, with no backtracking blow-up. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "logs-internal.h"

#define MAX_DEPTH    16
#define MAX_COMPARES 64
#define MAX_PATH     32

typedef enum term_kind {
    TERM_REQUIRED,
    TERM_OPTIONAL,
    TERM_EXCLUDED,
} term_kind;

typedef struct term {
    term_kind kind;
    char *text;
    size_t len;
} term;

typedef enum jop {
    JOP_EQ,
    JOP_NE,
    JOP_LT,
    JOP_LE,
    JOP_GT,
    JOP_GE,
    JOP_IS_TRUE,
    JOP_IS_FALSE,
    JOP_IS_NULL,
    JOP_NOT_EXISTS,
} jop;

typedef struct jseg {
    char *key; /* NULL: array index */
    size_t index;
} jseg;

typedef enum jkind {
    JN_AND,
    JN_OR,
    JN_CMP,
} jkind;

typedef struct jnode {
    jkind kind;
    struct jnode *a, *b;
    jseg *path;
    size_t npath;
    jop op;
    bool numeric;
    double num;
    char *str;
} jnode;

struct logs_filter {
    term *terms;
    size_t nterms;
    bool has_optional;
    jnode *json;
};

static void jnode_free(jnode *n)
{
    if (!n)
        return;
    jnode_free(n->a);
    jnode_free(n->b);
    for (size_t i = 0; i < n->npath; i++)
        free(n->path[i].key);
    free(n->path);
    free(n->str);
    free(n);
}

void logs_filter_free(logs_filter *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nterms; i++)
        free(f->terms[i].text);
    free(f->terms);
    jnode_free(f->json);
    free(f);
}

static int invalid(sk_err *err, const char *what)
{
    return sk_err_typed(err, SK_E_INVALID, "InvalidParameterException",
                        "Invalid filter pattern: %s.", what);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Reads a double-quoted string at *p (which points at the opening quote);
 * \" and \\ are escapes. */
static int read_quoted(const char **p, char **ret, size_t *ret_len, sk_err *err)
{
    const char *s = *p + 1;
    size_t n = strlen(s);
    char *out = xmalloc(n + 1);
    size_t o = 0;
    for (;;) {
        if (!*s) {
            free(out);
            return invalid(err, "unterminated quoted string");
        }
        if (*s == '"')
            break;
        if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
            s++;
        out[o++] = *s++;
    }
    out[o] = 0;
    *p = s + 1;
    *ret = out;
    *ret_len = o;
    return 0;
}

/* --- text terms --- */

static int parse_terms(logs_filter *f, const char *p, sk_err *err)
{
    size_t alloc = 0;
    for (;;) {
        while (is_space(*p))
            p++;
        if (!*p)
            return 0;
        term t = { TERM_REQUIRED, NULL, 0 };
        if ((*p == '?' || *p == '-') && p[1] && !is_space(p[1])) {
            t.kind = *p == '?' ? TERM_OPTIONAL : TERM_EXCLUDED;
            p++;
        }
        if (*p == '"') {
            if (read_quoted(&p, &t.text, &t.len, err) < 0)
                return -1;
            if (*p && !is_space(*p)) {
                free(t.text);
                return invalid(err, "a quoted term must be followed by a space");
            }
        } else {
            const char *start = p;
            while (*p && !is_space(*p))
                p++;
            t.len = (size_t) (p - start);
            t.text = xstrndup(start, t.len);
        }
        if (f->nterms == alloc) {
            alloc = alloc ? 2 * alloc : 8;
            f->terms = xrealloc(f->terms, alloc * sizeof(term));
        }
        if (t.kind == TERM_OPTIONAL)
            f->has_optional = true;
        f->terms[f->nterms++] = t;
    }
}

/* --- JSON patterns --- */

typedef struct jparser {
    const char *p;
    unsigned compares;
    sk_err *err;
} jparser;

static void skip_ws(jparser *j)
{
    while (is_space(*j->p))
        j->p++;
}

static bool ident_char(char c)
{
    return c && !is_space(c) && !strchr(".[]=!<>()&|\"{}", c);
}

static bool word_char(char c)
{
    return c && !is_space(c) && !strchr("=!<>()&|\"{}", c);
}

static bool accept(jparser *j, const char *tok)
{
    skip_ws(j);
    size_t n = strlen(tok);
    if (strncmp(j->p, tok, n) != 0)
        return false;
    /* keywords must end at a word boundary */
    if (tok[0] >= 'A' && tok[0] <= 'Z' && word_char(j->p[n]))
        return false;
    j->p += n;
    return true;
}

static int parse_selector(jparser *j, jnode *n)
{
    skip_ws(j);
    if (*j->p != '$')
        return invalid(j->err, "expected a selector starting with '$'");
    j->p++;
    size_t alloc = 0;
    while (*j->p == '.' || *j->p == '[') {
        if (n->npath >= MAX_PATH)
            return invalid(j->err, "selector too deep");
        jseg seg = { NULL, 0 };
        if (*j->p == '.') {
            j->p++;
            const char *start = j->p;
            while (ident_char(*j->p))
                j->p++;
            if (j->p == start)
                return invalid(j->err, "empty selector member");
            if (j->p - start == 1 && *start == '*')
                return invalid(j->err, "selector wildcards are not supported");
            seg.key = xstrndup(start, (size_t) (j->p - start));
        } else {
            j->p++;
            if (*j->p < '0' || *j->p > '9')
                return invalid(j->err, "only numeric array indexes are supported in selectors");
            size_t v = 0;
            while (*j->p >= '0' && *j->p <= '9') {
                if (v > 100000000)
                    return invalid(j->err, "array index too large");
                v = v * 10 + (size_t) (*j->p - '0');
                j->p++;
            }
            if (*j->p != ']')
                return invalid(j->err, "expected ']'");
            j->p++;
            seg.index = v;
        }
        if (n->npath == alloc) {
            alloc = alloc ? 2 * alloc : 4;
            n->path = xrealloc(n->path, alloc * sizeof(jseg));
        }
        n->path[n->npath++] = seg;
    }
    if (n->npath == 0)
        return invalid(j->err, "a selector must name a member");
    return 0;
}

static bool parse_number(const char *s, double *ret)
{
    if (!*s)
        return false;
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || *end || !isfinite(v))
        return false;
    /* strtod also takes hex, "inf" and "nan"; AWS numbers are decimal. */
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p))
            return false;
    *ret = v;
    return true;
}

static int parse_value(jparser *j, jnode *n)
{
    skip_ws(j);
    if (*j->p == '"') {
        size_t len;
        if (read_quoted(&j->p, &n->str, &len, j->err) < 0)
            return -1;
        if (strlen(n->str) != len)
            return invalid(j->err, "NUL in string");
        return 0;
    }
    const char *start = j->p;
    while (word_char(*j->p))
        j->p++;
    if (j->p == start)
        return invalid(j->err, "expected a value");
    _cleanup_free_ char *w = xstrndup(start, (size_t) (j->p - start));
    if (parse_number(w, &n->num)) {
        n->numeric = true;
        return 0;
    }
    n->str = TAKE_PTR(w);
    return 0;
}

static int parse_compare(jparser *j, jnode **ret)
{
    if (++j->compares > MAX_COMPARES)
        return invalid(j->err, "too many comparisons");
    jnode *n = xcalloc(1, sizeof(*n));
    n->kind = JN_CMP;
    if (parse_selector(j, n) < 0)
        goto fail;
    if (accept(j, "IS")) {
        if (accept(j, "TRUE"))
            n->op = JOP_IS_TRUE;
        else if (accept(j, "FALSE"))
            n->op = JOP_IS_FALSE;
        else if (accept(j, "NULL"))
            n->op = JOP_IS_NULL;
        else {
            invalid(j->err, "expected TRUE, FALSE or NULL after IS");
            goto fail;
        }
        *ret = n;
        return 0;
    }
    if (accept(j, "NOT")) {
        if (!accept(j, "EXISTS")) {
            invalid(j->err, "expected EXISTS after NOT");
            goto fail;
        }
        n->op = JOP_NOT_EXISTS;
        *ret = n;
        return 0;
    }
    if (accept(j, "!="))
        n->op = JOP_NE;
    else if (accept(j, "<="))
        n->op = JOP_LE;
    else if (accept(j, ">="))
        n->op = JOP_GE;
    else if (accept(j, "="))
        n->op = JOP_EQ;
    else if (accept(j, "<"))
        n->op = JOP_LT;
    else if (accept(j, ">"))
        n->op = JOP_GT;
    else {
        invalid(j->err, "expected a comparison operator");
        goto fail;
    }
    if (parse_value(j, n) < 0)
        goto fail;
    if (n->op >= JOP_LT && n->op <= JOP_GE && !n->numeric) {
        invalid(j->err, "<, <=, > and >= need a numeric value");
        goto fail;
    }
    *ret = n;
    return 0;
fail:
    jnode_free(n);
    return -1;
}

static int parse_or(jparser *j, unsigned depth, jnode **ret);

static int parse_primary(jparser *j, unsigned depth, jnode **ret)
{
    if (accept(j, "(")) {
        if (depth >= MAX_DEPTH)
            return invalid(j->err, "too deeply nested");
        jnode *n = NULL;
        if (parse_or(j, depth + 1, &n) < 0)
            return -1;
        if (!accept(j, ")")) {
            jnode_free(n);
            return invalid(j->err, "expected ')'");
        }
        *ret = n;
        return 0;
    }
    return parse_compare(j, ret);
}

static int parse_binary(jparser *j, unsigned depth, jnode **ret, bool is_or)
{
    jnode *left = NULL;
    if ((is_or ? parse_binary(j, depth, &left, false) : parse_primary(j, depth, &left)) < 0)
        return -1;
    while (accept(j, is_or ? "||" : "&&")) {
        jnode *right = NULL;
        if ((is_or ? parse_binary(j, depth, &right, false) : parse_primary(j, depth, &right)) < 0) {
            jnode_free(left);
            return -1;
        }
        jnode *n = xcalloc(1, sizeof(*n));
        n->kind = is_or ? JN_OR : JN_AND;
        n->a = left;
        n->b = right;
        left = n;
    }
    *ret = left;
    return 0;
}

static int parse_or(jparser *j, unsigned depth, jnode **ret)
{
    return parse_binary(j, depth, ret, true);
}

static int parse_json_pattern(logs_filter *f, const char *p, sk_err *err)
{
    jparser j = { .p = p + 1, .err = err };
    if (parse_or(&j, 0, &f->json) < 0)
        return -1;
    if (!accept(&j, "}"))
        return invalid(err, "expected '}'");
    skip_ws(&j);
    if (*j.p)
        return invalid(err, "unexpected text after '}'");
    return 0;
}

int logs_filter_parse(const char *pattern, logs_filter **ret, sk_err *err)
{
    if (!pattern)
        pattern = "";
    if (strlen(pattern) > LOGS_MAX_PATTERN)
        return invalid(err, "longer than 1024 bytes");
    const char *p = pattern;
    while (is_space(*p))
        p++;
    logs_filter *f = xcalloc(1, sizeof(*f));
    int r;
    if (*p == '{')
        r = parse_json_pattern(f, p, err);
    else if (*p == '[')
        r = invalid(err, "space-delimited patterns are not supported");
    else if (*p == '%')
        r = invalid(err, "regular expressions are not supported");
    else
        r = parse_terms(f, p, err);
    if (r < 0) {
        logs_filter_free(f);
        return -1;
    }
    *ret = f;
    return 0;
}

/* --- matching --- */

/* '*' matches any run of characters. The classic greedy matcher with one
 * backtrack point: O(len(s) × len(pat)) at worst. */
static bool glob_match(const char *pat, const char *s, size_t slen)
{
    const char *star = NULL;
    size_t si = 0, star_si = 0;
    while (si < slen) {
        if (*pat == '*') {
            star = pat++;
            star_si = si;
        } else if (*pat && *pat == s[si]) {
            pat++;
            si++;
        } else if (star) {
            pat = star + 1;
            si = ++star_si;
        } else
            return false;
    }
    while (*pat == '*')
        pat++;
    return !*pat;
}

static json_t *resolve(json_t *root, const jnode *n)
{
    json_t *v = root;
    for (size_t i = 0; i < n->npath && v; i++) {
        if (n->path[i].key)
            v = json_is_object(v) ? json_object_get(v, n->path[i].key) : NULL;
        else
            v = json_is_array(v) ? json_array_get(v, n->path[i].index) : NULL;
    }
    return v;
}

static bool eval(const jnode *n, json_t *root)
{
    switch (n->kind) {
    case JN_AND:
        return eval(n->a, root) && eval(n->b, root);
    case JN_OR:
        return eval(n->a, root) || eval(n->b, root);
    case JN_CMP:
        break;
    }
    json_t *v = resolve(root, n);
    switch (n->op) {
    case JOP_NOT_EXISTS:
        return !v;
    case JOP_IS_TRUE:
        return v && json_is_true(v);
    case JOP_IS_FALSE:
        return v && json_is_false(v);
    case JOP_IS_NULL:
        return v && json_is_null(v);
    default:
        break;
    }
    if (!v)
        return false;
    if (n->numeric) {
        if (!json_is_number(v))
            return false;
        double x = json_number_value(v);
        switch (n->op) {
        case JOP_EQ:
            return x == n->num;
        case JOP_NE:
            return x != n->num;
        case JOP_LT:
            return x < n->num;
        case JOP_LE:
            return x <= n->num;
        case JOP_GT:
            return x > n->num;
        case JOP_GE:
            return x >= n->num;
        default:
            return false;
        }
    }
    if (!json_is_string(v))
        return false;
    bool m = glob_match(n->str, json_string_value(v), json_string_length(v));
    return n->op == JOP_EQ ? m : n->op == JOP_NE ? !m : false;
}

bool logs_filter_match(const logs_filter *f, const char *msg, size_t len)
{
    if (f->json) {
        json_error_t jerr;
        json_t *root = json_loadb(msg, len, JSON_DECODE_ANY, &jerr);
        if (!root)
            return false;
        bool m = eval(f->json, root);
        json_decref(root);
        return m;
    }
    bool any_optional = false;
    for (size_t i = 0; i < f->nterms; i++) {
        const term *t = &f->terms[i];
        bool found = t->len == 0 || memmem(msg, len, t->text, t->len) != NULL;
        switch (t->kind) {
        case TERM_REQUIRED:
            if (!found)
                return false;
            break;
        case TERM_EXCLUDED:
            if (found)
                return false;
            break;
        case TERM_OPTIONAL:
            any_optional |= found;
            break;
        }
    }
    return !f->has_optional || any_optional;
}
