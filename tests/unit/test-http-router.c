/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Route matching (captures, 404, 405 with the Allow list, 414 for long segments) and the bearer
 * token comparison.
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
#include "http/router.h"
#include "http/server.h"

static const struct router_route routes[] = {
    {"GET", "/v1/tasks", "list"},         {"POST", "/v1/tasks", "create"},
    {"GET", "/v1/tasks/{id}", "get"},     {"PUT", "/v1/tasks/{id}", "put"},
    {"PATCH", "/v1/tasks/{id}", "patch"}, {"POST", "/v1/tasks/{id}/run", "run"},
    {"GET", "/v1/a/{x}/b/{y}", "two"},    {"GET", "/healthz", "health"},
};

static const char *find(const char *method, const char *path, struct router_match *m)
{
        int r = router_find(routes, ELEMENTSOF(routes), method, path, m);
        if (r == -ENOENT)
                return "404";
        if (r == -EPERM)
                return "405";
        if (r == -ENAMETOOLONG)
                return "414";
        assert_int_equal(r, 0);
        return m->route->data;
}

static void test_match(void **state)
{
        struct router_match m;
        assert_string_equal(find("GET", "/v1/tasks", &m), "list");
        assert_int_equal(m.n_params, 0);
        assert_string_equal(find("POST", "/v1/tasks", &m), "create");
        assert_string_equal(find("GET", "/v1/tasks/t-1", &m), "get");
        assert_int_equal(m.n_params, 1);
        assert_string_equal(m.params[0], "t-1");
        assert_string_equal(find("POST", "/v1/tasks/t.2/run", &m), "run");
        assert_string_equal(m.params[0], "t.2");
        assert_string_equal(find("GET", "/v1/a/one/b/two", &m), "two");
        assert_int_equal(m.n_params, 2);
        assert_string_equal(m.params[0], "one");
        assert_string_equal(m.params[1], "two");
        assert_string_equal(find("GET", "/healthz", &m), "health");
}

static void test_no_match(void **state)
{
        struct router_match m;
        const char *paths[] = {"/",
                               "",
                               "/v1",
                               "/v1/tasks/",
                               "/v1/tasks//run",
                               "/v1//tasks",
                               "/v1/tasks/x/run/now",
                               "/healthzz",
                               "/healthz/",
                               "v1/tasks",
                               "/V1/tasks",
                               "/v1/a/x/b"};
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (!streq(find("GET", paths[i], &m), "404"))
                        fail_msg("\"%s\" matched", paths[i]);
}

static void test_method_not_allowed(void **state)
{
        struct router_match m;
        assert_string_equal(find("DELETE", "/v1/tasks", &m), "405");
        assert_string_equal(m.allow, "GET, POST");
        assert_string_equal(find("POST", "/v1/tasks/x", &m), "405");
        assert_string_equal(m.allow, "GET, PUT, PATCH");
        assert_string_equal(find("GET", "/v1/tasks/x/run", &m), "405");
        assert_string_equal(m.allow, "POST");
        assert_string_equal(find("get", "/healthz", &m), "405"); /* methods are case-sensitive */
}

static void test_too_long(void **state)
{
        struct router_match m;
        char path[2048];
        snprintf(path, sizeof(path), "/v1/tasks/");
        memset(path + 10, 'a', ROUTER_SEGMENT_MAX - 1);
        path[10 + ROUTER_SEGMENT_MAX - 1] = '\0';
        assert_string_equal(find("GET", path, &m), "get");
        assert_int_equal(strlen(m.params[0]), ROUTER_SEGMENT_MAX - 1);
        strcat(path, "a");
        assert_string_equal(find("GET", path, &m), "414");
        memset(path, '/', sizeof(path) - 1);
        path[sizeof(path) - 1] = '\0';
        assert_string_equal(find("GET", path, &m), "414");
}

static void test_token_equal(void **state)
{
        const char *tok = "s3cret-token";
        assert_true(http_token_equal("s3cret-token", 12, tok));
        assert_false(http_token_equal("s3cret-toke", 11, tok));
        assert_false(http_token_equal("s3cret-tokenn", 13, tok));
        assert_false(http_token_equal("s3cret-tokeN", 12, tok));
        assert_false(http_token_equal("", 0, tok));
        /* A presented value that repeats the token (the comparison cycles over it). */
        assert_false(http_token_equal("s3cret-tokens3cret-token", 24, tok));
        /* Only the first presented_len bytes count. */
        assert_true(http_token_equal("s3cret-tokenXYZ", 12, tok));
        /* An empty expected token matches nothing, not even the empty string. */
        assert_false(http_token_equal("", 0, ""));
        assert_false(http_token_equal("x", 1, NULL));
        /* Embedded NUL in what was presented does not end the comparison early. */
        assert_false(http_token_equal("s3cret\0token", 12, tok));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_match),
            cmocka_unit_test(test_no_match),
            cmocka_unit_test(test_method_not_allowed),
            cmocka_unit_test(test_too_long),
            cmocka_unit_test(test_token_equal),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
