/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fleet's nightly pass over real redis-servers in two pools: every instance saved exactly
 * once, never two at once in a pool, the progress set gone and the pass row complete; and a
 * leader change in the middle of the pass (a second fleet with its own store connection, as a
 * new leader process) that resumes it with none skipped or doubled; a save left running is
 * judged before any scheduled save reaches its instance.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "test-fleet-util.h"

#define N 8

struct sampler {
        struct fx *x;
        int max_p1, max_p2;
        atomic_bool stop;
};

/* Instances 0..3 are in p1, 4..7 in p2. */
static void *sample(void *p)
{
        struct sampler *s = p;
        while (!atomic_load(&s->stop)) {
                int a = 0, b = 0;
                for (int i = 0; i < N; i++) {
                        bool on = th_redis_info_int(s->x->rc[i], "rdb_bgsave_in_progress") == 1;
                        if (i < N / 2)
                                a += on;
                        else
                                b += on;
                }
                s->max_p1 = a > s->max_p1 ? a : s->max_p1;
                s->max_p2 = b > s->max_p2 ? b : s->max_p2;
                clock_sleep_us(20 * 1000);
        }
        return NULL;
}

static void setup(struct fx *x, const char *tag, int keys, long long saves[N])
{
        fx_open(x, tag, N, NULL);
        for (int i = 0; i < N; i++) {
                char id[16];
                snprintf(id, sizeof(id), "n%d", i);
                fx_instance(x, id, i, i < N / 2 ? "p1" : "p2");
                fx_slow(x, i, keys, 10000);
                saves[i] = fx_rdb_saves(x, i);
        }
}

static void start_pass(struct fleet *f)
{
        int r = -EAGAIN;
        for (int i = 0; i < 400; i++) {
                r = fleet_nightly_start(f);
                if (r != -EAGAIN && r != -EBUSY)
                        break;
                clock_sleep_us(50 * 1000);
        }
        assert_int_equal(r, 0);
}

static bool pass_finished(void *p)
{
        struct fx *x = p;
        return fx_int(x, "SELECT count(*) FROM passes WHERE state = 'finished'") == 1;
}

static void check_done(struct fx *x, const long long saves[N])
{
        for (int i = 0; i < N; i++)
                assert_int_equal(fx_rdb_saves(x, i), saves[i] + 1);
        assert_int_equal(fx_int(x, "SELECT total FROM passes"), N);
        assert_int_equal(fx_int(x, "SELECT done FROM passes"), N);
        assert_int_equal(fx_int(x, "SELECT failed + skipped FROM passes"), 0);
        assert_int_equal(fx_int(x, "SELECT count(DISTINCT instance_id) FROM runs WHERE kind = "
                                   "'nightly' AND state = 'succeeded'"),
                         N);
        assert_int_equal(fx_int(x, "SELECT count(*) FROM runs WHERE kind = 'nightly' AND state = "
                                   "'succeeded'"),
                         N);
        char **dates = NULL;
        size_t n = 99;
        assert_int_equal(progress_pass_find(x->progress, &dates, &n), 0);
        assert_int_equal(n, 0);
        progress_strv_free(dates);
}

/* Pairs of runs of one pool whose recorded times overlap (every pool here has limit 1). */
static long long overlaps_in_pools(struct fx *x)
{
        return fx_int(x, "SELECT count(*) FROM runs r JOIN instances ri ON ri.id = r.instance_id "
                         "JOIN runs o ON o.id > r.id JOIN instances oi ON oi.id = o.instance_id "
                         "WHERE ri.pool = oi.pool AND o.started_at < r.finished_at AND "
                         "r.started_at < o.finished_at");
}

/* The next leader, a fleet with its own store and progress connections (*ret_*), leading. */
static struct fleet *second_leader(struct fx *x, struct pgstore **ret_store,
                                   struct progress **ret_progress)
{
        struct fleet_options o;
        struct fleet *b;

        *ret_store = fx_store(x);
        *ret_progress = fx_progress(x);
        fx_options(&o, "fleet-b", 1, 1);
        b = fx_fleet(x, &o, *ret_store, *ret_progress);
        fleet_start_leading(b, 2);
        return b;
}

/* The end of a test with two leaders, b with its own store and progress connections. */
static void close_two(struct fx *x, struct fleet *a, struct fleet *b, struct pgstore *store_b,
                      struct progress *progress_b)
{
        fleet_free(b);
        fleet_free(a);
        progress_free(progress_b);
        pgstore_free(store_b);
        fx_close(x);
}

