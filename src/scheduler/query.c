/* Parser and evaluator for the ECS cluster query language; see query.h for
 * the grammar.
 *
 * Lexing is done on demand by the recursive-descent parser, because what a
 * character means depends on where it appears: "!" starts a negation before a
 * term but an operator after a subject, and a bare value may contain almost
 * anything. The parse produces a tree whose And/Or nodes are n-ary, so its
 * depth is bounded by the nesting of parentheses and negations, which is
 * capped at SCHED_QUERY_MAX_DEPTH. Regular expressions are compiled while
 * parsing; everything else the evaluator needs is pre-parsed too, so
 * evaluation cannot fail. */
#include "query.h"

#include <errno.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/macro.h"
#include "basic/strutil.h"

#define QUERY_MAX_LIST 100
/* Bounds on the estimated compiled size of a regex and on how much of it is
 * optional (see re_measure()). No pattern without repetitions reaches the
 * first; the second keeps matching a value of a few hundred bytes within
 * milliseconds. */
#define QUERY_MAX_REGEX_COST     2100
#define QUERY_MAX_REGEX_OPTIONAL 128
/* Largest repetition count accepted in a {m,n} bound. */
#define QUERY_MAX_REPEAT 255
/* Longest token excerpt quoted in an error message. */
#define QUERY_MAX_EXCERPT 32

typedef enum qsubject {
    SUBJ_AGENT_CONNECTED,
    SUBJ_AGENT_VERSION,
    SUBJ_ATTRIBUTE,
    SUBJ_EC2_INSTANCE_ID,
    SUBJ_REGISTERED_AT,
    SUBJ_RUNNING_TASKS_COUNT,
    SUBJ_TASK_GROUP,
} qsubject;

static const struct {
    const char *name;
    qsubject subj;
} subject_table[] = {
    { "agentConnected", SUBJ_AGENT_CONNECTED },        { "agentVersion", SUBJ_AGENT_VERSION },
    { "ec2InstanceId", SUBJ_EC2_INSTANCE_ID },         { "registeredAt", SUBJ_REGISTERED_AT },
    { "runningTasksCount", SUBJ_RUNNING_TASKS_COUNT }, { "task:group", SUBJ_TASK_GROUP },
};

/* Positive operators; the negated forms (!=, !exists, !in, !~) are one of
 * these with qpred.negate set, and are true exactly when the positive form is
 * false (so they hold for an absent subject). */
typedef enum qop {
    OP_EQ,
    OP_GT,
    OP_GE,
    OP_LT,
    OP_LE,
    OP_EXISTS,
    OP_IN,
    OP_MATCHES,
} qop;

typedef struct qop_def {
    const char *name;
    qop op;
    bool negate;
} qop_def;

/* Longer spellings first so that a prefix never shadows them. */
static const qop_def symbol_ops[] = {
    { "==", OP_EQ, false }, { "!=", OP_EQ, true },       { ">=", OP_GE, false },
    { "<=", OP_LE, false }, { "=~", OP_MATCHES, false }, { "!~", OP_MATCHES, true },
    { ">", OP_GT, false },  { "<", OP_LT, false },
};

static const qop_def word_ops[] = {
    { "equals", OP_EQ, false },
    { "not_equals", OP_EQ, true },
    { "exists", OP_EXISTS, false },
    { "!exists", OP_EXISTS, true },
    { "not_exists", OP_EXISTS, true },
    { "in", OP_IN, false },
    { "!in", OP_IN, true },
    { "not_in", OP_IN, true },
    { "matches", OP_MATCHES, false },
    { "not_matches", OP_MATCHES, true },
};

/* An argument value: the literal text, plus its typed form for subjects that
 * do not compare as strings. */
typedef struct qarg {
    char *str;
    union {
        int64_t num;
        usec_t time;
        bool b;
    };
} qarg;

typedef struct qpred {
    qsubject subj;
    qop op;
    bool negate;
    char *name; /* attribute name, for SUBJ_ATTRIBUTE */
    qarg *args;
    size_t n_args;
    bool has_re;
    regex_t re;
} qpred;

typedef enum qnode_type {
    NODE_AND,
    NODE_OR,
    NODE_NOT,
    NODE_PRED,
} qnode_type;

typedef struct qnode qnode;
struct qnode {
    qnode_type type;
    union {
        struct {
            qnode **v;
            size_t n;
        } kids;       /* NODE_AND, NODE_OR: at least two */
        qnode *child; /* NODE_NOT */
        qpred pred;   /* NODE_PRED */
    };
};

struct sched_query {
    qnode *root;
};

typedef struct parser {
    const char *s;
    size_t pos;
    unsigned depth;
    sk_err *err;
} parser;

/* ---- tree ---- */

static void node_free(qnode *n)
{
    if (!n)
        return;
    switch (n->type) {
    case NODE_AND:
    case NODE_OR:
        for (size_t i = 0; i < n->kids.n; i++)
            node_free(n->kids.v[i]);
        free(n->kids.v);
        break;
    case NODE_NOT:
        node_free(n->child);
        break;
    case NODE_PRED:
        free(n->pred.name);
        for (size_t i = 0; i < n->pred.n_args; i++)
            free(n->pred.args[i].str);
        free(n->pred.args);
        if (n->pred.has_re)
            regfree(&n->pred.re);
        break;
    }
    free(n);
}

