/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's pure parts: SQLSTATE to errno, scrubbing passwords out of messages, cutting text
 * at character boundaries, enum spellings (the schema's CHECK values), the migration list.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/migrations.h"
#include "store/pgstore-internal.h"
#include "store/pgstore.h"

static void test_sqlstate_mapping(void **state)
{
        assert_int_equal(pgstore_errno_from_sqlstate("23505"), -EEXIST);
        assert_int_equal(pgstore_errno_from_sqlstate("23503"), -EINVAL);
        assert_int_equal(pgstore_errno_from_sqlstate("23514"), -EINVAL);
        assert_int_equal(pgstore_errno_from_sqlstate("23502"), -EINVAL);
        assert_int_equal(pgstore_errno_from_sqlstate("22P02"), -EINVAL);
        assert_int_equal(pgstore_errno_from_sqlstate("57014"), -ETIMEDOUT);
        assert_int_equal(pgstore_errno_from_sqlstate("55P03"), -ETIMEDOUT);
        assert_int_equal(pgstore_errno_from_sqlstate("08006"), -ENOTCONN);
        assert_int_equal(pgstore_errno_from_sqlstate("57P01"), -ENOTCONN);
        assert_int_equal(pgstore_errno_from_sqlstate("40001"), -EAGAIN);
        assert_int_equal(pgstore_errno_from_sqlstate("40P01"), -EAGAIN);
        assert_int_equal(pgstore_errno_from_sqlstate("42P01"), -EIO);
        assert_int_equal(pgstore_errno_from_sqlstate(NULL), -EIO);
        assert_int_equal(pgstore_errno_from_sqlstate("235"), -EIO);
}

static void test_scrub_removes_passwords(void **state)
{
        char *s = pgstore_scrub("connection to \"db\" as hunter2 failed; hunter2 again", "hunter2");
        assert_string_equal(s, "connection to \"db\" as *** failed; *** again");
        free(s);
        /* Whatever the password, anything that looks like a secret is redacted too. */
        s = pgstore_scrub("bad DSN: host=h password=other dbname=x", NULL);
        assert_null(strstr(s, "other"));
        free(s);
        s = pgstore_scrub("nothing here", "");
        assert_string_equal(s, "nothing here");
        free(s);
        assert_null(pgstore_scrub(NULL, "x"));
}

static void test_dsn_password(void **state)
{
        char *pw = pgstore_dsn_password("host=h password='s e cret' dbname=d");
        assert_string_equal(pw, "s e cret");
        free(pw);
        pw = pgstore_dsn_password("postgresql://u:p%40ss@h/db");
        assert_string_equal(pw, "p@ss");
        free(pw);
        assert_null(pgstore_dsn_password("host=h dbname=d"));
        assert_null(pgstore_dsn_password(""));
        assert_null(pgstore_dsn_password("host='unterminated"));
}

static void test_copy_utf8_cuts_at_characters(void **state)
{
        char buf[6];
        pgstore_copy_utf8(buf, sizeof(buf), "abcdefgh");
        assert_string_equal(buf, "abcde");
        pgstore_copy_utf8(buf, sizeof(buf), "ab\xc3\xa9\xc3\xa9"); /* abéé: 6 bytes */
        assert_string_equal(buf, "ab\xc3\xa9");
        pgstore_copy_utf8(buf, sizeof(buf), "\xe2\x82\xac\xe2\x82\xac"); /* €€ */
        assert_string_equal(buf, "\xe2\x82\xac");
        pgstore_copy_utf8(buf, sizeof(buf), NULL);
        assert_string_equal(buf, "");
}

static void test_enum_spellings(void **state)
{
        enum pgstore_run_state st;
        enum pgstore_run_kind k;
        enum pgstore_action a;
        enum pgstore_misfire m;
        enum pgstore_pass_state ps;

        for (int i = 0; i < PGSTORE_RUN_STATE_COUNT; i++) {
                assert_int_equal(pgstore_run_state_from_string(pgstore_run_state_to_string(i), &st),
                                 0);
                assert_int_equal(st, i);
        }
        for (int i = 0; i < PGSTORE_RUN_KIND_COUNT; i++) {
                assert_int_equal(pgstore_run_kind_from_string(pgstore_run_kind_to_string(i), &k),
                                 0);
                assert_int_equal(k, i);
        }
        assert_string_equal(pgstore_run_state_to_string(PGSTORE_RUN_TIMED_OUT), "timed_out");
        assert_string_equal(pgstore_run_state_to_string(99), "?");
        assert_int_equal(pgstore_action_from_string("bgrewriteaof", &a), 0);
        assert_int_equal(a, PGSTORE_ACTION_BGREWRITEAOF);
        assert_int_equal(pgstore_action_from_string("BGSAVE", &a), -EINVAL);
        assert_int_equal(pgstore_misfire_from_string("skip", &m), 0);
        assert_int_equal(m, PGSTORE_MISFIRE_SKIP);
        assert_int_equal(pgstore_pass_state_from_string("paused", &ps), 0);
        assert_int_equal(ps, PGSTORE_PASS_PAUSED);
        assert_int_equal(pgstore_run_kind_from_string(NULL, &k), -EINVAL);
        assert_false(pgstore_run_state_is_final(PGSTORE_RUN_CLAIMED));
        assert_false(pgstore_run_state_is_final(PGSTORE_RUN_RUNNING));
        assert_true(pgstore_run_state_is_final(PGSTORE_RUN_MISSED));
}

static void test_migrations_are_ordered(void **state)
{
        assert_true(pgstore_migrations_count >= 1);
        for (size_t i = 0; i < pgstore_migrations_count; i++) {
                assert_int_equal(pgstore_migrations[i].version, (int)i + 1);
                assert_non_null(pgstore_migrations[i].name);
                assert_non_null(pgstore_migrations[i].sql[0]);
        }
        assert_int_equal(pgstore_schema_version(), (int)pgstore_migrations_count);
}

static void test_offline_store_fails_fast(void **state)
{
        /* A Unix socket directory with no server: connecting fails at once, offline. */
        const struct pgstore_options o = {.dsn = "host=/nonexistent-persistd-test dbname=x",
                                          .connect_timeout_s = 1};
        struct pgstore *s = pgstore_new(&o);
        assert_non_null(s);
        assert_false(pgstore_is_connected(s));
        assert_int_equal(pgstore_ping(s), -ENOTCONN);
        assert_non_null(strstr(pgstore_errstr(), "cannot connect to PostgreSQL"));
        int64_t epoch;
        assert_int_equal(pgstore_epoch_bump(s, "x", &epoch), -ENOTCONN);
        assert_non_null(strstr(pgstore_errstr(), "next attempt"));
        pgstore_free(s);
        pgstore_free(NULL);
        pgstore_listener_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_sqlstate_mapping),
            cmocka_unit_test(test_scrub_removes_passwords),
            cmocka_unit_test(test_dsn_password),
            cmocka_unit_test(test_copy_utf8_cuts_at_characters),
            cmocka_unit_test(test_enum_spellings),
            cmocka_unit_test(test_migrations_are_ordered),
            cmocka_unit_test(test_offline_store_fails_fast),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
