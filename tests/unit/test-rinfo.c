/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The INFO parser on real INFO replies captured from Debian's redis-server 7.0 (idle, during
 * BGSAVE, during BGREWRITEAOF, with a scheduled BGSAVE, after a failed save, during a diskless
 * replication transfer, a replica) and on texts built from the documented formats of Redis
 * 2.4, 2.8, 3.2, 4.0, 5.0 and 6.2; plus the caps on hostile input.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/macro.h"
#include "core/util.h"
#include "redis/rinfo.h"

static char *read_data(const char *name)
{
        char *path, *text;
        assert_true(asprintf(&path, "%s/tests/unit/data/%s", SOURCE_ROOT, name) > 0);
        assert_int_equal(read_full_file(path, RINFO_MAX_BYTES, &text, NULL), 0);
        free(path);
        return text;
}

static void parse_file(const char *name, struct rinfo *info)
{
        char *text = read_data(name);
        assert_int_equal(rinfo_parse(text, strlen(text), info), 0);
        assert_int_equal(info->n_malformed, 0);
        assert_false(info->truncated);
        free(text);
}

static void test_idle(void **state)
{
        struct rinfo i;
        (void)state;
        parse_file("info-7.0-idle.txt", &i);
        assert_true(i.has_version);
        assert_string_equal(i.version, "7.0.15");
        assert_int_equal(i.version_num, 70015);
        assert_true(rinfo_version_at_least(&i, 7, 0));
        assert_false(rinfo_version_at_least(&i, 7, 2));
        assert_true(i.has_run_id);
        assert_int_equal(strlen(i.run_id), 40);
        assert_true(i.has_config_file);
        assert_string_equal(i.config_file, "");
        assert_true(i.has_used_memory);
        assert_true(i.used_memory > 1000000);
        assert_true(i.has_loading && !i.loading);
        assert_true(i.has_rdb_bgsave_in_progress && !i.rdb_bgsave_in_progress);
        assert_true(i.has_rdb_saves);
        assert_int_equal(i.rdb_saves, 0);
        assert_true(i.has_rdb_last_save_time && i.rdb_last_save_time > 1700000000);
        assert_true(i.has_rdb_last_bgsave_status);
        assert_int_equal(i.rdb_last_bgsave_status, RINFO_STATUS_OK);
        assert_true(i.has_aof_rewrite_in_progress && !i.aof_rewrite_in_progress);
        assert_true(i.has_aof_rewrites);
        assert_true(i.has_total_forks && i.has_latest_fork_usec);
        assert_true(i.has_role);
        assert_int_equal(i.role, RINFO_ROLE_MASTER);
        assert_true(i.has_rdb_changes_since_last_save);
        assert_int_equal(i.rdb_changes_since_last_save, 0); /* DEBUG POPULATE is not a change */
}

static void test_during_bgsave(void **state)
{
        struct rinfo idle, i, after;
        (void)state;
        parse_file("info-7.0-idle.txt", &idle);
        parse_file("info-7.0-bgsave.txt", &i);
        parse_file("info-7.0-after-bgsave.txt", &after);
        assert_true(i.rdb_bgsave_in_progress);
        /* rdb_saves counts the attempt as soon as the fork is tried... */
        assert_int_equal(i.rdb_saves, idle.rdb_saves + 1);
        /* ...while the save time moves only when the file is written. */
        assert_int_equal(i.rdb_last_save_time, idle.rdb_last_save_time);
        assert_true(i.rdb_current_bgsave_time_sec >= 0);
        assert_false(after.rdb_bgsave_in_progress);
        assert_int_equal(after.rdb_saves, i.rdb_saves);
        assert_true(after.rdb_last_save_time > i.rdb_last_save_time);
        assert_int_equal(after.rdb_last_bgsave_status, RINFO_STATUS_OK);
        assert_true(after.rdb_last_bgsave_time_sec >= 0);
}

static void test_during_bgrewriteaof(void **state)
{
        struct rinfo i, s;
        (void)state;
        parse_file("info-7.0-bgrewriteaof.txt", &i);
        assert_true(i.aof_rewrite_in_progress);
        assert_false(i.rdb_bgsave_in_progress);
        assert_int_equal(i.aof_rewrites, 1);
        assert_true(i.has_aof_last_bgrewrite_status);
        /* BGSAVE SCHEDULE while the rewrite runs: nothing visible but the AOF child. */
        parse_file("info-7.0-bgsave-scheduled.txt", &s);
        assert_true(s.aof_rewrite_in_progress);
        assert_false(s.rdb_bgsave_in_progress);
        assert_int_equal(s.rdb_saves, i.rdb_saves);
}