/* Combines a and b under an n-ary node of the given type, flattening a when it
 * already is one (both operators are associative). Takes ownership of both. */
static qnode *node_join(qnode_type type, qnode *a, qnode *b)
{
    if (a->type != type) {
        qnode *n = xcalloc(1, sizeof(*n));
        n->type = type;
        n->kids.v = xmalloc(2 * sizeof(qnode *));
        n->kids.v[0] = a;
        n->kids.n = 1;
        a = n;
    }
    /* Grow at powers of two; the expression length cap bounds the count. */
    size_t n = a->kids.n;
    if (n >= 2 && (n & (n - 1)) == 0)
        a->kids.v = xrealloc(a->kids.v, 2 * n * sizeof(qnode *));
    a->kids.v[a->kids.n++] = b;
    return a;
}

/* ---- lexical helpers ---- */

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Characters that end a subject or a keyword. */
static bool is_delim(char c)
{
    return c == '\0' || is_ws(c) || strchr("=!<>~()[],&|'\"", c);
}

static bool is_attr_name_char(char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '/' || c == '.';
}

static void skip_ws(parser *p)
{
    while (is_ws(p->s[p->pos]))
        p->pos++;
}

static char cur(const parser *p)
{
    return p->s[p->pos];
}

/* Whether the keyword kw starts at the current position as a whole word. */
static bool at_keyword(const parser *p, const char *kw)
{
    size_t n = strlen(kw);
    return strncmp(p->s + p->pos, kw, n) == 0 && is_delim(p->s[p->pos + n]);
}

/* Copies at most QUERY_MAX_EXCERPT bytes of s[0..n) into out for quoting in
 * an error message, replacing anything but printable ASCII with '?' so that
 * the message is safe to embed in JSON. */
static void excerpt(const char *s, size_t n, char out[QUERY_MAX_EXCERPT + 4])
{
    size_t k = MIN(n, (size_t) QUERY_MAX_EXCERPT);
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char) s[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char) c : '?';
    }
    if (n > k) {
        memcpy(out + k, "...", 4);
        return;
    }
    out[k] = '\0';
}

/* Length of the token at s for error messages: a punctuator, or a run of
 * characters up to whitespace or a bracket/comma. */
static size_t token_len(const char *s)
{
    if (!*s)
        return 0;
    if ((s[0] == '&' && s[1] == '&') || (s[0] == '|' && s[1] == '|'))
        return 2;
    if (strchr("()[],", s[0]))
        return 1;
    size_t n = 0;
    while (s[n] && !is_ws(s[n]) && !strchr("()[],", s[n]))
        n++;
    return n;
}

/* "expected WHAT but found 'tok' at position N" for the token at pos. */
static int fail_expected(parser *p, size_t pos, const char *what)
{
    if (!p->s[pos])
        return sk_err_set(p->err, SK_E_INVALID, "expected %s but found end of expression", what);
    char tok[QUERY_MAX_EXCERPT + 4];
    excerpt(p->s + pos, token_len(p->s + pos), tok);
    return sk_err_set(p->err, SK_E_INVALID, "expected %s but found '%s' at position %zu", what, tok,
                      pos + 1);
}

static int fail_unexpected(parser *p, size_t pos)
{
    if (!p->s[pos])
        return sk_err_set(p->err, SK_E_INVALID, "unexpected end of expression");
    char tok[QUERY_MAX_EXCERPT + 4];
    excerpt(p->s + pos, token_len(p->s + pos), tok);
    return sk_err_set(p->err, SK_E_INVALID, "unexpected token '%s' at position %zu", tok, pos + 1);
}

/* ---- typed values ---- */

/* A decimal number [+-]digits[.digits], split into a canonical form for exact
 * comparison: leading zeros of the integer part and trailing zeros of the
 * fraction dropped, and zero never negative. */
typedef struct decimal {
    bool neg;
    const char *ip;
    size_t in;
    const char *fp;
    size_t fn;
} decimal;

static bool parse_decimal(const char *s, decimal *d)
{
    d->neg = false;
    if (*s == '-' || *s == '+')
        d->neg = *s++ == '-';
    if (!is_digit(*s))
        return false;
    while (*s == '0' && is_digit(s[1]))
        s++;
    d->ip = s;
    while (is_digit(*s))
        s++;
    d->in = (size_t) (s - d->ip);
    if (d->in == 1 && d->ip[0] == '0')
        d->in = 0;
    d->fp = s;
    d->fn = 0;
    if (*s == '.') {
        d->fp = ++s;
        if (!is_digit(*s))
            return false;
        while (is_digit(*s))
            s++;
        d->fn = (size_t) (s - d->fp);
        while (d->fn > 0 && d->fp[d->fn - 1] == '0')
            d->fn--;
    }
    if (*s)
        return false;
    if (d->in == 0 && d->fn == 0)
        d->neg = false;
    return true;
}