static void test_nightly_pass(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *f;
        long long saves[N];
        struct sampler s = {0};
        pthread_t t;

        (void)state;
        setup(&x, "fleet_nightly", 20, saves);
        fx_options(&o, "fleet-a", 1, 1);
        f = fx_fleet(&x, &o, NULL, NULL);
        s.x = &x;
        assert_int_equal(pthread_create(&t, NULL, sample, &s), 0);
        fleet_start_leading(f, 1);
        start_pass(f);
        assert_true(fx_wait(pass_finished, &x, 60000));
        atomic_store(&s.stop, true);
        pthread_join(t, NULL);
        check_done(&x, saves);
        assert_true(s.max_p1 <= 1);
        assert_true(s.max_p2 <= 1);

        struct sched_pool_stats *st = NULL;
        int n = sched_pools_stats(fleet_pools(f), &st);
        for (int i = 0; i < n; i++)
                assert_true(st[i].max_running_seen <= 1);
        free(st);
        fleet_free(f);
        fx_close(&x);
}

static void test_nightly_failover(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *a, *b;
        struct pgstore *store_b;
        struct progress *progress_b;
        long long saves[N];

        (void)state;
        setup(&x, "fleet_nightly_fo", 60, saves); /* ~0.6 s a save */
        fx_options(&o, "fleet-a", 1, 1);
        a = fx_fleet(&x, &o, NULL, NULL);
        fleet_start_leading(a, 1);
        start_pass(a);
        /* Let a few settle, then the leader goes away in the middle of the pass. */
        for (int i = 0; i < 600; i++) {
                struct nightly_status *ns = NULL;
                int done = 0;
                if (fleet_nightly_status(a, &ns) == 0) {
                        done = ns->totals.done;
                        nightly_status_free(ns);
                }
                if (done >= 2)
                        break;
                clock_sleep_us(50 * 1000);
        }
        fleet_stop_leading(a);
        /* The lease takes a while to expire: the save a left running ends before b looks. */
        clock_sleep_us(3 * USEC_PER_SEC);

        b = second_leader(&x, &store_b, &progress_b);
        assert_true(fx_wait(pass_finished, &x, 90000));
        check_done(&x, saves);
        assert_int_equal(
            fx_int(&x, "SELECT count(*) FROM passes WHERE leader_identity = 'fleet-b'"), 1);
        /* The ledger tells the truth about the takeover: the save b found finished ended when
         * its lastsave says (~0.6 s after its start, not 3 s later when b looked), and no two
         * runs of a pool (limit 1) overlap. */
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE kind = 'nightly' AND "
                                    "finished_at - started_at > interval '2.5 s'"),
                         0);
        assert_int_equal(overlaps_in_pools(&x), 0);
        close_two(&x, a, b, store_b, progress_b);
}

static bool nightly_running(void *p)
{
        struct fx *x = p;
        return fx_int(x, "SELECT count(*) FROM runs WHERE kind = 'nightly' AND state = "
                         "'running'") > 0;
}

static bool scheduled_succeeded(void *p)
{
        struct fx *x = p;
        return fx_int(x, "SELECT count(*) FROM runs WHERE kind = 'scheduled' AND state = "
                         "'succeeded'") > 0;
}

/*
 * Two instances in p1 (limit 1), ~0.6 s a save; leader a starts the pass and goes away while a
 * nightly save runs, which Redis then finishes. Returns a (not leading).
 */
static struct fleet *leader_gone_mid_save(struct fx *x, const char *tag)
{
        struct fleet_options o;
        struct fleet *a;

        fx_open(x, tag, 2, NULL);
        for (int i = 0; i < 2; i++) {
                char id[16];
                snprintf(id, sizeof(id), "n%d", i);
                fx_instance(x, id, i, "p1");
                fx_slow(x, i, 60, 10000);
        }
        fx_options(&o, "fleet-a", 1, 1);
        a = fx_fleet(x, &o, NULL, NULL);
        fleet_start_leading(a, 1);
        start_pass(a);
        assert_true(fx_wait(nightly_running, x, 20000));
        fleet_stop_leading(a);
        clock_sleep_us(2 * USEC_PER_SEC);
        return a;
}

/*
 * The old leader goes away while a nightly save runs; Redis finishes it. The new leader has a
 * scheduled slot of that instance due every second: the adoption must be judged first, or the
 * scheduled save would be taken for the adopted one (a run spanning the takeover, overlapping
 * the scheduled run in a pool of limit 1).
 */
