/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request-body validator: each kind of problem gets its code, a message naming the field,
 * and the field; a failure stores nothing; a success stores every given member and its bit.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/macro.h"
#include "http/json.h"

struct body {
        char name[8];
        bool on;
        int64_t count;
        char mode[8];
        char **items;
        size_t n_items;
};

static const char *const modes[] = {"fast", "slow", NULL};

#define O(f) .offset = offsetof(struct body, f)
static const struct json_field fields[] = {
    {.name = "name",
     .type = JSON_T_STRING,
     .required = true,
     O(name),
     .size = 8,
     .min = 1,
     .present_bit = 1},
    {.name = "on", .type = JSON_T_BOOL, O(on), .present_bit = 2},
    {.name = "count", .type = JSON_T_INT, O(count), .min = -5, .max = 100, .present_bit = 4},
    {.name = "mode", .type = JSON_T_ENUM, O(mode), .size = 8, .choices = modes, .present_bit = 8},
    {.name = "items",
     .type = JSON_T_STRING_ARRAY,
     O(items),
     .size = 4,
     .min = 1,
     .max = 3,
     .count_offset = offsetof(struct body, n_items),
     .present_bit = 16},
};

static int parse(const char *text, struct body *b, unsigned *present, struct json_error *e)
{
        memset(b, 0, sizeof(*b));
        snprintf(b->name, sizeof(b->name), "keep");
        memset(e, 0, sizeof(*e));
        return json_parse_object(text, strlen(text), false, fields, ELEMENTSOF(fields), b, present,
                                 e);
}

static void test_valid(void **state)
{
        struct body b;
        struct json_error e;
        unsigned present = 0;
        assert_int_equal(parse(" {\"name\":\"abc\",\"on\":true,\"count\":-5,\"mode\":\"slow\","
                               "\"items\":[\"a\",\"bcd\"]}\n",
                               &b, &present, &e),
                         0);
        assert_string_equal(b.name, "abc");
        assert_true(b.on);
        assert_int_equal(b.count, -5);
        assert_string_equal(b.mode, "slow");
        assert_int_equal(b.n_items, 2);
        assert_string_equal(b.items[1], "bcd");
        assert_int_equal(present, 31);
        json_string_array_free(b.items, b.n_items);

        /* null means "not given" for optional members. */
        assert_int_equal(parse("{\"name\":\"x\",\"count\":null}", &b, &present, &e), 0);
        assert_int_equal(present, 1);
        assert_int_equal(b.count, 0);

        /* An empty body is {} only when allowed. */
        assert_int_equal(json_parse_object("", 0, true, NULL, 0, &b, NULL, &e), 0);
        assert_int_equal(json_parse_object("  ", 2, false, NULL, 0, &b, NULL, &e), -EINVAL);
        assert_string_equal(e.code, "malformed_json");
}

static void test_errors(void **state)
{
        static const struct {
                const char *text, *code, *field, *message;
        } cases[] = {
            {"{\"name\":", "malformed_json", "", "malformed JSON at byte 7"},
            {"{\"name\":\"a\"} x", "malformed_json", "",
             "malformed JSON at byte 13: unexpected data after the object"},
            {"\"name\"", "malformed_json", "",
             "the request body must be a JSON object, not a string"},
            {"{\"name\":\"a\",\"size\":1}", "unknown_field", "size", "size: unknown field"},
            {"{\"on\":true}", "missing_field", "name", "name: required"},
            {"{\"name\":null}", "wrong_type", "name", "name: expected a string, got null"},
            {"{\"name\":\"a\",\"on\":1}", "wrong_type", "on",
             "on: expected a boolean, got a number"},
            {"{\"name\":\"a\",\"count\":\"3\"}", "wrong_type", "count",
             "count: expected an integer, got a string"},
            {"{\"name\":\"a\",\"count\":2.5}", "wrong_type", "count",
             "count: expected an integer, got 2.5"},
            {"{\"name\":\"a\",\"count\":101}", "out_of_range", "count",
             "count: 101 is out of range [-5, 100]"},
            {"{\"name\":\"a\",\"count\":1e300}", "out_of_range", "count", NULL},
            {"{\"name\":\"12345678\"}", "out_of_range", "name",
             "name: the value is longer than 7 bytes"},
            {"{\"name\":\"\"}", "invalid_value", "name", "name: the value must not be empty"},
            {"{\"name\":\"a\\nb\"}", "invalid_value", "name",
             "name: the value contains a control character"},
            {"{\"name\":\"a\",\"mode\":\"medium\"}", "invalid_value", "mode",
             "mode: \"medium\" is not one of \"fast\", \"slow\""},
            {"{\"name\":\"a\",\"items\":[]}", "out_of_range", "items",
             "items: expected 1 to 3 items, got 0"},
            {"{\"name\":\"a\",\"items\":[\"a\",true]}", "wrong_type", "items",
             "items: item 1: expected a string, got a boolean"},
            {"{\"name\":\"a\",\"items\":[\"abcd\"]}", "out_of_range", "items",
             "items: item 0 is longer than 3 bytes"},
            {"{\"name\":\"a\",\"items\":{}}", "wrong_type", "items",
             "items: expected an array, got an object"},
            {"{\"name\":\"a\",\"name\":\"b\"}", "duplicate_field", "name",
             "name: given more than once"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct body b;
                struct json_error e;
                unsigned present = 99;
                assert_int_equal(parse(cases[i].text, &b, &present, &e), -EINVAL);
                if (!streq(e.code, cases[i].code) || !streq(e.field, cases[i].field) ||
                    (cases[i].message && !streq(e.message, cases[i].message)))
                        fail_msg("%s: got %s/%s/\"%s\"", cases[i].text, e.code, e.field, e.message);
                /* Nothing stored. */
                assert_string_equal(b.name, "keep");
                assert_null(b.items);
                assert_int_equal(present, 99);
        }
}

static void test_not_nul_terminated(void **state)
{
        /* The body is a length-delimited buffer; bytes after it are not read. */
        const char text[] = "{\"name\":\"ab\"}GARBAGE";
        struct body b = {0};
        struct json_error e;
        assert_int_equal(
            json_parse_object(text, 13, false, fields, ELEMENTSOF(fields), &b, NULL, &e), 0);
        assert_string_equal(b.name, "ab");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_valid),
            cmocka_unit_test(test_errors),
            cmocka_unit_test(test_not_nul_terminated),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
