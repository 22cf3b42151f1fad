#include "model.h"

#include <math.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/strutil.h"
#include "digest.h"

#define MAX_REPORTED 10

typedef struct vctx {
    const model_service *svc;
    const char *vtype;
    sk_buf msgs;
    unsigned nerr;
    bool serialization;
    char *ser_msg;
} vctx;

static int cmp_op(const void *key, const void *elem)
{
    return strcmp(key, ((const model_op *) elem)->name);
}

const model_op *model_find_op(const model_service *svc, const char *name)
{
    return bsearch(name, svc->ops, svc->nops, sizeof(model_op), cmp_op);
}

static int cmp_shape(const void *key, const void *elem)
{
    return strcmp(key, ((const model_shape *) elem)->name);
}

int model_find_shape(const model_service *svc, const char *name)
{
    const model_shape *s = bsearch(name, svc->shapes, svc->nshapes, sizeof(model_shape), cmp_shape);
    return s ? (int) (s - svc->shapes) : -1;
}

bool model_enum_contains(const model_service *svc, uint16_t shape, const char *value)
{
    const model_shape *s = &svc->shapes[shape];
    if (!s->nenum)
        return true;
    for (unsigned i = 0; i < s->nenum; i++)
        if (streq(svc->enums[s->enum_off + i], value))
            return true;
    return false;
}

static const char *kind_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "START_OBJECT";
    case JSON_ARRAY:
        return "START_ARRAY";
    case JSON_STRING:
        return "STRING_VALUE";
    case JSON_INTEGER:
        return "NUMBER_VALUE";
    case JSON_REAL:
        return "NUMBER_VALUE";
    case JSON_TRUE:
        return "VALUE_TRUE";
    case JSON_FALSE:
        return "VALUE_FALSE";
    default:
        return "VALUE_NULL";
    }
}

static void ser_error(vctx *c, const json_t *v, const char *target)
{
    if (c->serialization)
        return;
    c->serialization = true;
    if (json_is_object(v))
        c->ser_msg = xstrdup("Start of structure or map found where not expected.");
    else if (json_is_array(v))
        c->ser_msg = xstrdup("Start of list found where not expected");
    else
        c->ser_msg = xasprintf("%s can not be converted to %s", kind_name(v), target);
}

static void describe_value(sk_buf *b, const json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(s), cut = MIN(n, (size_t) 64);
        /* Never split a UTF-8 sequence: the message must stay valid JSON text. */
        while (cut < n && cut > 0 && ((unsigned char) s[cut] & 0xC0) == 0x80)
            cut--;
        sk_buf_printf(b, "'%.*s%s'", (int) cut, s, n > cut ? "..." : "");
    } else if (json_is_integer(v))
        sk_buf_printf(b, "'%lld'", (long long) json_integer_value(v));
    else if (json_is_null(v) || !v)
        sk_buf_puts(b, "null");
    else
        sk_buf_puts(b, "'[...]'");
}

static void constraint(vctx *c, const char *path, const json_t *v, const char *fmt, ...)
        _printf_(4, 5);
static void constraint(vctx *c, const char *path, const json_t *v, const char *fmt, ...)
{
    c->nerr++;
    if (c->nerr > MAX_REPORTED)
        return;
    if (c->msgs.len)
        sk_buf_puts(&c->msgs, "; ");
    sk_buf_puts(&c->msgs, "Value ");
    describe_value(&c->msgs, v);
    sk_buf_printf(&c->msgs, " at '%s' failed to satisfy constraint: ", path);
    va_list ap;
    va_start(ap, fmt);
    char *m = xvasprintf(fmt, ap);
    va_end(ap);
    sk_buf_puts(&c->msgs, m);
    free(m);
}

static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char) *s & 0xC0) != 0x80)
            n++;
    return n;
}

static void validate(vctx *c, uint16_t shape_idx, const json_t *v, const char *path);

static char *sub_path(const char *path, const char *name)
{
    return *path ? xasprintf("%s.%s", path, name) : xstrdup(name);
}

static void validate_struct(vctx *c, const model_shape *s, const json_t *v, const char *path)
{
    if (!json_is_object(v)) {
        ser_error(c, v, "Structure");
        return;
    }
    for (unsigned i = 0; i < s->nmembers; i++) {
        const model_member *m = &c->svc->members[s->member_off + i];
        const json_t *mv = json_object_get(v, m->name);
        if (!mv || json_is_null(mv)) {
            if (m->required) {
                _cleanup_free_ char *p = sub_path(path, m->name);
                constraint(c, p, NULL, "Member must not be null");
            }
            continue;
        }
        _cleanup_free_ char *p = sub_path(path, m->name);
        validate(c, m->shape, mv, p);
        if (c->serialization)
            return;
    }
}