static int sign(int c)
{
    return (c > 0) - (c < 0);
}

/* Compares two runs of digits without leading zeros as integers. */
static int digits_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return an < bn ? -1 : 1;
    return sign(memcmp(a, b, an));
}

static int decimal_cmp(const decimal *a, const decimal *b)
{
    if (a->neg != b->neg)
        return a->neg ? -1 : 1;
    int c = digits_cmp(a->ip, a->in, b->ip, b->in);
    if (c == 0) {
        /* Fractions without trailing zeros compare lexicographically. */
        c = sign(memcmp(a->fp, b->fp, MIN(a->fn, b->fn)));
        if (c == 0)
            c = a->fn == b->fn ? 0 : a->fn < b->fn ? -1 : 1;
    }
    return a->neg ? -c : c;
}

/* Numerically when both parse as decimal numbers, else by strcmp. */
static int generic_cmp(const char *a, const char *b)
{
    decimal da, db;
    if (parse_decimal(a, &da) && parse_decimal(b, &db))
        return decimal_cmp(&da, &db);
    return sign(strcmp(a, b));
}

/* A version is one or more dot-separated runs of digits, such as 1.14.5. */
static bool version_valid(const char *s)
{
    for (;;) {
        if (!is_digit(*s))
            return false;
        while (is_digit(*s))
            s++;
        if (!*s)
            return true;
        if (*s++ != '.')
            return false;
    }
}

/* Compares valid versions component-wise; missing components count as 0, so
 * 1.14 == 1.14.0. Components may be arbitrarily long. */
static int version_cmp(const char *a, const char *b)
{
    while (*a || *b) {
        while (*a == '0' && is_digit(a[1]))
            a++;
        while (*b == '0' && is_digit(b[1]))
            b++;
        const char *as = a, *bs = b;
        while (is_digit(*a))
            a++;
        while (is_digit(*b))
            b++;
        size_t an = (size_t) (a - as), bn = (size_t) (b - bs);
        if (an == 1 && *as == '0')
            an = 0;
        if (bn == 1 && *bs == '0')
            bn = 0;
        int c = digits_cmp(as, an, bs, bn);
        if (c != 0)
            return c;
        if (*a == '.')
            a++;
        if (*b == '.')
            b++;
    }
    return 0;
}

/* ---- regular expressions ---- */

/* glibc's regex engine compiles a pattern into an NFA and simulates it with a
 * lazily built DFA whose states are sets of NFA nodes. Some short patterns
 * make that very slow, so patterns are screened before regcomp() sees them:
 *
 *  - The compiled size is estimated. glibc expands "a+" into "aa*" and
 *    "a{m,n}" into n copies of a, so nested repetitions multiply.
 *  - Optional nodes (inside ?, *, or the copies beyond m of {m,n}) are
 *    counted separately: they keep many NFA nodes active at once, and the
 *    cost of each input character grows with the square of that number.
 *  - Repeating something that can match the empty string ("a**", "(a?)*",
 *    "(a?){9}") is refused: glibc's epsilon-closure computation is
 *    exponential in the number of such loops.
 *  - Back-references are refused: they can take exponential time to match,
 *    and the group the pattern is wrapped in would renumber them. */
#define RE_SAT (UINT64_C(1) << 32)

typedef struct re_size {
    uint64_t cost;     /* estimated compiled nodes */
    uint64_t optional; /* of which optional */
    bool nullable;     /* can match the empty string */
} re_size;

typedef struct re_scan {
    const char *s;
    size_t i;
    unsigned depth;
    bool too_complex; /* nesting or a repetition count over the limits */
    bool backref;
    bool empty_loop;
} re_scan;

/* Saturating arithmetic; operands are at most RE_SAT. */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return MIN(a + b, RE_SAT);
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return a != 0 && b > RE_SAT / a ? RE_SAT : MIN(a * b, RE_SAT);
}

/* Skips a bracket expression; r->i is just past the '['. */
static void re_skip_bracket(re_scan *r)
{
    const char *s = r->s;
    if (s[r->i] == '^')
        r->i++;
    if (s[r->i] == ']')
        r->i++;
    while (s[r->i] && s[r->i] != ']') {
        if (s[r->i] == '[' && s[r->i + 1] && strchr(":.=", s[r->i + 1])) {
            char term = s[r->i + 1];
            const char *end = s + r->i + 2;
            while (*end && !(end[0] == term && end[1] == ']'))
                end++;
            if (!*end) {
                r->i = (size_t) (end - s);
                return;
            }
            r->i = (size_t) (end - s) + 2;
            continue;
        }
        r->i++;
    }
    if (s[r->i] == ']')
        r->i++;
}

/* Parses a decimal repetition count, capped to QUERY_MAX_REPEAT + 1. */
static unsigned re_count(re_scan *r)
{
    unsigned v = 0;
    while (is_digit(r->s[r->i])) {
        v = MIN(v * 10 + (unsigned) (r->s[r->i] - '0'), (unsigned) QUERY_MAX_REPEAT + 1);
        r->i++;
    }
    return v;
}

