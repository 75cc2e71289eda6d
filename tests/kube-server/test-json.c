/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kube-test-server's JSON helpers, offline: Go's MicroTime parsing and its error texts, name
 * and label validation, merge and JSON patches, label and field selectors.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ks.h"

static void expect_time(const char *in, const char *want)
{
        char out[32];
        char *e = ks_microtime_parse(in, out);
        if (e)
                fail_msg("%s: %s", in, e);
        assert_string_equal(out, want);
}

static void expect_time_error(const char *in, const char *want)
{
        char out[32];
        char *e = ks_microtime_parse(in, out);
        assert_non_null(e);
        assert_string_equal(e, want);
        free(e);
}

static void test_microtime(void **state)
{
        expect_time("2026-11-21T13:41:23.728240Z", "2026-11-21T13:41:23.728240Z");
        expect_time("2024-05-01T12:00:00.123456+02:00", "2024-05-01T10:00:00.123456Z");
        expect_time("2024-12-31T23:30:00.000001-01:00", "2025-01-01T00:30:00.000001Z");
        /* the transcripts' five refusals, word for word */
        expect_time_error(
            "2024-05-01T10:00:00Z",
            "parsing time \"2024-05-01T10:00:00Z\" as "
            "\"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"Z\" as \".000000\"");
        expect_time_error("2024-05-01T10:00:00.123Z",
                          "parsing time \"2024-05-01T10:00:00.123Z\" as "
                          "\"2006-01-02T15:04:05.000000Z07:00\": cannot parse \".123Z\" as "
                          "\".000000\"");
        expect_time_error("2024-05-01T10:00:00.123456789Z",
                          "parsing time \"2024-05-01T10:00:00.123456789Z\" as "
                          "\"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"789Z\" as "
                          "\"Z07:00\"");
        expect_time_error("2024-05-01T10:00:00.123456z",
                          "parsing time \"2024-05-01T10:00:00.123456z\" as "
                          "\"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"z\" as \"Z07:00\"");
        expect_time_error(
            "2024-05-01 10:00:00.123456Z",
            "parsing time \"2024-05-01 10:00:00.123456Z\" as "
            "\"2006-01-02T15:04:05.000000Z07:00\": cannot parse \" 10:00:00.123456Z\" "
            "as \"T\"");
        expect_time_error("2024-13-01T10:00:00.123456Z",
                          "parsing time \"2024-13-01T10:00:00.123456Z\": month out of range");
        expect_time_error("2023-02-29T10:00:00.123456Z",
                          "parsing time \"2023-02-29T10:00:00.123456Z\": day out of range");
        expect_time_error("2024-05-01T10:00:00.123456Zx",
                          "parsing time \"2024-05-01T10:00:00.123456Zx\": extra text: \"x\"");
        expect_time_error("", "parsing time \"\" as \"2006-01-02T15:04:05.000000Z07:00\": cannot "
                              "parse \"\" as \"2006\"");
}

