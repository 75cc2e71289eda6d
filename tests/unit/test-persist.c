/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Persist-now coalescing over real pools, with a save function that counts and can be held:
 * one save for a crowd of requests, a fresh save for requests that arrive while one runs, the
 * pool limit, failures and leadership loss. Orderings and counts only, no durations.
 */
#include <errno.h>
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
#include "sched/persist.h"

struct fake {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int saves, running, max_running;
        bool hold; /* saves wait while true */
        bool fail; /* saves report failure */
        int64_t last_start;
};

static struct fake fake;

static int fake_save(const char *instance_id, struct persist_result *r, void *userdata)
{
        pthread_mutex_lock(&fake.lock);
        fake.saves++;
        fake.running++;
        if (fake.running > fake.max_running)
                fake.max_running = fake.running;
        r->started_us = clock_wall_us();
        fake.last_start = r->started_us;
        pthread_cond_broadcast(&fake.cond);
        while (fake.hold)
                pthread_cond_wait(&fake.cond, &fake.lock);
        fake.running--;
        bool fail = fake.fail;
        pthread_mutex_unlock(&fake.lock);
        clock_sleep_us(1000);
        r->finished_us = clock_wall_us();
        r->ok = !fail;
        r->lastsave = r->finished_us / USEC_PER_SEC;
        if (fail)
                snprintf(r->error, sizeof(r->error), "instance %s: MISCONF disk full", instance_id);
        return 0;
}

static void set_hold(bool hold)
{
        pthread_mutex_lock(&fake.lock);
        fake.hold = hold;
        pthread_cond_broadcast(&fake.cond);
        pthread_mutex_unlock(&fake.lock);
}

static void wait_saves_running(int n)
{
        pthread_mutex_lock(&fake.lock);
        int64_t deadline = clock_mono_us() + 30 * USEC_PER_SEC;
        while (fake.running < n && clock_mono_us() < deadline) {
                pthread_mutex_unlock(&fake.lock);
                clock_sleep_us(1000);
                pthread_mutex_lock(&fake.lock);
        }
        assert_int_equal(fake.running, n);
        pthread_mutex_unlock(&fake.lock);
}

static int limit_one(const char *pool, void *u)
{
        return 1;
}

static int setup(void **state)
{
        memset(&fake, 0, sizeof(fake));
        pthread_mutex_init(&fake.lock, NULL);
        pthread_cond_init(&fake.cond, NULL);
        return 0;
}

struct fixture {
        struct sched_pools *pools;
        struct persist_coalescer *pc;
};

static void fixture_init(struct fixture *f)
{
        f->pools = sched_pools_new(limit_one, NULL, 60 * USEC_PER_SEC);
        sched_pools_set_generation(f->pools, 1);
        f->pc = persist_coalescer_new(f->pools, fake_save, NULL);
        assert_non_null(f->pc);
}

static void fixture_release(struct fixture *f)
{
        sched_pools_free(f->pools);
        persist_coalescer_free(f->pc);
}

static int registered; /* requests that hold a ticket */

struct requester {
        struct persist_coalescer *pc;
        struct persist_result result;
        int rc;
};

static void *request_and_wait(void *arg)
{
        struct requester *q = arg;
        struct persist_ticket *t;
        q->rc = persist_request(q->pc, "cache-0", "ssd", 0, &t);
        __atomic_add_fetch(&registered, 1, __ATOMIC_SEQ_CST);
        if (q->rc == 0) {
                q->rc = persist_ticket_wait(t, 60 * USEC_PER_SEC, &q->result);
                persist_ticket_unref(t);
        }
        return NULL;
}

static void test_hundred_requests_one_save(void **state)
{
        struct fixture f;
        pthread_t threads[100];
        struct requester q[100];

        fixture_init(&f);
        /* Hold the pool with another instance's save so every request queues behind it. */
        set_hold(true);
        struct persist_ticket *blocker;
        assert_int_equal(persist_request(f.pc, "other", "ssd", 0, &blocker), 0);
        wait_saves_running(1);

        for (int i = 0; i < 100; i++) {
                q[i] = (struct requester){.pc = f.pc};
                pthread_create(&threads[i], NULL, request_and_wait, &q[i]);
        }
        /* Every request holds its ticket before the pool frees up. */
        while (__atomic_load_n(&registered, __ATOMIC_SEQ_CST) < 100)
                clock_sleep_us(1000);
        set_hold(false);
        for (int i = 0; i < 100; i++)
                pthread_join(threads[i], NULL);

        int joined = 0;
        for (int i = 0; i < 100; i++) {
                assert_int_equal(q[i].rc, 0);
                assert_true(q[i].result.done);
                assert_true(q[i].result.ok);
                assert_true(q[i].result.started_us >= q[i].result.requested_us);
                joined += q[i].result.joined;
        }
        /* One save for the blocker, exactly one for the hundred requests. */
        assert_int_equal(fake.saves, 2);
        assert_int_equal(joined, 99);
        assert_int_equal(persist_saves_started(f.pc), 2);
        persist_ticket_unref(blocker);
        fixture_release(&f);
}

