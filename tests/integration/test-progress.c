/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The progress store against a real redis-server with a password: a pass's pending set is
 * recorded with its expiry, drained, found again by a new leader, and survives a restart of
 * the progress Redis (the store reconnects by itself; the set comes back from the RDB).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "store/progress.h"

static struct progress *store_for(const struct th_redis *r, const char *password,
                                  const char *prefix)
{
        char addr[64];
        struct progress *p = NULL;
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", r->port);
        struct progress_options o = {.address = addr,
                                     .password = password,
                                     .key_prefix = prefix,
                                     .connect_timeout_ms = 1000,
                                     .command_timeout_ms = 1000};
        assert_int_equal(progress_new(&o, &p), 0);
        return p;
}

static bool contains(char **v, const char *s)
{
        for (; *v; v++)
                if (strcmp(*v, s) == 0)
                        return true;
        return false;
}

static void test_pass_lifecycle(void **state)
{
        struct th_redis r;
        const char *extra[] = {"--requirepass", "progress-pw", NULL};
        (void)state;

        th_redis_start(&r, extra);
        struct progress *p = store_for(&r, "progress-pw", "persistd");

        /* 2500 ids: more than one SADD batch, all in one transaction. */
        size_t n = 2500;
        char **ids = calloc(n, sizeof(*ids));
        for (size_t i = 0; i < n; i++)
                assert_true(asprintf(&ids[i], "redis-%zu", i) > 0);
        bool exists = true;
        assert_int_equal(progress_pass_exists(p, "2026-12-01", &exists), 0);
        assert_false(exists);
        assert_int_equal(progress_pass_start(p, "2026-12-01", (const char *const *)ids, n), 0);
        assert_int_equal(progress_pass_exists(p, "2026-12-01", &exists), 0);
        assert_true(exists);
        int64_t count = 0;
        assert_int_equal(progress_pass_count(p, "2026-12-01", &count), 0);
        assert_int_equal(count, n);

        /* The key is where SPEC 7 says, and expires within a day. */
        redisContext *c = th_redis_connect(&r);
        redisReply *rep = th_redis_cmd(c, "TTL persistd:pass:2026-12-01:pending");
        assert_true(rep->integer > 86000 && rep->integer <= 86400);
        freeReplyObject(rep);

        bool removed = false;
        assert_int_equal(progress_pass_done(p, "2026-12-01", "redis-7", &removed), 0);
        assert_true(removed);
        assert_int_equal(progress_pass_done(p, "2026-12-01", "redis-7", &removed), 0);
        assert_false(removed);
        assert_int_equal(progress_pass_count(p, "2026-12-01", &count), 0);
        assert_int_equal(count, n - 1);

        char **pending = NULL;
        size_t np = 0;
        assert_int_equal(progress_pass_pending(p, "2026-12-01", &pending, &np), 0);
        assert_int_equal(np, n - 1);
        assert_true(contains(pending, "redis-0"));
        assert_true(contains(pending, "redis-2499"));
        assert_false(contains(pending, "redis-7"));
        progress_strv_free(pending);

        /* Current instance per pool. */
        assert_int_equal(progress_pass_set_current(p, "2026-12-01", "pool-a", "redis-1"), 0);
        assert_int_equal(progress_pass_set_current(p, "2026-12-01", "pool-b", "redis-2"), 0);
        assert_int_equal(progress_pass_set_current(p, "2026-12-01", "pool-b", NULL), 0);
        char **pools = NULL, **cur = NULL;
        size_t nc = 0;
        assert_int_equal(progress_pass_current(p, "2026-12-01", &pools, &cur, &nc), 0);
        assert_int_equal(nc, 1);
        assert_string_equal(pools[0], "pool-a");
        assert_string_equal(cur[0], "redis-1");
        progress_strv_free(pools);
        progress_strv_free(cur);

        /* A new leader looks for interrupted passes; another prefix is not ours. */
        const char *other[] = {"x"};
        struct progress *q = store_for(&r, "progress-pw", "other*");
        assert_int_equal(progress_pass_start(q, "2026-11-30", other, 1), 0);
        char **dates = NULL;
        size_t nd = 0;
        assert_int_equal(progress_pass_find(p, &dates, &nd), 0);
        assert_int_equal(nd, 1);
        assert_string_equal(dates[0], "2026-12-01");
        progress_strv_free(dates);
        assert_int_equal(progress_pass_find(q, &dates, &nd), 0);
        assert_int_equal(nd, 1);
        assert_string_equal(dates[0], "2026-11-30");
        progress_strv_free(dates);
        progress_free(q);

        /* Draining the set makes it disappear: the pass is finished. */
        for (size_t i = 0; i < n; i++)
                assert_int_equal(progress_pass_done(p, "2026-12-01", ids[i], NULL), 0);
        assert_int_equal(progress_pass_exists(p, "2026-12-01", &exists), 0);
        assert_false(exists);
        assert_int_equal(progress_pass_clear(p, "2026-12-01"), 0);

        /* Bad input never reaches Redis. */
        assert_int_equal(progress_pass_exists(p, "2026-12-1", &exists), -EINVAL);
        assert_int_equal(progress_pass_exists(p, "2026-12-01:x", &exists), -EINVAL);
        assert_int_equal(progress_pass_done(p, "2026-12-01", "", NULL), -EINVAL);

        /* The key-based calls the nightly pass uses: same operations, its own key names. */
        const char *key = "persistd:pass:2026-12-03:pending";
        const char *three[] = {"a", "b", "c"};
        assert_int_equal(progress_set_replace(p, key, three, 3, 120), 0);
        rep = th_redis_cmd(c, "TTL %s", key);
        assert_true(rep->integer > 100 && rep->integer <= 120);
        freeReplyObject(rep);
        assert_int_equal(progress_set_exists(p, key, &exists), 0);
        assert_true(exists);
        assert_int_equal(progress_set_remove(p, key, "b", &removed), 0);
        assert_true(removed);
        assert_int_equal(progress_set_count(p, key, &count), 0);
        assert_int_equal(count, 2);
        assert_int_equal(progress_set_members(p, key, &pending, &np), 0);
        assert_int_equal(np, 2);
        assert_true(contains(pending, "a") && contains(pending, "c"));
        progress_strv_free(pending);
        /* Replacing is exact: old members go. */
        assert_int_equal(progress_set_replace(p, key, three + 2, 1, 120), 0);
        assert_int_equal(progress_set_count(p, key, &count), 0);
        assert_int_equal(count, 1);
        /* Never outside the prefix, never a malformed key. */
        assert_int_equal(progress_set_exists(p, "other:pass:2026-12-03:pending", &exists), -EINVAL);
        assert_int_equal(progress_set_exists(p, "persistd:", &exists), -EINVAL);
        assert_int_equal(progress_set_exists(p, "persistd:a b", &exists), -EINVAL);
        assert_int_equal(progress_set_replace(p, key, three, 3, 0), -EINVAL);

        for (size_t i = 0; i < n; i++)
                free(ids[i]);
        free(ids);
        redisFree(c);
        progress_free(p);
        th_redis_stop(&r);
}