typedef struct re_repeat {
    unsigned lo, hi; /* hi is ignored when unbounded */
    bool unbounded;
} re_repeat;

/* If an interval {m}, {m,}, {,n} or {m,n} starts at r->i (just past the '{'),
 * consumes it and returns true; otherwise consumes nothing. */
static bool re_interval(re_scan *r, re_repeat *ret)
{
    size_t save = r->i;
    bool have_lo = is_digit(r->s[r->i]);
    re_repeat rep = { 0 };
    rep.lo = rep.hi = have_lo ? re_count(r) : 0;
    if (r->s[r->i] == ',') {
        r->i++;
        if (is_digit(r->s[r->i]))
            rep.hi = re_count(r);
        else
            rep.unbounded = true;
    } else if (!have_lo) {
        r->i = save;
        return false;
    }
    if (r->s[r->i] != '}') {
        r->i = save;
        return false;
    }
    r->i++;
    *ret = rep;
    return true;
}

/* Applies a repetition to piece, as glibc compiles it. */
static void re_apply_repeat(re_scan *r, re_size *piece, const re_repeat *rep)
{
    /* The mandatory copies, then either the optional ones or a starred one. */
    unsigned copies = rep->unbounded ? rep->lo + 1 : MAX(rep->lo, rep->hi);
    if (copies == 0)
        copies = 1;
    unsigned optional = copies > rep->lo ? copies - rep->lo : 0;
    if (copies > QUERY_MAX_REPEAT)
        r->too_complex = true;
    if (piece->nullable && (rep->unbounded || copies > 1))
        r->empty_loop = true;
    piece->optional = sat_add(sat_mul(piece->optional, copies), sat_mul(piece->cost, optional));
    piece->cost = sat_add(sat_mul(piece->cost, copies), 1);
    piece->nullable = piece->nullable || rep->lo == 0;
}

static void re_append(re_size *seq, const re_size *piece)
{
    seq->cost = sat_add(seq->cost, piece->cost);
    seq->optional = sat_add(seq->optional, piece->optional);
    seq->nullable = seq->nullable && piece->nullable;
}

/* Sizes the alternatives starting at r->i, stopping at an unmatched ')' when
 * nested. */
static re_size re_measure(re_scan *r)
{
    re_size alt = { .nullable = false };
    re_size seq = { .nullable = true };
    re_size piece = { .nullable = true };
    bool have_piece = false;
    for (;;) {
        char c = r->s[r->i];
        if (c == '\0' || (c == ')' && r->depth > 0)) {
            re_append(&seq, &piece);
            alt.cost = sat_add(alt.cost, seq.cost);
            alt.optional = sat_add(alt.optional, seq.optional);
            alt.nullable = alt.nullable || seq.nullable;
            return alt;
        }
        r->i++;

        re_repeat rep;
        bool is_repeat = true;
        if (c == '*')
            rep = (re_repeat){ .lo = 0, .unbounded = true };
        else if (c == '+')
            rep = (re_repeat){ .lo = 1, .unbounded = true };
        else if (c == '?')
            rep = (re_repeat){ .lo = 0, .hi = 1 };
        else
            is_repeat = c == '{' && re_interval(r, &rep);
        /* A repetition with nothing before it is left for regcomp() to reject. */
        if (is_repeat && have_piece) {
            re_apply_repeat(r, &piece, &rep);
            continue;
        }

        /* Anything else starts a new piece: the previous one is final. */
        re_append(&seq, &piece);
        piece = (re_size){ .cost = 1 };
        have_piece = true;
        switch (c) {
        case '|':
            alt.cost = sat_add(alt.cost, sat_add(seq.cost, 1));
            alt.optional = sat_add(alt.optional, seq.optional);
            alt.nullable = alt.nullable || seq.nullable;
            seq = (re_size){ .nullable = true };
            piece = (re_size){ .nullable = true };
            have_piece = false;
            break;
        case '(':
            if (r->depth >= SCHED_QUERY_MAX_DEPTH) {
                r->too_complex = true;
                r->i = strlen(r->s);
                break;
            }
            r->depth++;
            piece = re_measure(r);
            piece.cost = sat_add(piece.cost, 2);
            r->depth--;
            if (r->s[r->i] == ')')
                r->i++;
            break;
        case '[':
            re_skip_bracket(r);
            break;
        case '^':
        case '$':
            piece.nullable = true;
            break;
        case '\\':
            c = r->s[r->i];
            if (c >= '1' && c <= '9')
                r->backref = true;
            /* Word-boundary and buffer anchors match the empty string. */
            piece.nullable = c && strchr("bB<>`'", c);
            if (c)
                r->i++;
            break;
        default:
            break;
        }
    }
}

