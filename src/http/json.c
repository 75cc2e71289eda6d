/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request-body validator: one pass checks every member against its row of the table (and
 * finds unknown, duplicate and missing members), a second stores the values; so a failure
 * leaves the output untouched.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/macro.h"
#include "http/json.h"

static int fail(struct json_error *err, const char *code, const char *field, const char *fmt, ...)
    _printf_(4, 5);

static int fail(struct json_error *err, const char *code, const char *field, const char *fmt, ...)
{
        va_list ap;
        snprintf(err->code, sizeof(err->code), "%s", code);
        snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static const char *type_name(const cJSON *v)
{
        if (cJSON_IsString(v))
                return "a string";
        if (cJSON_IsNumber(v))
                return "a number";
        if (cJSON_IsBool(v))
                return "a boolean";
        if (cJSON_IsNull(v))
                return "null";
        if (cJSON_IsArray(v))
                return "an array";
        return "an object";
}

static const struct json_field *field_find(const struct json_field *fields, size_t n,
                                           const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (streq(fields[i].name, name))
                        return &fields[i];
        return NULL;
}

static int check_string(const struct json_field *f, const char *s, const char *what,
                        struct json_error *err)
{
        size_t len = strlen(s);
        size_t max = f->max > 0 ? (size_t)f->max : f->size - 1;
        if (max > f->size - 1)
                max = f->size - 1;
        if (len < (size_t)MAX(f->min, 0)) {
                if (len == 0)
                        return fail(err, "invalid_value", f->name, "%s: %s must not be empty",
                                    f->name, what);
                return fail(err, "out_of_range", f->name, "%s: %s must be at least %lld bytes long",
                            f->name, what, (long long)f->min);
        }
        if (len > max)
                return fail(err, "out_of_range", f->name, "%s: %s is longer than %zu bytes",
                            f->name, what, max);
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)s[i] < 0x20)
                        return fail(err, "invalid_value", f->name,
                                    "%s: %s contains a control character", f->name, what);
        return 0;
}

static int check_member(const struct json_field *f, const cJSON *v, struct json_error *err)
{
        switch (f->type) {
        case JSON_T_STRING:
                if (!cJSON_IsString(v))
                        return fail(err, "wrong_type", f->name, "%s: expected a string, got %s",
                                    f->name, type_name(v));
                return check_string(f, v->valuestring, "the value", err);
        case JSON_T_ENUM: {
                if (!cJSON_IsString(v))
                        return fail(err, "wrong_type", f->name, "%s: expected a string, got %s",
                                    f->name, type_name(v));
                for (size_t i = 0; f->choices[i]; i++)
                        if (streq(v->valuestring, f->choices[i]))
                                return 0;
                char list[160] = "";
                for (size_t i = 0; f->choices[i]; i++) {
                        size_t l = strlen(list);
                        snprintf(list + l, sizeof(list) - l, "%s\"%s\"", i ? ", " : "",
                                 f->choices[i]);
                }
                /* Quote at most 64 bytes of what was sent. */
                return fail(err, "invalid_value", f->name, "%s: \"%.64s\" is not one of %s",
                            f->name, v->valuestring, list);
        }
        case JSON_T_BOOL:
                if (!cJSON_IsBool(v))
                        return fail(err, "wrong_type", f->name, "%s: expected a boolean, got %s",
                                    f->name, type_name(v));
                return 0;
        case JSON_T_INT: {
                if (!cJSON_IsNumber(v))
                        return fail(err, "wrong_type", f->name, "%s: expected an integer, got %s",
                                    f->name, type_name(v));
                double d = v->valuedouble;
                if (!isfinite(d) || d != floor(d))
                        return fail(err, "wrong_type", f->name, "%s: expected an integer, got %g",
                                    f->name, d);
                if (d < (double)f->min || d > (double)f->max)
                        return fail(err, "out_of_range", f->name,
                                    "%s: %.0f is out of range [%lld, %lld]", f->name, d,
                                    (long long)f->min, (long long)f->max);
                return 0;
        }
        case JSON_T_STRING_ARRAY: {
                if (!cJSON_IsArray(v))
                        return fail(err, "wrong_type", f->name, "%s: expected an array, got %s",
                                    f->name, type_name(v));
                int64_t n = cJSON_GetArraySize(v);
                if (n < f->min || n > f->max)
                        return fail(err, "out_of_range", f->name,
                                    "%s: expected %lld to %lld items, got %lld", f->name,
                                    (long long)f->min, (long long)f->max, (long long)n);
                int i = 0;
                const cJSON *item;
                cJSON_ArrayForEach(item, v)
                {
                        char what[32];
                        snprintf(what, sizeof(what), "item %d", i);
                        if (!cJSON_IsString(item))
                                return fail(err, "wrong_type", f->name,
                                            "%s: item %d: expected a string, got %s", f->name, i,
                                            type_name(item));
                        struct json_field one = *f;
                        one.min = 1;
                        one.max = 0;
                        int r = check_string(&one, item->valuestring, what, err);
                        if (r < 0)
                                return r;
                        i++;
                }
                return 0;
        }
        }
        return fail(err, "invalid_value", f->name, "%s: unsupported field type", f->name);
}