static void test_names_and_labels(void **state)
{
        char *e;

        assert_null(ks_check_dns_subdomain("redis-orchestrator-leader"));
        assert_null(ks_check_dns_subdomain("orchestrator-0.leader-elected-1"));
        assert_non_null(e = ks_check_dns_subdomain("Bad_Name"));
        assert_non_null(strstr(e, "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
        free(e);
        assert_non_null(e = ks_check_dns_subdomain("a..b"));
        free(e);
        assert_non_null(e = ks_check_dns_subdomain("-a"));
        free(e);
        assert_null(ks_check_label_value(""));
        assert_null(ks_check_label_value("leader"));
        assert_null(ks_check_label_value("a.b_c-9"));
        assert_non_null(e = ks_check_label_value("has spaces!"));
        free(e);
        assert_non_null(e = ks_check_label_value("-x"));
        free(e);
        assert_null(ks_check_label_key("redis.example.com/role"));
        assert_null(ks_check_label_key("app"));
        assert_non_null(e = ks_check_label_key("Bad_Prefix/x"));
        free(e);
        assert_non_null(e = ks_check_label_key("a/"));
        free(e);
}

static void test_merge_patch(void **state)
{
        cJSON *doc = cJSON_Parse("{\"metadata\":{\"labels\":{\"app\":\"x\",\"a\":\"b\"}},"
                                 "\"spec\":{\"n\":1}}");
        cJSON *patch = cJSON_Parse("{\"metadata\":{\"labels\":{\"a\":null,\"c\":\"d\"}},"
                                   "\"spec\":5}");
        cJSON *out = ks_merge_patch(doc, patch);
        char *s = cJSON_PrintUnformatted(out);
        assert_string_equal(s,
                            "{\"metadata\":{\"labels\":{\"app\":\"x\",\"c\":\"d\"}},\"spec\":5}");
        /* the target is not changed */
        char *t = cJSON_PrintUnformatted(doc);
        assert_non_null(strstr(t, "\"a\":\"b\""));
        free(s);
        free(t);
        cJSON_Delete(out);
        cJSON_Delete(patch);
        cJSON_Delete(doc);
}

static void expect_patch(const char *doc_text, const char *ops_text, int rc, const char *want)
{
        cJSON *doc = cJSON_Parse(doc_text), *ops = cJSON_Parse(ops_text);
        assert_int_equal(ks_json_patch(doc, ops), rc);
        if (want) {
                char *s = cJSON_PrintUnformatted(doc);
                assert_string_equal(s, want);
                free(s);
        }
        cJSON_Delete(doc);
        cJSON_Delete(ops);
}

static void test_json_patch(void **state)
{
        const char *doc = "{\"metadata\":{\"labels\":{\"app\":\"x\"}},\"l\":[1,2]}";

        expect_patch(doc,
                     "[{\"op\":\"add\",\"path\":\"/metadata/labels/redis.example.com~1role\","
                     "\"value\":\"leader\"}]",
                     0,
                     "{\"metadata\":{\"labels\":{\"app\":\"x\",\"redis.example.com/role\":"
                     "\"leader\"}},\"l\":[1,2]}");
        expect_patch(doc,
                     "[{\"op\":\"replace\",\"path\":\"/metadata/labels/app\",\"value\":\"y\"}]", 0,
                     "{\"metadata\":{\"labels\":{\"app\":\"y\"}},\"l\":[1,2]}");
        expect_patch(doc, "[{\"op\":\"remove\",\"path\":\"/metadata/labels/app\"}]", 0,
                     "{\"metadata\":{\"labels\":{}},\"l\":[1,2]}");
        expect_patch(doc,
                     "[{\"op\":\"add\",\"path\":\"/l/-\",\"value\":3},{\"op\":\"remove\","
                     "\"path\":\"/l/0\"},{\"op\":\"add\",\"path\":\"/a~0b\",\"value\":1}]",
                     0, "{\"metadata\":{\"labels\":{\"app\":\"x\"}},\"l\":[2,3],\"a~b\":1}");
        expect_patch(doc, "[{\"op\":\"remove\",\"path\":\"/metadata/labels/not-there\"}]", -EINVAL,
                     NULL);
        expect_patch(doc,
                     "[{\"op\":\"test\",\"path\":\"/metadata/labels/app\",\"value\":\"nope\"}]",
                     -EINVAL, NULL);
        expect_patch(doc, "[{\"op\":\"test\",\"path\":\"/metadata/labels/app\",\"value\":\"x\"}]",
                     0, NULL);
        expect_patch(doc, "[{\"op\":\"add\",\"path\":\"/no/such/parent\",\"value\":1}]", -EINVAL,
                     NULL);
        expect_patch(doc, "[{\"op\":\"move\",\"from\":\"/l\",\"path\":\"/m\"}]", -EINVAL, NULL);
        expect_patch(doc, "{\"op\":\"add\"}", -EINVAL, NULL);
}

static bool selects(const char *selector, const char *labels_text)
{
        char *err = NULL;
        struct ks_selector *s = ks_selector_parse(selector, &err);
        if (!s)
                fail_msg("%s: %s", selector, err);
        cJSON *labels = cJSON_Parse(labels_text);
        bool m = ks_selector_match(s, labels);
        cJSON_Delete(labels);
        ks_selector_free(s);
        return m;
}

static void test_label_selectors(void **state)
{
        const char *l = "{\"a\":\"b\",\"app\":\"redis-orchestrator\"}";

        assert_true(selects("a=b", l));
        assert_true(selects("a==b", l));
        assert_false(selects("a!=b", l));
        assert_true(selects("a!=c", l));
        assert_true(selects("x!=c", l));
        assert_true(selects("a", l));
        assert_false(selects("!a", l));
        assert_true(selects("!x", l));
        assert_true(selects("a=b,app=redis-orchestrator", l));
        assert_false(selects("a=b,app=other", l));
        assert_true(selects("a in (x, b)", l));
        assert_false(selects("a notin (x,b)", l));
        assert_true(selects(" a = b ", l));
        assert_true(selects("", l));

        char *err = NULL;
        assert_null(ks_selector_parse("a===b", &err));
        assert_string_equal(err, "unable to parse requirement: found '=', expected: identifier");
        free(err);
        assert_null(ks_selector_parse("a in b", &err));
        free(err);
        assert_null(ks_selector_parse("a=b,", &err));
        free(err);
}

static void test_field_selectors(void **state)
{
        cJSON *o = cJSON_Parse("{\"metadata\":{\"name\":\"orchestrator-0\"},\"involvedObject\":"
                               "{\"name\":\"p\",\"kind\":\"Pod\"}}");

        assert_true(ks_field_match("metadata.name=orchestrator-0", o));
        assert_true(ks_field_match("metadata.name==orchestrator-0", o));
        assert_false(ks_field_match("metadata.name!=orchestrator-0", o));
        assert_true(ks_field_match("involvedObject.name=p,involvedObject.kind=Pod", o));
        assert_false(ks_field_match("involvedObject.name=p,involvedObject.kind=Lease", o));
        assert_true(ks_field_match("", o));
        cJSON_Delete(o);
}

static void test_status(void **state)
{
        cJSON *s = ks_status(404, "NotFound", "pods \"x\" not found", ks_details("x", "", "pods"));
        char *t = cJSON_PrintUnformatted(s);
        assert_string_equal(t, "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                               "\"status\":\"Failure\",\"message\":\"pods \\\"x\\\" not found\","
                               "\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":"
                               "\"pods\"},\"code\":404}");
        free(t);
        cJSON_Delete(s);
}

static void test_print_and_pretty(void **state)
{
        cJSON *o = cJSON_Parse("{\"a\":\"x<y & z>\",\"b\":{},\"c\":[],\"d\":[1,{\"e\":\":,{\"}]}");
        char *s = ks_print(o);
        assert_string_equal(s, "{\"a\":\"x\\u003cy \\u0026 z\\u003e\",\"b\":{},\"c\":[],\"d\":"
                               "[1,{\"e\":\":,{\"}]}");
        char *p = ks_pretty(s);
        assert_string_equal(p, "{\n  \"a\": \"x\\u003cy \\u0026 z\\u003e\",\n  \"b\": {},\n"
                               "  \"c\": [],\n  \"d\": [\n    1,\n    {\n      \"e\": \":,{\"\n"
                               "    }\n  ]\n}");
        free(p);
        free(s);
        cJSON_Delete(o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_microtime),       cmocka_unit_test(test_names_and_labels),
            cmocka_unit_test(test_merge_patch),     cmocka_unit_test(test_json_patch),
            cmocka_unit_test(test_label_selectors), cmocka_unit_test(test_field_selectors),
            cmocka_unit_test(test_status),          cmocka_unit_test(test_print_and_pretty),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