static int compile_regex(parser *p, qpred *pred, size_t pos)
{
    const char *pat = pred->args[0].str;
    char ex[QUERY_MAX_EXCERPT + 4];
    excerpt(pat, strlen(pat), ex);

    re_scan scan = { .s = pat };
    re_size size = re_measure(&scan);
    if (scan.too_complex || size.cost > QUERY_MAX_REGEX_COST ||
        size.optional > QUERY_MAX_REGEX_OPTIONAL)
        return sk_err_set(p->err, SK_E_INVALID,
                          "regular expression '%s' at position %zu is too complex", ex, pos + 1);
    if (scan.empty_loop)
        return sk_err_set(p->err, SK_E_INVALID,
                          "regular expression '%s' at position %zu repeats an expression that "
                          "can match the empty string",
                          ex, pos + 1);
    if (scan.backref)
        return sk_err_set(p->err, SK_E_INVALID,
                          "back-references are not supported in regular expression '%s' at "
                          "position %zu",
                          ex, pos + 1);

    /* Validate the pattern on its own first: wrapping it could hide an
     * unbalanced parenthesis. */
    regex_t re;
    const regex_t *failed = &re;
    int r = regcomp(&re, pat, REG_EXTENDED | REG_NOSUB);
    if (r == 0) {
        regfree(&re);
        _cleanup_free_ char *anchored = xasprintf("^(%s)$", pat);
        r = regcomp(&pred->re, anchored, REG_EXTENDED | REG_NOSUB);
        if (r == 0) {
            pred->has_re = true;
            return 0;
        }
        failed = &pred->re;
    }
    char why[128];
    regerror(r, failed, why, sizeof(why));
    return sk_err_set(p->err, SK_E_INVALID, "invalid regular expression '%s' at position %zu: %s",
                      ex, pos + 1, why);
}

/* ---- parser ---- */

static qnode *parse_or(parser *p);

static int enter(parser *p)
{
    if (p->depth >= SCHED_QUERY_MAX_DEPTH)
        return sk_err_set(p->err, SK_E_INVALID,
                          "expression nested deeper than %d levels at position %zu",
                          SCHED_QUERY_MAX_DEPTH, p->pos + 1);
    p->depth++;
    return 0;
}

static const char *subject_name(const qpred *pred)
{
    if (pred->subj == SUBJ_ATTRIBUTE)
        return "attribute";
    for (size_t i = 0; i < ELEMENTSOF(subject_table); i++)
        if (subject_table[i].subj == pred->subj)
            return subject_table[i].name;
    return "?";
}

static bool op_allowed(qsubject subj, qop op)
{
    switch (subj) {
    case SUBJ_TASK_GROUP:
        /* Only membership can be asked of the instance's task groups. */
        return op == OP_EQ || op == OP_IN;
    case SUBJ_AGENT_CONNECTED:
        return op != OP_GT && op != OP_GE && op != OP_LT && op != OP_LE;
    default:
        return true;
    }
}

/* Parses the operator at the current position into pred; *name receives its
 * spelling for messages. */
static int parse_operator(parser *p, qpred *pred, const char **name)
{
    const char *s = p->s + p->pos;
    size_t n = 0;
    if (is_alpha(s[0]) || (s[0] == '!' && is_alpha(s[1]))) {
        n = s[0] == '!' ? 1 : 0;
        while (is_alpha(s[n]) || is_digit(s[n]) || s[n] == '_')
            n++;
        for (size_t i = 0; i < ELEMENTSOF(word_ops); i++)
            if (strlen(word_ops[i].name) == n && strncmp(s, word_ops[i].name, n) == 0) {
                pred->op = word_ops[i].op;
                pred->negate = word_ops[i].negate;
                *name = word_ops[i].name;
                p->pos += n;
                return 0;
            }
    } else {
        for (size_t i = 0; i < ELEMENTSOF(symbol_ops); i++) {
            size_t k = strlen(symbol_ops[i].name);
            if (strncmp(s, symbol_ops[i].name, k) == 0) {
                pred->op = symbol_ops[i].op;
                pred->negate = symbol_ops[i].negate;
                *name = symbol_ops[i].name;
                p->pos += k;
                return 0;
            }
        }
        while (s[n] && strchr("=!<>~", s[n]))
            n++;
    }
    if (n == 0)
        return fail_expected(p, p->pos, "an operator");
    char ex[QUERY_MAX_EXCERPT + 4];
    excerpt(s, n, ex);
    return sk_err_set(p->err, SK_E_INVALID, "unknown operator '%s' at position %zu", ex,
                      p->pos + 1);
}

static int parse_true_false(const char *s, bool *ret)
{
    if (strcasecmp(s, "true") == 0)
        *ret = true;
    else if (strcasecmp(s, "false") == 0)
        *ret = false;
    else
        return -EINVAL;
    return 0;
}

