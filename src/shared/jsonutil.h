/* Small conveniences over jansson (prefix js_). Getters return a default when
 * the member is absent or has another type; they never allocate. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "basic/macro.h"

const char *js_str(const json_t *o, const char *key); /* NULL when absent */
const char *js_str_or(const json_t *o, const char *key, const char *def);
int64_t js_int(const json_t *o, const char *key, int64_t def);
bool js_bool(const json_t *o, const char *key, bool def);
bool js_has(const json_t *o, const char *key);    /* present and not null */
json_t *js_obj(const json_t *o, const char *key); /* borrowed object or NULL */
json_t *js_arr(const json_t *o, const char *key); /* borrowed array or NULL */
/* Sets o[key] = value, stealing the reference; value NULL removes the key. */
void js_set(json_t *o, const char *key, json_t *value);
void js_set_str(json_t *o, const char *key, const char *value); /* NULL removes */
void js_set_int(json_t *o, const char *key, int64_t v);
void js_set_bool(json_t *o, const char *key, bool v);
void js_set_time(json_t *o, const char *key, uint64_t usec); /* epoch seconds, ms precision */
/* Ensures o[key] is an array and returns it (borrowed). */
json_t *js_ensure_arr(json_t *o, const char *key);
json_t *js_ensure_obj(json_t *o, const char *key);
bool js_array_has_str(const json_t *a, const char *s);
/* Deep copy with every member whose name starts with '_' removed (internal fields). */
json_t *js_public_copy(const json_t *v);

/* jansson provides json_decrefp() for cleanup attributes. */
#define _cleanup_json_ _cleanup_(json_decrefp)