static void test_adoption_before_scheduled_saves(void **state)
{
        struct fx x;
        struct fleet *a, *b;
        struct pgstore *store_b;
        struct progress *progress_b;

        (void)state;
        a = leader_gone_mid_save(&x, "fleet_nightly_adopt");
        fx_sql(&x, "INSERT INTO tasks (instance_id, schedule) SELECT instance_id, '* * * * * *' "
                   "FROM runs WHERE kind = 'nightly' AND state = 'running'");
        clock_sleep_us(1500 * USEC_PER_MSEC); /* slots missed: the catch-up runs them at once */
        /* The progress Redis answers late: the new leader's look for the pass takes a while. */
        redisContext *pc = th_redis_connect(&x.prog);
        freeReplyObject(th_redis_cmd(pc, "CLIENT PAUSE 1500 ALL"));
        redisFree(pc);

        b = second_leader(&x, &store_b, &progress_b);
        assert_true(fx_wait(pass_finished, &x, 60000));
        assert_true(fx_wait(scheduled_succeeded, &x, 20000));
        fleet_stop_leading(b);
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE kind = 'nightly' AND state = "
                                    "'succeeded' AND finished_at - started_at < interval '1.8 s'"),
                         2);
        assert_int_equal(overlaps_in_pools(&x), 0);
        close_two(&x, a, b, store_b, progress_b);
}

/*
 * The old leader recorded a nightly save's start, then went away before its BGSAVE reached the
 * instance (simulated: the run's before-values are made the instance's current ones). The new
 * leader finds nothing happened: that run is `skipped`, ending where it started (it never ran,
 * so it must not span the takeover in the ledger), and the pass saves the instance anew.
 */
static void test_adopted_save_that_never_arrived(void **state)
{
        struct fx x;
        struct fleet *a, *b;
        struct pgstore *store_b;
        struct progress *progress_b;

        (void)state;
        a = leader_gone_mid_save(&x, "fleet_nightly_lost");
        int lost = (int)fx_int(&x, "SELECT substr(instance_id, 2)::int FROM runs WHERE kind = "
                                   "'nightly' AND state = 'running'");
        long long saves = fx_rdb_saves(&x, lost);
        fx_sql(&x,
               "UPDATE runs SET rdb_saves_before = %lld WHERE kind = 'nightly' AND state = "
               "'running'",
               saves);

        b = second_leader(&x, &store_b, &progress_b);
        assert_true(fx_wait(pass_finished, &x, 60000));
        fleet_stop_leading(b);
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE kind = 'nightly' AND state = "
                                    "'skipped' AND finished_at = started_at AND error LIKE "
                                    "'nothing reached the instance%%'"),
                         1);
        assert_int_equal(fx_rdb_saves(&x, lost), saves + 1); /* saved again, once */
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE kind = 'nightly' AND state = "
                                    "'succeeded'"),
                         2);
        assert_int_equal(overlaps_in_pools(&x), 0);
        close_two(&x, a, b, store_b, progress_b);
}

/* A nightly save and a persist-now of one instance in a pool with room for two: one at a time. */
static void test_one_save_per_instance(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *f;
        struct fleet_persist *h = NULL;
        struct fleet_persist_result res;
        char err[256];
        long long before;
        int max_running = 0;

        (void)state;
        fx_open(&x, "fleet_one_save", 1, NULL);
        fx_instance(&x, "r1", 0, "p2");
        fx_slow(&x, 0, 100, 10000); /* ~1 s a save */
        before = fx_rdb_saves(&x, 0);
        fx_options(&o, "fleet-a", 1, 2);
        f = fx_fleet(&x, &o, NULL, NULL);
        fleet_start_leading(f, 1);
        start_pass(f);
        const char *ids[] = {"r1"};
        struct fleet_persist_request req = {.instances = ids, .n_instances = 1};
        assert_int_equal(fleet_persist_begin(f, &req, &h, err, sizeof(err)), 0);
        while (fleet_persist_wait(h, 20 * 1000, &res) == -ETIMEDOUT) {
                int n = (int)fx_int(&x, "SELECT count(*) FROM runs WHERE state = 'running'");
                max_running = n > max_running ? n : max_running;
        }
        assert_true(res.r.ok);
        assert_true(fx_wait(pass_finished, &x, 30000));
        assert_true(max_running <= 1);
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE state = 'succeeded'"), 2);
        assert_int_equal(fx_rdb_saves(&x, 0), before + 2);
        fleet_persist_unref(h);
        fleet_free(f);
        fx_close(&x);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_nightly_pass),
            cmocka_unit_test(test_nightly_failover),
            cmocka_unit_test(test_adoption_before_scheduled_saves),
            cmocka_unit_test(test_adopted_save_that_never_arrived),
            cmocka_unit_test(test_one_save_per_instance),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