/* Checks and converts an argument for subjects with a typed value. */
static int convert_arg(parser *p, const qpred *pred, qarg *a, size_t pos)
{
    char ex[QUERY_MAX_EXCERPT + 4];
    excerpt(a->str, strlen(a->str), ex);
    switch (pred->subj) {
    case SUBJ_AGENT_CONNECTED:
        if (parse_true_false(a->str, &a->b) < 0)
            return sk_err_set(p->err, SK_E_INVALID,
                              "agentConnected takes true or false, not '%s' at position %zu", ex,
                              pos + 1);
        return 0;
    case SUBJ_AGENT_VERSION:
        if (!version_valid(a->str))
            return sk_err_set(p->err, SK_E_INVALID, "invalid version '%s' at position %zu", ex,
                              pos + 1);
        return 0;
    case SUBJ_REGISTERED_AT:
        if (parse_rfc3339(a->str, &a->time) < 0)
            return sk_err_set(p->err, SK_E_INVALID, "invalid date '%s' at position %zu", ex,
                              pos + 1);
        return 0;
    case SUBJ_RUNNING_TASKS_COUNT:
        if (parse_i64(a->str, &a->num) < 0)
            return sk_err_set(p->err, SK_E_INVALID, "invalid integer '%s' at position %zu", ex,
                              pos + 1);
        return 0;
    default:
        return 0;
    }
}

/* Parses one value at the current position into a->str and its start into
 * *ret_pos. A bare value runs up to whitespace, "&&", "||", or a ')' or ']'
 * that closes nothing opened inside the value (so regexes such as (a|b) or
 * [a-z]+ need no quotes); inside a list it also ends at a ',' outside
 * brackets. Quoted values run to the matching quote, without escapes. */
static int parse_value(parser *p, bool in_list, const char *opname, qarg *a, size_t *ret_pos)
{
    skip_ws(p);
    const char *s = p->s;
    size_t start = p->pos;
    *ret_pos = start;
    char q = s[start];
    if (q == '\'' || q == '"') {
        const char *end = strchr(s + start + 1, q);
        if (!end)
            return sk_err_set(p->err, SK_E_INVALID, "unterminated string starting at position %zu",
                              start + 1);
        a->str = xstrndup(s + start + 1, (size_t) (end - (s + start + 1)));
        p->pos = (size_t) (end - s) + 1;
        return 0;
    }
    size_t i = start, nest = 0;
    for (;; i++) {
        char c = s[i];
        if (c == '\0' || is_ws(c))
            break;
        if (nest == 0 && (c == '&' || c == '|') && s[i + 1] == c)
            break;
        if (c == '(' || c == '[' || c == '{')
            nest++;
        else if (c == ')' || c == ']' || c == '}') {
            if (nest > 0)
                nest--;
            else if (c != '}')
                break;
        } else if (c == ',' && in_list && nest == 0)
            break;
    }
    if (i == start) {
        char what[64];
        snprintf(what, sizeof(what), "a value for '%s'", opname);
        return fail_expected(p, start, what);
    }
    a->str = xstrndup(s + start, i - start);
    p->pos = i;
    return 0;
}

/* Parses the subject word at the current position into pred. */
static int parse_subject(parser *p, qpred *pred)
{
    const char *w = p->s + p->pos;
    size_t n = 0;
    while (!is_delim(w[n]))
        n++;
    if (n == 0)
        return fail_expected(p, p->pos, "a subject");
    for (size_t i = 0; i < ELEMENTSOF(subject_table); i++)
        if (strlen(subject_table[i].name) == n && strncmp(w, subject_table[i].name, n) == 0) {
            pred->subj = subject_table[i].subj;
            p->pos += n;
            return 0;
        }
    const size_t prefix = strlen("attribute:");
    if (n < prefix || strncmp(w, "attribute:", prefix) != 0) {
        char ex[QUERY_MAX_EXCERPT + 4];
        excerpt(w, n, ex);
        return sk_err_set(p->err, SK_E_INVALID, "unknown subject '%s' at position %zu", ex,
                          p->pos + 1);
    }
    if (n == prefix)
        return sk_err_set(p->err, SK_E_INVALID, "missing attribute name at position %zu",
                          p->pos + prefix + 1);
    for (size_t i = prefix; i < n; i++)
        if (!is_attr_name_char(w[i])) {
            char ex[QUERY_MAX_EXCERPT + 4];
            excerpt(w + i, 1, ex);
            return sk_err_set(p->err, SK_E_INVALID,
                              "invalid character '%s' in attribute name at position %zu", ex,
                              p->pos + i + 1);
        }
    pred->subj = SUBJ_ATTRIBUTE;
    pred->name = xstrndup(w + prefix, n - prefix);
    p->pos += n;
    return 0;
}

static int parse_list(parser *p, qpred *pred, const char *opname)
{
    skip_ws(p);
    if (cur(p) != '[') {
        char what[64];
        snprintf(what, sizeof(what), "a list like [a, b] after '%s'", opname);
        return fail_expected(p, p->pos, what);
    }
    size_t open = p->pos++;
    size_t cap = 0;
    for (;;) {
        skip_ws(p);
        if (cur(p) == ']' && pred->n_args == 0)
            return sk_err_set(p->err, SK_E_INVALID, "empty list at position %zu", open + 1);
        if (pred->n_args == QUERY_MAX_LIST)
            return sk_err_set(p->err, SK_E_INVALID, "list at position %zu has more than %d values",
                              open + 1, QUERY_MAX_LIST);
        if (pred->n_args == cap) {
            cap = cap ? 2 * cap : 4;
            pred->args = xrealloc(pred->args, cap * sizeof(qarg));
        }
        qarg *a = &pred->args[pred->n_args];
        *a = (qarg){ 0 };
        size_t vpos;
        if (parse_value(p, true, opname, a, &vpos) < 0)
            return -1;
        pred->n_args++;
        if (convert_arg(p, pred, a, vpos) < 0)
            return -1;
        skip_ws(p);
        if (cur(p) == ',') {
            p->pos++;
            continue;
        }
        if (cur(p) == ']') {
            p->pos++;
            return 0;
        }
        return fail_expected(p, p->pos, "',' or ']'");
    }
}

