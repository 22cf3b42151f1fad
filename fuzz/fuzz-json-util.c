/* libFuzzer target for the JSON conventions every handler relies on: the js_*
 * accessors on arbitrary documents, js_public_copy (drops '_' members at any
 * depth), and the wire/store encoders (aws_json_dump, store_json_dump), whose
 * output must parse back and re-encode to the same bytes. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "shared/aws.h"
#include "shared/jsonutil.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool has_private(const json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *) v, k, e) {
            if (k[0] == '_' || has_private(e))
                return true;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (has_private(e))
                return true;
        }
    }
    return false;
}

static void check_dump(char *(*dump)(const json_t *, size_t *), const json_t *v)
{
    size_t len = 0;
    char *s = dump(v, &len);
    if (!s || strlen(s) != len)
        abort();
    json_error_t jerr;
    json_t *back = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!back)
        abort(); /* the encoder produced something its own parser rejects */
    size_t len2 = 0;
    char *s2 = dump(back, &len2);
    if (len2 != len || memcmp(s, s2, len) != 0)
        abort(); /* encoding is not stable */
    free(s2);
    json_decref(back);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    json_error_t jerr;
    json_t *v = json_loadb((const char *) data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v)
        return 0;
    static const char *const keys[] = { "name", "cpu", "essential", "tags", "_internal", "" };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        (void) js_str(v, keys[i]);
        (void) js_str_or(v, keys[i], "x");
        (void) js_int(v, keys[i], 7);
        (void) js_bool(v, keys[i], true);
        (void) js_has(v, keys[i]);
        (void) js_obj(v, keys[i]);
        (void) js_arr(v, keys[i]);
        (void) js_array_has_str(v, keys[i]);
    }
    json_t *pub = js_public_copy(v);
    if (!pub || has_private(pub))
        abort();
    if (!has_private(v) && !json_equal(v, pub))
        abort();
    check_dump(aws_json_dump, v);
    check_dump(store_json_dump, pub);
    if (json_is_object(pub)) {
        json_t *a = js_ensure_arr(pub, "list");
        json_t *o = js_ensure_obj(pub, "obj");
        if (!json_is_array(a) || !json_is_object(o) || js_arr(pub, "list") != a)
            abort();
        js_set_str(pub, "name", js_str(v, "name"));
        js_set_int(pub, "n", js_int(v, "n", 0));
        js_set_bool(pub, "b", js_bool(v, "b", false));
        js_set_time(pub, "t", 1700000000123456ULL);
        if (json_real_value(json_object_get(pub, "t")) != 1700000000.123)
            abort();
        js_set(pub, "list", NULL);
        if (js_has(pub, "list"))
            abort();
    }
    json_decref(pub);
    json_decref(v);
    return 0;
}
