/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Request bodies: a small declarative validator. A table of fields (name, type, required,
 * bounds, where to store it) decides whether a JSON object is acceptable; the first problem
 * found is reported with a stable code, a message that names the field, and the field itself.
 * Nothing is stored in the output struct unless the whole object is valid.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type {
        JSON_T_STRING,       /* into char[size] at offset; length in [min, max] bytes */
        JSON_T_BOOL,         /* into bool */
        JSON_T_INT,          /* into int64_t; an integral number in [min, max] */
        JSON_T_ENUM,         /* a string among choices, into char[size] */
        JSON_T_STRING_ARRAY, /* into char ** at offset and size_t at count_offset; each item
                                a string of [1, size - 1] bytes; [min, max] items */
};

struct json_field {
        const char *name;
        enum json_type type;
        bool required;
        size_t offset;
        size_t size; /* strings: the array's size (max length is size - 1) */
        int64_t min, max;
        const char *const *choices; /* NULL-terminated, for JSON_T_ENUM */
        size_t count_offset;        /* JSON_T_STRING_ARRAY */
        unsigned present_bit;       /* or-ed into *ret_present when the field is given */
};

struct json_error {
        char code[32]; /* "malformed_json", "wrong_type", "unknown_field", "missing_field",
                          "out_of_range", "invalid_value", "duplicate_field" */
        char message[256];
        char field[64];
};

/*
 * Parse `body` (`len` bytes, need not be NUL-terminated; an empty body is treated as `{}` when
 * `empty_ok`) as one JSON object whose members are all in `fields` (n entries), and store them
 * into `out` (the struct the offsets refer to). String arrays are allocated (caller frees each
 * item and the array, also on failure: json_string_array_free()). *ret_present gets the
 * present_bit of each member given (may be NULL).
 *
 * Returns 0, or -EINVAL with *err filled (out is then untouched, except that nothing is
 * allocated into it); -ENOMEM. Any thread.
 */
int json_parse_object(const char *body, size_t len, bool empty_ok, const struct json_field *fields,
                      size_t n, void *out, unsigned *ret_present, struct json_error *err);

void json_string_array_free(char **items, size_t n);