static qnode *parse_predicate(parser *p)
{
    qnode *node = xcalloc(1, sizeof(*node));
    node->type = NODE_PRED;
    qpred *pred = &node->pred;

    if (parse_subject(p, pred) < 0)
        goto fail;
    skip_ws(p);
    size_t oppos = p->pos;
    const char *opname = NULL;
    if (parse_operator(p, pred, &opname) < 0)
        goto fail;
    if (!op_allowed(pred->subj, pred->op)) {
        sk_err_set(p->err, SK_E_INVALID, "operator '%s' is not supported for %s at position %zu",
                   opname, subject_name(pred), oppos + 1);
        goto fail;
    }

    switch (pred->op) {
    case OP_EXISTS:
        return node;
    case OP_IN:
        if (parse_list(p, pred, opname) < 0)
            goto fail;
        return node;
    default:
        break;
    }

    skip_ws(p);
    if (cur(p) == '[' && pred->op != OP_MATCHES) {
        sk_err_set(p->err, SK_E_INVALID,
                   "operator '%s' takes a single value, not a list, at position %zu", opname,
                   p->pos + 1);
        goto fail;
    }
    pred->args = xcalloc(1, sizeof(qarg));
    size_t vpos;
    if (parse_value(p, false, opname, &pred->args[0], &vpos) < 0)
        goto fail;
    pred->n_args = 1;
    if (pred->op == OP_MATCHES) {
        if (compile_regex(p, pred, vpos) < 0)
            goto fail;
    } else if (convert_arg(p, pred, &pred->args[0], vpos) < 0)
        goto fail;
    return node;

fail:
    node_free(node);
    return NULL;
}

static qnode *parse_term(parser *p)
{
    skip_ws(p);
    if (cur(p) == '(') {
        size_t open = p->pos;
        if (enter(p) < 0)
            return NULL;
        p->pos++;
        qnode *n = parse_or(p);
        if (!n)
            return NULL;
        skip_ws(p);
        if (cur(p) != ')') {
            char what[64];
            snprintf(what, sizeof(what), "')' to close '(' at position %zu", open + 1);
            fail_expected(p, p->pos, what);
            node_free(n);
            return NULL;
        }
        p->pos++;
        p->depth--;
        return n;
    }
    if (cur(p) == '!' || at_keyword(p, "not")) {
        if (enter(p) < 0)
            return NULL;
        p->pos += cur(p) == '!' ? 1 : strlen("not");
        qnode *child = parse_term(p);
        if (!child)
            return NULL;
        p->depth--;
        qnode *n = xcalloc(1, sizeof(*n));
        n->type = NODE_NOT;
        n->child = child;
        return n;
    }
    return parse_predicate(p);
}

static bool eat_connective(parser *p, const char *sym, const char *word)
{
    skip_ws(p);
    if (strncmp(p->s + p->pos, sym, strlen(sym)) == 0) {
        p->pos += strlen(sym);
        return true;
    }
    if (at_keyword(p, word)) {
        p->pos += strlen(word);
        return true;
    }
    return false;
}

static qnode *parse_and(parser *p)
{
    qnode *n = parse_term(p);
    while (n && eat_connective(p, "&&", "and")) {
        qnode *r = parse_term(p);
        if (!r) {
            node_free(n);
            return NULL;
        }
        n = node_join(NODE_AND, n, r);
    }
    return n;
}

static qnode *parse_or(parser *p)
{
    qnode *n = parse_and(p);
    while (n && eat_connective(p, "||", "or")) {
        qnode *r = parse_and(p);
        if (!r) {
            node_free(n);
            return NULL;
        }
        n = node_join(NODE_OR, n, r);
    }
    return n;
}

int sched_query_parse(const char *expr, sched_query **ret, sk_err *err)
{
    *ret = NULL;
    if (!expr)
        return sk_err_set(err, SK_E_INVALID, "empty expression");
    size_t len = strnlen(expr, SCHED_QUERY_MAX_LEN + 1);
    if (len > SCHED_QUERY_MAX_LEN)
        return sk_err_set(err, SK_E_INVALID, "expression is longer than %d characters",
                          SCHED_QUERY_MAX_LEN);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) expr[i];
        if ((c < 0x20 && !is_ws((char) c)) || c == 0x7f)
            return sk_err_set(err, SK_E_INVALID, "invalid character 0x%02x at position %zu", c,
                              i + 1);
    }

    parser p = { .s = expr, .err = err };
    skip_ws(&p);
    if (!cur(&p))
        return sk_err_set(err, SK_E_INVALID, "empty expression");
    qnode *root = parse_or(&p);
    if (!root)
        return -1;
    skip_ws(&p);
    if (cur(&p)) {
        fail_unexpected(&p, p.pos);
        node_free(root);
        return -1;
    }
    sched_query *q = xmalloc(sizeof(*q));
    q->root = root;
    *ret = q;
    return 0;
}