static void test_restart_and_errors(void **state)
{
        struct th_redis r;
        const char *extra[] = {"--requirepass", "progress-pw", NULL};
        const char *ids[] = {"a", "b", "c"};
        int64_t count = 0;
        char err[256];
        (void)state;

        th_redis_start(&r, extra);
        struct progress *p = store_for(&r, "progress-pw", "persistd");
        assert_int_equal(progress_pass_start(p, "2026-12-02", ids, 3), 0);
        assert_int_equal(progress_pass_done(p, "2026-12-02", "a", NULL), 0);
        redisContext *c = th_redis_connect(&r);
        freeReplyObject(th_redis_cmd(c, "SAVE"));
        redisFree(c);

        /* The progress Redis restarts under the store's open connection. */
        th_redis_restart(&r, extra);
        assert_int_equal(progress_pass_count(p, "2026-12-02", &count), 0);
        assert_int_equal(count, 2);

        /* Down: a clear error, then back: it reconnects by itself. */
        th_stop(r.pid, SIGTERM, 5000);
        r.pid = 0;
        assert_int_equal(progress_pass_count(p, "2026-12-02", &count), -EIO);
        progress_errstr(p, err, sizeof(err));
        assert_non_null(strstr(err, "progress Redis"));
        th_redis_restart(&r, extra);
        assert_int_equal(progress_pass_done(p, "2026-12-02", "b", NULL), 0);
        assert_int_equal(progress_pass_count(p, "2026-12-02", &count), 0);
        assert_int_equal(count, 1);
        progress_free(p);

        /* A wrong password: refused, and the password is not in the error. */
        p = store_for(&r, "not-the-password", "persistd");
        assert_int_equal(progress_pass_count(p, "2026-12-02", &count), -EACCES);
        progress_errstr(p, err, sizeof(err));
        assert_non_null(strstr(err, "refused"));
        assert_null(strstr(err, "not-the-password"));
        progress_free(p);
        th_redis_stop(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_pass_lifecycle),
            cmocka_unit_test(test_restart_and_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
