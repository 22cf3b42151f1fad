#include "jsonutil.h"

#include <string.h>

#include "basic/timeutil.h"

const char *js_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

const char *js_str_or(const json_t *o, const char *key, const char *def)
{
    const char *s = js_str(o, key);
    return s ? s : def;
}

int64_t js_int(const json_t *o, const char *key, int64_t def)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= -9.2e18 && d <= 9.2e18)) /* also false for NaN */
            return def;
        return (int64_t) d;
    }
    return def;
}

bool js_bool(const json_t *o, const char *key, bool def)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

bool js_has(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return v && !json_is_null(v);
}

json_t *js_obj(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_object(v) ? v : NULL;
}

json_t *js_arr(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_array(v) ? v : NULL;
}

void js_set(json_t *o, const char *key, json_t *value)
{
    if (value)
        json_object_set_new(o, key, value);
    else
        json_object_del(o, key);
}

void js_set_str(json_t *o, const char *key, const char *value)
{
    js_set(o, key, value ? json_string(value) : NULL);
}

void js_set_int(json_t *o, const char *key, int64_t v)
{
    json_object_set_new(o, key, json_integer(v));
}

void js_set_bool(json_t *o, const char *key, bool v)
{
    json_object_set_new(o, key, json_boolean(v));
}

void js_set_time(json_t *o, const char *key, uint64_t usec)
{
    json_object_set_new(o, key, json_real(usec_to_epoch(usec)));
}

json_t *js_ensure_arr(json_t *o, const char *key)
{
    json_t *a = json_object_get(o, key);
    if (!json_is_array(a)) {
        a = json_array();
        json_object_set_new(o, key, a);
    }
    return a;
}

json_t *js_ensure_obj(json_t *o, const char *key)
{
    json_t *a = json_object_get(o, key);
    if (!json_is_object(a)) {
        a = json_object();
        json_object_set_new(o, key, a);
    }
    return a;
}

bool js_array_has_str(const json_t *a, const char *s)
{
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e) {
        const char *v = json_string_value(e);
        if (v && strcmp(v, s) == 0)
            return true;
    }
    return false;
}

json_t *js_public_copy(const json_t *v)
{
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *e;
        json_object_foreach((json_t *) v, k, e) {
            if (k[0] == '_')
                continue;
            json_object_set_new(o, k, js_public_copy(e));
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
            json_array_append_new(a, js_public_copy(e));
        return a;
    }
    return json_deep_copy(v);
}