static void test_failed_save(void **state)
{
        struct rinfo i;
        (void)state;
        parse_file("info-7.0-failed-bgsave.txt", &i);
        assert_false(i.rdb_bgsave_in_progress);
        assert_int_equal(i.rdb_last_bgsave_status, RINFO_STATUS_ERR);
        assert_int_equal(i.rdb_saves, 3);
}

static void test_diskless_transfer(void **state)
{
        struct rinfo failed, d, after;
        (void)state;
        parse_file("info-7.0-failed-bgsave.txt", &failed);
        parse_file("info-7.0-diskless-transfer.txt", &d);
        parse_file("info-7.0-master-after-diskless.txt", &after);
        /* An RDB child that is a replication transfer to a socket: it is "in progress"... */
        assert_true(d.rdb_bgsave_in_progress);
        /* ...but counts no save and writes no file, and the last status is still the old one. */
        assert_int_equal(d.rdb_saves, failed.rdb_saves);
        assert_int_equal(d.rdb_last_save_time, failed.rdb_last_save_time);
        assert_int_equal(d.rdb_last_bgsave_status, RINFO_STATUS_ERR);
        assert_false(after.rdb_bgsave_in_progress);
        assert_int_equal(after.rdb_saves, failed.rdb_saves);
        assert_int_equal(after.rdb_last_save_time, failed.rdb_last_save_time);
}

static void test_replica(void **state)
{
        struct rinfo loading, r;
        (void)state;
        parse_file("info-7.0-replica-loading.txt", &loading);
        assert_int_equal(loading.role, RINFO_ROLE_REPLICA);
        assert_true(loading.has_master_sync_in_progress && loading.master_sync_in_progress);
        parse_file("info-7.0-replica.txt", &r);
        assert_int_equal(r.role, RINFO_ROLE_REPLICA);
        assert_false(r.master_sync_in_progress);
        assert_false(r.loading);
}

static void test_crlf_and_lf_agree(void **state)
{
        char *text = read_data("info-7.0-bgsave.txt");
        size_t n = strlen(text), m = 0;
        char *crlf = malloc(2 * n + 1);
        struct rinfo a, b;
        (void)state;

        if (!crlf)
                abort();
        for (size_t i = 0; i < n; i++) {
                if (text[i] == '\n')
                        crlf[m++] = '\r';
                crlf[m++] = text[i];
        }
        assert_int_equal(rinfo_parse(text, n, &a), 0);
        assert_int_equal(rinfo_parse(crlf, m, &b), 0);
        assert_memory_equal(&a, &b, sizeof(a));
        free(text);
        free(crlf);
}

/* Redis 2.4: no sections, the persistence fields without the rdb_ prefix, no status. */
static const char info_24[] = "redis_version:2.4.17\r\n"
                              "redis_git_sha1:00000000\r\n"
                              "arch_bits:64\r\n"
                              "process_id:1234\r\n"
                              "uptime_in_seconds:86400\r\n"
                              "used_memory:1048576\r\n"
                              "used_memory_human:1.00M\r\n"
                              "loading:0\r\n"
                              "aof_enabled:0\r\n"
                              "changes_since_last_save:12\r\n"
                              "bgsave_in_progress:1\r\n"
                              "last_save_time:1330000000\r\n"
                              "bgrewriteaof_in_progress:0\r\n"
                              "role:master\r\n"
                              "db0:keys=10,expires=0\r\n";

static void test_redis_24(void **state)
{
        struct rinfo i;
        (void)state;
        assert_int_equal(rinfo_parse(info_24, strlen(info_24), &i), 0);
        assert_int_equal(i.version_num, 20417);
        assert_false(i.has_run_id);
        assert_false(i.has_config_file);
        assert_true(i.has_rdb_bgsave_in_progress && i.rdb_bgsave_in_progress);
        assert_int_equal(i.rdb_last_save_time, 1330000000);
        assert_int_equal(i.rdb_changes_since_last_save, 12);
        assert_true(i.has_aof_rewrite_in_progress && !i.aof_rewrite_in_progress);
        assert_false(i.has_rdb_last_bgsave_status);
        assert_false(i.has_rdb_saves);
        assert_false(i.has_latest_fork_usec);
        assert_false(rinfo_version_at_least(&i, 2, 6));
}

