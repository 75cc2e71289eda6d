/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: JSON and text lines, levels, escaping, and secrets that never reach the output. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "core/log.h"

#define LOG_MODULE "test"

/* Run `emit` with the log going to a pipe; return what was written (caller frees). */
static char *capture(enum log_level level, enum log_format format, void (*emit)(void))
{
        int fds[2];
        char *buf = calloc(1, 65536);
        assert_int_equal(pipe(fds), 0);
        log_setup(level, format, fds[1]);
        emit();
        log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON, STDERR_FILENO);
        close(fds[1]);
        size_t len = 0;
        ssize_t n;
        while ((n = read(fds[0], buf + len, 65535 - len)) > 0)
                len += (size_t)n;
        close(fds[0]);
        return buf;
}

static void emit_levels(void)
{
        log_debug("hidden %d", 1);
        log_info("shown \"quoted\"\nsecond line");
        log_error("Failed to open \"x\": %s", strerror(ENOENT));
}

static void test_json_lines(void **state)
{
        char *out = capture(LOG_LEVEL_INFO, LOG_FORMAT_JSON, emit_levels);
        char *line2 = strchr(out, '\n');
        assert_non_null(line2);
        *line2++ = '\0';
        assert_null(strstr(out, "hidden"));

        cJSON *j = cJSON_Parse(out);
        assert_non_null(j);
        assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "info");
        assert_string_equal(cJSON_GetObjectItem(j, "module")->valuestring, "test");
        assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring,
                            "shown \"quoted\"\nsecond line");
        assert_non_null(cJSON_GetObjectItem(j, "ts"));
        cJSON_Delete(j);

        j = cJSON_Parse(line2);
        assert_non_null(j);
        assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "error");
        assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring,
                            "Failed to open \"x\": No such file or directory");
        cJSON_Delete(j);
        free(out);
}

static void test_text_lines(void **state)
{
        char *out = capture(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT, emit_levels);
        /* Three lines: one per message, the embedded newline folded. */
        int lines = 0;
        for (char *p = out; *p; p++)
                lines += *p == '\n';
        assert_int_equal(lines, 3);
        assert_non_null(strstr(out, " debug test: hidden 1\n"));
        assert_non_null(strstr(out, " info  test: shown \"quoted\" second line\n"));
        free(out);
}

static void emit_secrets(void)
{
        log_info("connecting with host=db user=app password=hunter2 dbname=x");
        log_info("dsn postgresql://app:hunter2@db:5432/x");
        log_info("header Authorization: Bearer abc.def.ghi");
        log_info("body {\"password\":\"hunter2\",\"token\": \"abc.def.ghi\"}");
        log_info("AUTH default hunter2 is not logged, but password: 'hunter2' would be");
}

static void test_secrets_never_logged(void **state)
{
        char *out = capture(LOG_LEVEL_INFO, LOG_FORMAT_JSON, emit_secrets);
        assert_null(strstr(out, "hunter2 dbname"));
        assert_null(strstr(out, ":hunter2@"));
        assert_null(strstr(out, "abc.def.ghi"));
        assert_null(strstr(out, "'hunter2'"));
        assert_null(strstr(out, "\\\"hunter2"));
        assert_non_null(strstr(out, "password=*** dbname=x"));
        assert_non_null(strstr(out, "postgresql://app:***@db:5432/x"));
        assert_non_null(strstr(out, "Bearer ***"));
        free(out);
}

static void test_redact_leaves_other_text(void **state)
{
        char *r = redact_secrets("password_file=/etc/secret tokens=3 passwordless");
        assert_string_equal(r, "password_file=/etc/secret tokens=3 passwordless");
        free(r);
        r = redact_secrets("http://host:8080/path");
        assert_string_equal(r, "http://host:8080/path");
        free(r);
        r = redact_secrets("redis://:pw@host:6379");
        assert_string_equal(r, "redis://:***@host:6379");
        free(r);
}

static void test_level_names(void **state)
{
        enum log_level l;
        enum log_format f;
        assert_int_equal(log_level_from_string("warn", &l), 0);
        assert_int_equal(l, LOG_LEVEL_WARN);
        assert_int_equal(log_level_from_string("WARNING", &l), -EINVAL);
        assert_int_equal(log_format_from_string("text", &f), 0);
        assert_int_equal(f, LOG_FORMAT_TEXT);
        assert_int_equal(log_format_from_string("xml", &f), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_json_lines),
            cmocka_unit_test(test_text_lines),
            cmocka_unit_test(test_secrets_never_logged),
            cmocka_unit_test(test_redact_leaves_other_text),
            cmocka_unit_test(test_level_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
