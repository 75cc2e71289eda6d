/* SPDX-License-Identifier: Apache-2.0 */
/* strbuf: appends, formatting, growth and detach. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/strbuf.h"

static void test_append_and_detach(void **state)
{
        struct strbuf sb = STRBUF_INIT;
        assert_string_equal(strbuf_str(&sb), "");
        strbuf_adds(&sb, "lease");
        strbuf_addch(&sb, ' ');
        strbuf_addf(&sb, "%s=%d", "transitions", 3);
        assert_string_equal(strbuf_str(&sb), "lease transitions=3");
        assert_int_equal(sb.len, strlen("lease transitions=3"));
        char *s = strbuf_detach(&sb);
        assert_string_equal(s, "lease transitions=3");
        assert_null(sb.buf);
        free(s);
}

static void test_growth(void **state)
{
        struct strbuf sb = STRBUF_INIT;
        for (int i = 0; i < 10000; i++)
                strbuf_addf(&sb, "%04d", i % 10000);
        assert_int_equal(sb.len, 40000);
        assert_memory_equal(sb.buf + 39996, "9999", 4);
        strbuf_reset(&sb);
        assert_string_equal(strbuf_str(&sb), "");
        strbuf_release(&sb);
}

static void test_detach_empty(void **state)
{
        struct strbuf sb = STRBUF_INIT;
        char *s = strbuf_detach(&sb);
        assert_non_null(s);
        assert_string_equal(s, "");
        free(s);
}

static void test_embedded_nul(void **state)
{
        struct strbuf sb = STRBUF_INIT;
        strbuf_add(&sb, "a\0b", 3);
        assert_int_equal(sb.len, 3);
        assert_memory_equal(sb.buf, "a\0b", 4);
        strbuf_release(&sb);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_append_and_detach),
            cmocka_unit_test(test_growth),
            cmocka_unit_test(test_detach_empty),
            cmocka_unit_test(test_embedded_nul),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