/* Redis 2.8 / 3.2 / 4.0 / 5.0 share the persistence section; no rdb_saves before 7.0. */
static const char info_28_persistence[] = "# Persistence\r\n"
                                          "loading:0\r\n"
                                          "rdb_changes_since_last_save:0\r\n"
                                          "rdb_bgsave_in_progress:0\r\n"
                                          "rdb_last_save_time:1500000000\r\n"
                                          "rdb_last_bgsave_status:err\r\n"
                                          "rdb_last_bgsave_time_sec:2\r\n"
                                          "rdb_current_bgsave_time_sec:-1\r\n"
                                          "aof_enabled:1\r\n"
                                          "aof_rewrite_in_progress:1\r\n"
                                          "aof_rewrite_scheduled:0\r\n"
                                          "aof_last_rewrite_time_sec:-1\r\n"
                                          "aof_current_rewrite_time_sec:3\r\n"
                                          "aof_last_bgrewrite_status:ok\r\n"
                                          "aof_last_write_status:ok\r\n";

static void test_redis_28_to_50(void **state)
{
        const char *versions[] = {"2.8.24", "3.2.12", "4.0.14", "5.0.14"};
        (void)state;
        for (size_t v = 0; v < 4; v++) {
                char text[2048];
                struct rinfo i;
                snprintf(text, sizeof(text),
                         "# Server\r\nredis_version:%s\r\nrun_id:%040d\r\nconfig_file:/etc/redis/"
                         "redis.conf\r\n\r\n# Memory\r\nused_memory:2147483648\r\n\r\n%s\r\n"
                         "# Stats\r\nlatest_fork_usec:1500\r\n\r\n# Replication\r\nrole:slave\r\n"
                         "master_sync_in_progress:0\r\n",
                         versions[v], 7, info_28_persistence);
                assert_int_equal(rinfo_parse(text, strlen(text), &i), 0);
                assert_string_equal(i.version, versions[v]);
                assert_true(rinfo_version_at_least(&i, 2, 8));
                assert_true(rinfo_version_at_least(&i, 3, 2) == (v >= 1));
                assert_string_equal(i.config_file, "/etc/redis/redis.conf");
                assert_int_equal(i.used_memory, INT64_C(2147483648));
                assert_false(i.has_rdb_saves);
                assert_false(i.has_aof_rewrites);
                assert_false(i.has_total_forks);
                assert_int_equal(i.rdb_last_bgsave_status, RINFO_STATUS_ERR);
                assert_int_equal(i.rdb_current_bgsave_time_sec, -1);
                assert_true(i.aof_enabled && i.aof_rewrite_in_progress);
                assert_true(i.has_aof_rewrite_scheduled && !i.aof_rewrite_scheduled);
                assert_int_equal(i.aof_last_bgrewrite_status, RINFO_STATUS_OK);
                assert_int_equal(i.latest_fork_usec, 1500);
                assert_int_equal(i.role, RINFO_ROLE_REPLICA);
                assert_int_equal(i.n_malformed, 0);
        }
}

/* Redis 6.2 adds total_forks and fork progress, still no rdb_saves. */
static void test_redis_62(void **state)
{
        const char text[] = "# Server\nredis_version:6.2.14\n# Persistence\nloading:0\n"
                            "current_cow_size:0\ncurrent_fork_perc:12.50\n"
                            "current_save_keys_processed:10\ncurrent_save_keys_total:80\n"
                            "rdb_bgsave_in_progress:1\nrdb_last_save_time:1700000000\n"
                            "rdb_last_bgsave_status:ok\nmodule_fork_in_progress:0\n"
                            "# Stats\ntotal_forks:42\nlatest_fork_usec:300\n";
        struct rinfo i;
        (void)state;
        assert_int_equal(rinfo_parse(text, strlen(text), &i), 0);
        assert_int_equal(i.version_num, 60214);
        assert_true(i.rdb_bgsave_in_progress);
        assert_false(i.has_rdb_saves);
        assert_int_equal(i.total_forks, 42);
        assert_false(i.has_used_memory);
}

static void test_malformed_values_stay_absent(void **state)
{
        const char text[] = "redis_version:7.2.4\r\nrdb_saves:12x\r\nrdb_bgsave_in_progress:2\r\n"
                            "rdb_last_bgsave_status:maybe\r\nused_memory:\r\n"
                            "rdb_last_save_time:99999999999999999999999\r\nrole:sentinel\r\n"
                            "loading:0\r\n";
        struct rinfo i;
        (void)state;
        assert_int_equal(rinfo_parse(text, strlen(text), &i), 0);
        assert_int_equal(i.n_malformed, 6);
        assert_false(i.has_rdb_saves);
        assert_false(i.has_rdb_bgsave_in_progress);
        assert_false(i.has_rdb_last_bgsave_status);
        assert_false(i.has_used_memory);
        assert_false(i.has_rdb_last_save_time);
        assert_false(i.has_role);
        assert_true(i.has_loading);
}

