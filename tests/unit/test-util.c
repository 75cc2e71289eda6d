/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing and validation helpers: numbers, addresses, Kubernetes names, files. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/macro.h"
#include "core/util.h"

static void test_parse_int64(void **state)
{
        int64_t v = 7;
        assert_int_equal(parse_int64("42", &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(parse_int64("-9", &v), 0);
        assert_int_equal(v, -9);
        assert_int_equal(parse_int64("", &v), -EINVAL);
        assert_int_equal(parse_int64(" 4", &v), -EINVAL);
        assert_int_equal(parse_int64("4 ", &v), -EINVAL);
        assert_int_equal(parse_int64("4x", &v), -EINVAL);
        assert_int_equal(parse_int64("99999999999999999999", &v), -ERANGE);
        assert_int_equal(v, -9);
}

static void test_parse_double(void **state)
{
        double d;
        assert_int_equal(parse_double("0.5", &d), 0);
        assert_true(d == 0.5);
        assert_int_equal(parse_double("1e3", &d), 0);
        assert_true(d == 1000);
        assert_int_equal(parse_double("nan", &d), -EINVAL);
        assert_int_equal(parse_double("inf", &d), -EINVAL);
        assert_int_equal(parse_double("0x10", &d), -EINVAL);
        assert_int_equal(parse_double("1e999", &d), -ERANGE);
}

static void test_host_port(void **state)
{
        char *host = NULL;
        uint16_t port = 0;
        assert_int_equal(parse_host_port("127.0.0.1:6379", &host, &port), 0);
        assert_string_equal(host, "127.0.0.1");
        assert_int_equal(port, 6379);
        free(host);
        assert_int_equal(parse_host_port("[::1]:8080", &host, &port), 0);
        assert_string_equal(host, "::1");
        assert_int_equal(port, 8080);
        free(host);
        assert_int_equal(parse_host_port("redis.svc.cluster.local:1", &host, &port), 0);
        free(host);
        static const char *const bad[] = {"localhost", ":80",    "host:0", "host:65536",
                                          "host:",     "::1:80", "a b:1",  "[::1]80"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (parse_host_port(bad[i], &host, &port) != -EINVAL)
                        fail_msg("accepted \"%s\"", bad[i]);
}

static void test_kubernetes_names(void **state)
{
        assert_true(is_dns1123_label("redis-system"));
        assert_false(is_dns1123_label("Redis"));
        assert_false(is_dns1123_label("-a"));
        assert_false(is_dns1123_label("a.b"));
        assert_true(is_dns1123_subdomain("persistd-leader"));
        assert_true(is_dns1123_subdomain("a.b-c.d"));
        assert_false(is_dns1123_subdomain("Bad_Name"));
        assert_false(is_dns1123_subdomain("a..b"));
        assert_false(is_dns1123_subdomain(""));
        assert_true(is_label_key("persistd.io/leader"));
        assert_true(is_label_key("app"));
        assert_true(is_label_key("app.kubernetes.io/name"));
        assert_false(is_label_key("persistd.io/"));
        assert_false(is_label_key("/leader"));
        assert_false(is_label_key("Bad_Prefix/x"));
        assert_true(is_label_value("true"));
        assert_true(is_label_value(""));
        assert_false(is_label_value("-x"));
        assert_false(is_label_value("a b"));
}

static void test_secret_file(void **state)
{
        char path[] = "/tmp/persistd-test-secret-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "t0ken \n\n", 8), 8);
        close(fd);
        char *s = NULL;
        assert_int_equal(read_secret_file(path, &s), 0);
        assert_string_equal(s, "t0ken");
        secret_free(s);
        assert_int_equal(read_secret_file("/nonexistent", &s), -ENOENT);
        unlink(path);
}

static void test_consttime_compare(void **state)
{
        assert_true(streq_consttime("abc", "abc"));
        assert_false(streq_consttime("abd", "abc"));
        assert_false(streq_consttime("ab", "abc"));
        assert_false(streq_consttime("abcd", "abc"));
        assert_false(streq_consttime("", "abc"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse_int64), cmocka_unit_test(test_parse_double),
            cmocka_unit_test(test_host_port),   cmocka_unit_test(test_kubernetes_names),
            cmocka_unit_test(test_secret_file), cmocka_unit_test(test_consttime_compare),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