static void validate(vctx *c, uint16_t shape_idx, const json_t *v, const char *path)
{
    const model_shape *s = &c->svc->shapes[shape_idx];
    switch ((model_type) s->type) {
    case MODEL_STRUCT:
        validate_struct(c, s, v, path);
        return;
    case MODEL_LIST: {
        if (!json_is_array(v)) {
            ser_error(c, v, "List");
            return;
        }
        size_t n = json_array_size(v);
        if ((s->flags & MODEL_HAS_MIN) && (int64_t) n < s->min)
            constraint(c, path, v, "Member must have length greater than or equal to %lld",
                       (long long) s->min);
        if ((s->flags & MODEL_HAS_MAX) && (int64_t) n > s->max)
            constraint(c, path, v, "Member must have length less than or equal to %lld",
                       (long long) s->max);
        for (size_t i = 0; i < n; i++) {
            char idx[24];
            snprintf(idx, sizeof(idx), "%zu", i + 1);
            _cleanup_free_ char *p = sub_path(path, idx);
            const json_t *e = json_array_get(v, i);
            if (json_is_null(e)) {
                constraint(c, p, NULL, "Member must not be null");
                continue;
            }
            validate(c, s->elem, e, p);
            if (c->serialization)
                return;
        }
        return;
    }
    case MODEL_MAP: {
        if (!json_is_object(v)) {
            ser_error(c, v, "Map");
            return;
        }
        size_t n = json_object_size(v);
        if ((s->flags & MODEL_HAS_MIN) && (int64_t) n < s->min)
            constraint(c, path, v, "Member must have length greater than or equal to %lld",
                       (long long) s->min);
        if ((s->flags & MODEL_HAS_MAX) && (int64_t) n > s->max)
            constraint(c, path, v, "Member must have length less than or equal to %lld",
                       (long long) s->max);
        const char *k;
        json_t *e;
        json_object_foreach((json_t *) v, k, e) {
            _cleanup_free_ char *p = sub_path(path, k);
            json_t *ks = json_string(k);
            if (ks) {
                validate(c, s->key, ks, p);
                json_decref(ks);
            }
            if (json_is_null(e))
                constraint(c, p, NULL, "Member must not be null");
            else
                validate(c, s->elem, e, p);
            if (c->serialization)
                return;
        }
        return;
    }
    case MODEL_STRING: {
        if (!json_is_string(v)) {
            ser_error(c, v, "String");
            return;
        }
        const char *str = json_string_value(v);
        size_t n = utf8_len(str);
        if ((s->flags & MODEL_HAS_MIN) && (int64_t) n < s->min)
            constraint(c, path, v, "Member must have length greater than or equal to %lld",
                       (long long) s->min);
        if ((s->flags & MODEL_HAS_MAX) && (int64_t) n > s->max)
            constraint(c, path, v, "Member must have length less than or equal to %lld",
                       (long long) s->max);
        if (s->nenum && !model_enum_contains(c->svc, shape_idx, str)) {
            sk_buf set;
            sk_buf_init(&set, 4096);
            for (unsigned i = 0; i < s->nenum; i++)
                sk_buf_printf(&set, "%s%s", i ? ", " : "", c->svc->enums[s->enum_off + i]);
            constraint(c, path, v, "Member must satisfy enum value set: [%s]",
                       set.data ? set.data : "");
            sk_buf_done(&set);
        }
        return;
    }
    case MODEL_INTEGER:
    case MODEL_LONG: {
        if (!json_is_integer(v)) {
            ser_error(c, v, s->type == MODEL_INTEGER ? "Integer" : "Long");
            return;
        }
        json_int_t x = json_integer_value(v);
        if (s->type == MODEL_INTEGER && (x < INT32_MIN || x > INT32_MAX)) {
            ser_error(c, v, "Integer");
            return;
        }
        if ((s->flags & MODEL_HAS_MIN) && x < s->min)
            constraint(c, path, v, "Member must have value greater than or equal to %lld",
                       (long long) s->min);
        if ((s->flags & MODEL_HAS_MAX) && x > s->max)
            constraint(c, path, v, "Member must have value less than or equal to %lld",
                       (long long) s->max);
        return;
    }
    case MODEL_DOUBLE:
        if (!json_is_number(v))
            ser_error(c, v, "Double");
        else if (!isfinite(json_number_value(v)))
            ser_error(c, v, "Double");
        return;
    case MODEL_BOOLEAN:
        if (!json_is_boolean(v))
            ser_error(c, v, "Boolean");
        return;
    case MODEL_TIMESTAMP:
        if (!json_is_number(v) && !json_is_string(v))
            ser_error(c, v, "Timestamp");
        return;
    case MODEL_BLOB: {
        if (!json_is_string(v)) {
            ser_error(c, v, "Blob");
            return;
        }
        const char *str = json_string_value(v);
        uint8_t *out = NULL;
        size_t outlen;
        if (base64_decode(str, strlen(str), &out, &outlen) < 0) {
            if (!c->serialization) {
                c->serialization = true;
                c->ser_msg = xstrdup("Base64 encoded value is malformed.");
            }
            return;
        }
        free(out);
        if ((s->flags & MODEL_HAS_MIN) && (int64_t) outlen < s->min)
            constraint(c, path, v, "Member must have length greater than or equal to %lld",
                       (long long) s->min);
        if ((s->flags & MODEL_HAS_MAX) && (int64_t) outlen > s->max)
            constraint(c, path, v, "Member must have length less than or equal to %lld",
                       (long long) s->max);
        return;
    }
    case MODEL_DOCUMENT:
        return;
    }
}

int model_validate(const model_service *svc, uint16_t shape, const json_t *v,
                   const char *validation_type, sk_err *err)
{
    if (shape == MODEL_NONE)
        return 0;
    vctx c = { .svc = svc, .vtype = validation_type };
    sk_buf_init(&c.msgs, 16384);
    validate(&c, shape, v, "");
    int r = 0;
    if (c.serialization) {
        r = sk_err_typed(err, SK_E_INVALID, "SerializationException", "%s", c.ser_msg);
    } else if (c.nerr) {
        r = sk_err_typed(err, SK_E_INVALID, validation_type, "%u validation error%s detected: %s",
                         c.nerr, c.nerr == 1 ? "" : "s", c.msgs.data ? c.msgs.data : "");
    }
    free(c.ser_msg);
    sk_buf_done(&c.msgs);
    return r;
}