static void test_not_info(void **state)
{
        struct rinfo i;
        const char junk[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        (void)state;
        assert_int_equal(rinfo_parse(junk, strlen(junk), &i), -EINVAL);
        assert_int_equal(rinfo_parse("", 0, &i), -EINVAL);
        assert_int_equal(rinfo_parse(NULL, 10, &i), -EINVAL);
        /* No terminating newline and no NUL needed: only `len` bytes are read. */
        const char exact[] = "loading:1XXXX";
        assert_int_equal(rinfo_parse(exact, 9, &i), 0);
        assert_true(i.loading);
}

static void test_caps(void **state)
{
        struct rinfo i;
        (void)state;

        /* A line longer than the cap is ignored, the rest still parses. */
        size_t n = RINFO_MAX_LINE + 100;
        char *text = malloc(n + 64);
        if (!text)
                abort();
        memcpy(text, "run_id:", 7);
        memset(text + 7, 'a', n - 7);
        strcpy(text + n, "\nrdb_saves:5\n");
        assert_int_equal(rinfo_parse(text, strlen(text), &i), 0);
        assert_true(i.truncated);
        assert_false(i.has_run_id);
        assert_int_equal(i.rdb_saves, 5);
        free(text);

        /* Too many lines: what follows the cap is not read. */
        size_t lines = RINFO_MAX_LINES + 10;
        text = malloc(lines * 4 + 32);
        if (!text)
                abort();
        char *p = text;
        p += sprintf(p, "loading:0\n");
        for (size_t k = 1; k < lines; k++)
                p += sprintf(p, "x:\n");
        p += sprintf(p, "rdb_saves:9\n");
        assert_int_equal(rinfo_parse(text, (size_t)(p - text), &i), 0);
        assert_true(i.truncated);
        assert_false(i.has_rdb_saves);
        free(text);

        /* More than RINFO_MAX_BYTES: the tail is never read. */
        size_t big = RINFO_MAX_BYTES + 4096;
        text = malloc(big);
        if (!text)
                abort();
        memset(text, '\n', big);
        memcpy(text, "loading:1\n", 10);
        memcpy(text + big - 12, "rdb_saves:7\n", 12);
        assert_int_equal(rinfo_parse(text, big, &i), 0);
        assert_true(i.truncated);
        assert_true(i.loading);
        assert_false(i.has_rdb_saves);
        free(text);

        /* A long string value is cut to its field's size, never overflowing it. */
        char cf[1200] = "config_file:/";
        memset(cf + 13, 'c', 1100);
        cf[1113] = '\0';
        assert_int_equal(rinfo_parse(cf, strlen(cf), &i), 0);
        assert_int_equal(strlen(i.config_file), sizeof(i.config_file) - 1);
}

static void test_last_value_wins(void **state)
{
        const char text[] = "rdb_saves:1\nrdb_saves:2\nbgsave_in_progress:1\n"
                            "rdb_bgsave_in_progress:0\n";
        struct rinfo i;
        (void)state;
        assert_int_equal(rinfo_parse(text, strlen(text), &i), 0);
        assert_int_equal(i.rdb_saves, 2);
        assert_false(i.rdb_bgsave_in_progress);
}

/* A version the parser cannot represent is unknown (0), never an overflowed number. */
static void test_version_bounds(void **state)
{
        static const struct {
                const char *version;
                int num;
        } cases[] = {
            {"7.2.4", 70204},
            {"7.2", 70200},
            {"6.2.x", 60200},
            {"99999999999.0.0", 0},
            {"7.4294967296.1", 0},
            {"7.2.100", 0},
            {"-7.2.0", 0},
            {"7", 0},
            {"", 0},
        };
        (void)state;
        for (size_t c = 0; c < ELEMENTSOF(cases); c++) {
                char text[128];
                struct rinfo i;
                snprintf(text, sizeof(text), "redis_version:%s\r\n", cases[c].version);
                assert_int_equal(rinfo_parse(text, strlen(text), &i), 0);
                assert_int_equal(i.version_num, cases[c].num);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_idle),
            cmocka_unit_test(test_during_bgsave),
            cmocka_unit_test(test_during_bgrewriteaof),
            cmocka_unit_test(test_failed_save),
            cmocka_unit_test(test_diskless_transfer),
            cmocka_unit_test(test_replica),
            cmocka_unit_test(test_crlf_and_lf_agree),
            cmocka_unit_test(test_redis_24),
            cmocka_unit_test(test_redis_28_to_50),
            cmocka_unit_test(test_redis_62),
            cmocka_unit_test(test_malformed_values_stay_absent),
            cmocka_unit_test(test_not_info),
            cmocka_unit_test(test_caps),
            cmocka_unit_test(test_last_value_wins),
            cmocka_unit_test(test_version_bounds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