void sched_query_free(sched_query *q)
{
    if (!q)
        return;
    node_free(q->root);
    free(q);
}

/* ---- evaluation ---- */

/* The subject's value on one instance. */
typedef struct qval {
    const char *str; /* string form */
    int64_t num;
    usec_t time;
    bool b;
    char buf[32];
} qval;

/* Fills v and returns whether the subject is present. The string form of the
 * typed subjects is only produced when want_str is set. */
static bool subject_value(const qpred *pred, const sched_query_target *t, bool want_str, qval *v)
{
    switch (pred->subj) {
    case SUBJ_AGENT_CONNECTED:
        v->b = t->agent_connected;
        v->str = v->b ? "true" : "false";
        return true;
    case SUBJ_AGENT_VERSION:
        v->str = t->agent_version;
        return v->str != NULL;
    case SUBJ_ATTRIBUTE:
        v->str = t->attribute ? t->attribute(t->userdata, pred->name) : NULL;
        return v->str != NULL;
    case SUBJ_EC2_INSTANCE_ID:
        v->str = t->ec2_instance_id;
        return v->str != NULL;
    case SUBJ_REGISTERED_AT:
        v->time = t->registered_at_usec;
        if (want_str) {
            format_rfc3339(v->time, v->buf);
            v->str = v->buf;
        }
        return true;
    case SUBJ_RUNNING_TASKS_COUNT:
        v->num = t->running_tasks_count;
        if (want_str) {
            snprintf(v->buf, sizeof(v->buf), "%u", t->running_tasks_count);
            v->str = v->buf;
        }
        return true;
    case SUBJ_TASK_GROUP:
        break;
    }
    return false;
}

static int value_cmp(const qpred *pred, const qval *v, const qarg *a)
{
    switch (pred->subj) {
    case SUBJ_AGENT_CONNECTED:
        return (v->b > a->b) - (v->b < a->b);
    case SUBJ_REGISTERED_AT:
        return (v->time > a->time) - (v->time < a->time);
    case SUBJ_RUNNING_TASKS_COUNT:
        return (v->num > a->num) - (v->num < a->num);
    case SUBJ_AGENT_VERSION:
        /* Arguments are valid versions; an instance reporting something else
         * compares as a string. */
        if (version_valid(v->str))
            return version_cmp(v->str, a->str);
        return generic_cmp(v->str, a->str);
    default:
        return generic_cmp(v->str, a->str);
    }
}

static bool eval_pred(const qpred *pred, const sched_query_target *t)
{
    bool r = false;
    if (pred->subj == SUBJ_TASK_GROUP) {
        for (size_t i = 0; !r && i < pred->n_args; i++)
            r = t->has_task_group && t->has_task_group(t->userdata, pred->args[i].str);
        return r != pred->negate;
    }

    qval v = { 0 };
    if (!subject_value(pred, t, pred->op == OP_MATCHES, &v))
        return pred->negate;
    switch (pred->op) {
    case OP_EXISTS:
        r = true;
        break;
    case OP_MATCHES:
        r = regexec(&pred->re, v.str, 0, NULL, 0) == 0;
        break;
    case OP_EQ:
    case OP_IN:
        for (size_t i = 0; !r && i < pred->n_args; i++)
            r = value_cmp(pred, &v, &pred->args[i]) == 0;
        break;
    case OP_GT:
        r = value_cmp(pred, &v, &pred->args[0]) > 0;
        break;
    case OP_GE:
        r = value_cmp(pred, &v, &pred->args[0]) >= 0;
        break;
    case OP_LT:
        r = value_cmp(pred, &v, &pred->args[0]) < 0;
        break;
    case OP_LE:
        r = value_cmp(pred, &v, &pred->args[0]) <= 0;
        break;
    }
    return r != pred->negate;
}

static bool eval_node(const qnode *n, const sched_query_target *t)
{
    switch (n->type) {
    case NODE_AND:
        for (size_t i = 0; i < n->kids.n; i++)
            if (!eval_node(n->kids.v[i], t))
                return false;
        return true;
    case NODE_OR:
        for (size_t i = 0; i < n->kids.n; i++)
            if (eval_node(n->kids.v[i], t))
                return true;
        return false;
    case NODE_NOT:
        return !eval_node(n->child, t);
    case NODE_PRED:
        return eval_pred(&n->pred, t);
    }
    return false;
}

/* A NULL query places no constraint and matches every instance. */
bool sched_query_eval(const sched_query *q, const sched_query_target *t)
{
    if (!q)
        return true;
    return eval_node(q->root, t);
}