static void test_request_during_running_save_gets_fresh_save(void **state)
{
        struct fixture f;
        struct persist_ticket *a, *b, *c;
        struct persist_result ra, rb, rc;

        fixture_init(&f);
        set_hold(true);
        assert_int_equal(persist_request(f.pc, "cache-0", "ssd", 0, &a), 0);
        wait_saves_running(1); /* A's save has started */
        int64_t first_start = fake.last_start;

        assert_int_equal(persist_request(f.pc, "cache-0", "ssd", 0, &b), 0);
        assert_int_equal(persist_request(f.pc, "cache-0", "ssd", 0, &c), 0);
        /* B and C cannot be served by the running save: it started before they arrived. */
        persist_ticket_peek(b, &rb);
        assert_false(rb.done);
        set_hold(false);

        assert_int_equal(persist_ticket_wait(a, 30 * USEC_PER_SEC, &ra), 0);
        assert_int_equal(persist_ticket_wait(b, 30 * USEC_PER_SEC, &rb), 0);
        assert_int_equal(persist_ticket_wait(c, 30 * USEC_PER_SEC, &rc), 0);
        assert_int_equal(fake.saves, 2);
        assert_int_equal(ra.started_us, first_start);
        assert_true(rb.started_us > first_start);
        assert_true(rb.started_us >= rb.requested_us);
        assert_int_equal(rb.started_us, rc.started_us); /* B and C shared one fresh save */
        assert_false(rb.joined);
        assert_true(rc.joined);
        assert_true(ra.ok && rb.ok && rc.ok);
        persist_ticket_unref(a);
        persist_ticket_unref(b);
        persist_ticket_unref(c);
        fixture_release(&f);
}

static void test_pool_limit_holds(void **state)
{
        struct fixture f;
        struct persist_ticket *t[6];
        char id[16];

        fixture_init(&f);
        for (int i = 0; i < 6; i++) {
                snprintf(id, sizeof(id), "cache-%d", i);
                assert_int_equal(persist_request(f.pc, id, "ssd", 0, &t[i]), 0);
        }
        for (int i = 0; i < 6; i++) {
                struct persist_result r;
                assert_int_equal(persist_ticket_wait(t[i], 30 * USEC_PER_SEC, &r), 0);
                assert_true(r.ok);
                persist_ticket_unref(t[i]);
        }
        assert_int_equal(fake.saves, 6);
        assert_int_equal(fake.max_running, 1);
        fixture_release(&f);
}

static void test_failure_reaches_every_waiter(void **state)
{
        struct fixture f;
        struct persist_ticket *a, *b;
        struct persist_result ra, rb;

        fixture_init(&f);
        fake.fail = true;
        set_hold(true);
        struct persist_ticket *blocker;
        assert_int_equal(persist_request(f.pc, "other", "ssd", 0, &blocker), 0);
        wait_saves_running(1);
        assert_int_equal(persist_request(f.pc, "cache-0", "ssd", 0, &a), 0);
        assert_int_equal(persist_request(f.pc, "cache-0", "ssd", 0, &b), 0);
        set_hold(false);
        assert_int_equal(persist_ticket_wait(a, 30 * USEC_PER_SEC, &ra), 0);
        assert_int_equal(persist_ticket_wait(b, 30 * USEC_PER_SEC, &rb), 0);
        assert_false(ra.ok);
        assert_false(rb.ok);
        assert_string_equal(ra.error, "instance cache-0: MISCONF disk full");
        assert_string_equal(rb.error, ra.error);
        persist_ticket_unref(a);
        persist_ticket_unref(b);
        persist_ticket_unref(blocker);
        fixture_release(&f);
}

static void test_leadership_loss_fails_queued_requests(void **state)
{
        struct fixture f;
        struct persist_ticket *blocker, *queued, *t;
        struct persist_result r;

        fixture_init(&f);
        set_hold(true);
        assert_int_equal(persist_request(f.pc, "other", "ssd", 0, &blocker), 0);
        wait_saves_running(1);
        assert_int_equal(persist_request(f.pc, "cache-0", "ssd", 0, &queued), 0);
        assert_int_equal(persist_ticket_wait(queued, 1000, &r), -ETIMEDOUT);

        sched_pools_clear(f.pools);
        assert_int_equal(persist_ticket_wait(queued, 30 * USEC_PER_SEC, &r), 0);
        assert_false(r.ok);
        assert_non_null(strstr(r.error, "lost leadership"));
        /* A follower refuses new requests. */
        assert_int_equal(persist_request(f.pc, "cache-0", "ssd", 0, &t), -EAGAIN);

        set_hold(false);
        assert_int_equal(persist_ticket_wait(blocker, 30 * USEC_PER_SEC, &r), 0);
        assert_true(r.ok); /* the save already running finished */
        persist_ticket_unref(blocker);
        persist_ticket_unref(queued);
        fixture_release(&f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup(test_hundred_requests_one_save, setup),
            cmocka_unit_test_setup(test_request_during_running_save_gets_fresh_save, setup),
            cmocka_unit_test_setup(test_pool_limit_holds, setup),
            cmocka_unit_test_setup(test_failure_reaches_every_waiter, setup),
            cmocka_unit_test_setup(test_leadership_loss_fails_queued_requests, setup),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