void json_string_array_free(char **items, size_t n)
{
        if (!items)
                return;
        for (size_t i = 0; i < n; i++)
                free(items[i]);
        free(items);
}

static int store_member(const struct json_field *f, const cJSON *v, void *out)
{
        char *base = (char *)out + f->offset;
        switch (f->type) {
        case JSON_T_STRING:
        case JSON_T_ENUM:
                snprintf(base, f->size, "%s", v->valuestring);
                return 0;
        case JSON_T_BOOL:
                *(bool *)base = cJSON_IsTrue(v);
                return 0;
        case JSON_T_INT:
                *(int64_t *)base = (int64_t)v->valuedouble;
                return 0;
        case JSON_T_STRING_ARRAY: {
                size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
                char **items = calloc(n ? n : 1, sizeof(char *));
                if (!items)
                        return -ENOMEM;
                const cJSON *item;
                cJSON_ArrayForEach(item, v)
                {
                        items[i] = strdup(item->valuestring);
                        if (!items[i]) {
                                json_string_array_free(items, i);
                                return -ENOMEM;
                        }
                        i++;
                }
                *(char ***)base = items;
                *(size_t *)((char *)out + f->count_offset) = n;
                return 0;
        }
        }
        return -EINVAL;
}

int json_parse_object(const char *body, size_t len, bool empty_ok, const struct json_field *fields,
                      size_t n, void *out, unsigned *ret_present, struct json_error *err)
{
        size_t ws = 0;
        while (ws < len && strchr(" \t\r\n", body[ws]))
                ws++;
        if (ws == len && !empty_ok)
                return fail(err, "malformed_json", NULL, "the request body must be a JSON object");
        if (ws == len) {
                body = "{}";
                len = 2;
        }
        const char *end = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
        if (!root) {
                size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
                return fail(err, "malformed_json", NULL, "malformed JSON at byte %zu", at);
        }
        /* Only white space may follow the value. */
        size_t at = (size_t)(end - body);
        while (at < len && strchr(" \t\r\n", body[at]))
                at++;
        int r = 0;
        if (at < len) {
                r = fail(err, "malformed_json", NULL,
                         "malformed JSON at byte %zu: unexpected data after the object", at);
                goto out;
        }
        if (!cJSON_IsObject(root)) {
                r = fail(err, "malformed_json", NULL,
                         "the request body must be a JSON object, "
                         "not %s",
                         type_name(root));
                goto out;
        }

        /* Pass 1: check everything. */
        const cJSON *m;
        cJSON_ArrayForEach(m, root)
        {
                const struct json_field *f = field_find(fields, n, m->string);
                if (!f) {
                        r = fail(err, "unknown_field", m->string, "%.64s: unknown field",
                                 m->string);
                        goto out;
                }
                for (const cJSON *p = root->child; p != m; p = p->next)
                        if (streq(p->string, m->string)) {
                                r = fail(err, "duplicate_field", f->name,
                                         "%s: given more than once", f->name);
                                goto out;
                        }
                if (cJSON_IsNull(m) && !f->required)
                        continue; /* null = not given */
                r = check_member(f, m, err);
                if (r < 0)
                        goto out;
        }
        for (size_t i = 0; i < n; i++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, fields[i].name);
                if (fields[i].required && !v) {
                        r = fail(err, "missing_field", fields[i].name, "%s: required",
                                 fields[i].name);
                        goto out;
                }
        }

        /* Pass 2: store. */
        unsigned present = 0;
        cJSON_ArrayForEach(m, root)
        {
                const struct json_field *f = field_find(fields, n, m->string);
                if (cJSON_IsNull(m))
                        continue;
                r = store_member(f, m, out);
                if (r < 0)
                        goto out;
                present |= f->present_bit;
        }
        if (ret_present)
                *ret_present = present;
out:
        cJSON_Delete(root);
        return r;
}
