/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pools: the limit is never exceeded, priorities and due times order the work, backfill never
 * delays a more urgent job (within the starvation bound), leadership loss cancels what waits.
 * These tests assert orderings and counts, never durations.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "sched/pool.h"

/* A record of what happened, shared by the jobs of one test. */
struct journal {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int running, max_running;
        char order[64];
        int n_done, n_cancelled;
        enum sched_cancel_reason last_reason;
        bool gate_open;
};

struct test_job {
        struct sched_job job;
        struct journal *j;
        char tag;
        int64_t sleep_us;
        bool gate; /* wait until the journal's gate opens */
        int64_t started_wall;
};

static void journal_init(struct journal *j)
{
        memset(j, 0, sizeof(*j));
        pthread_mutex_init(&j->lock, NULL);
        pthread_cond_init(&j->cond, NULL);
}

static void run_job(struct sched_job *job)
{
        struct test_job *t = (struct test_job *)job;
        struct journal *j = t->j;

        pthread_mutex_lock(&j->lock);
        j->running++;
        j->max_running = j->running > j->max_running ? j->running : j->max_running;
        size_t n = strlen(j->order);
        if (n + 1 < sizeof(j->order))
                j->order[n] = t->tag;
        t->started_wall = clock_wall_us();
        while (t->gate && !j->gate_open)
                pthread_cond_wait(&j->cond, &j->lock);
        pthread_mutex_unlock(&j->lock);

        clock_sleep_us(t->sleep_us);

        pthread_mutex_lock(&j->lock);
        j->running--;
        j->n_done++;
        pthread_cond_broadcast(&j->cond);
        pthread_mutex_unlock(&j->lock);
}

static void cancel_job(struct sched_job *job, enum sched_cancel_reason reason)
{
        struct test_job *t = (struct test_job *)job;
        pthread_mutex_lock(&t->j->lock);
        t->j->n_cancelled++;
        t->j->last_reason = reason;
        pthread_cond_broadcast(&t->j->cond);
        pthread_mutex_unlock(&t->j->lock);
}

static void init_job(struct test_job *t, struct journal *j, char tag, enum sched_priority prio)
{
        memset(t, 0, sizeof(*t));
        t->j = j;
        t->tag = tag;
        t->job.priority = prio;
        t->job.run = run_job;
        t->job.cancel = cancel_job;
}

/* Wait (bounded, generously) until `n` jobs are done or cancelled; fail if they never are. */
static void wait_settled(struct journal *j, int n)
{
        int64_t deadline = clock_mono_us() + 30 * USEC_PER_SEC;
        pthread_mutex_lock(&j->lock);
        while (j->n_done + j->n_cancelled < n && clock_mono_us() < deadline) {
                pthread_mutex_unlock(&j->lock);
                clock_sleep_us(1000);
                pthread_mutex_lock(&j->lock);
        }
        int settled = j->n_done + j->n_cancelled;
        pthread_mutex_unlock(&j->lock);
        assert_int_equal(settled, n);
}

static void wait_running(struct journal *j, int n)
{
        int64_t deadline = clock_mono_us() + 30 * USEC_PER_SEC;
        pthread_mutex_lock(&j->lock);
        while (j->running < n && clock_mono_us() < deadline) {
                pthread_mutex_unlock(&j->lock);
                clock_sleep_us(1000);
                pthread_mutex_lock(&j->lock);
        }
        int running = j->running;
        pthread_mutex_unlock(&j->lock);
        assert_int_equal(running, n);
}

static void open_gate(struct journal *j)
{
        pthread_mutex_lock(&j->lock);
        j->gate_open = true;
        pthread_cond_broadcast(&j->cond);
        pthread_mutex_unlock(&j->lock);
}

static int limit_of(const char *pool, void *userdata)
{
        if (strcmp(pool, "wide") == 0)
                return 3;
        return 1;
}

static void test_limit_never_exceeded(void **state)
{
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct journal j;
        struct test_job jobs[30];
        struct sched_pool_stats *stats;

        journal_init(&j);
        sched_pools_set_generation(ps, 1);
        for (int i = 0; i < 30; i++) {
                init_job(&jobs[i], &j, 'a', (enum sched_priority)(i % SCHED_PRIO_COUNT));
                jobs[i].sleep_us = 2000;
                assert_int_equal(sched_pools_submit(ps, "wide", &jobs[i].job), 0);
        }
        wait_settled(&j, 30);
        assert_int_equal(j.n_done, 30);
        assert_int_equal(j.max_running, 3);

        int n = sched_pools_stats(ps, &stats);
        assert_int_equal(n, 1);
        assert_string_equal(stats[0].name, "wide");
        assert_int_equal(stats[0].limit, 3);
        assert_int_equal(stats[0].max_running_seen, 3);
        assert_int_equal(stats[0].started_total, 30);
        assert_int_equal(stats[0].queued, 0);
        free(stats);
        sched_pools_free(ps);
}

static void test_priority_order(void **state)
{
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct journal j;
        struct test_job gate, n1, s1, m1, p1, n2, s2;

        journal_init(&j);
        sched_pools_set_generation(ps, 7);
        init_job(&gate, &j, 'G', SCHED_PRIO_NIGHTLY);
        gate.gate = true;
        assert_int_equal(sched_pools_submit(ps, "p", &gate.job), 0);
        wait_running(&j, 1); /* the only place is taken */

        init_job(&n1, &j, 'n', SCHED_PRIO_NIGHTLY);
        init_job(&s1, &j, 's', SCHED_PRIO_SCHEDULED);
        init_job(&m1, &j, 'm', SCHED_PRIO_MANUAL);
        init_job(&p1, &j, 'p', SCHED_PRIO_PERSIST);
        init_job(&n2, &j, 'N', SCHED_PRIO_NIGHTLY);
        init_job(&s2, &j, 'S', SCHED_PRIO_SCHEDULED);
        s2.job.due_us = 1; /* due earlier than s1 (due 0 means now; 1 is the distant past) */
        struct test_job *all[] = {&n1, &s1, &m1, &p1, &n2, &s2};
        for (size_t i = 0; i < 6; i++)
                assert_int_equal(sched_pools_submit(ps, "p", &all[i]->job), 0);
        open_gate(&j);
        wait_settled(&j, 7);
        /* persist, manual, scheduled by due time (s1 due "0" sorts before s2 due 1), nightly
         * FIFO */
        assert_string_equal(j.order, "GpmsSnN");
        assert_int_equal(n1.job.generation, 7);
        sched_pools_free(ps);
}

static void test_due_time_respected(void **state)
{
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct journal j;
        struct test_job later, now;

        journal_init(&j);
        sched_pools_set_generation(ps, 1);
        init_job(&later, &j, 'L', SCHED_PRIO_PERSIST);
        later.job.due_us = clock_wall_us() + 150 * USEC_PER_MSEC;
        init_job(&now, &j, 'n', SCHED_PRIO_NIGHTLY);
        assert_int_equal(sched_pools_submit(ps, "p", &later.job), 0);
        assert_int_equal(sched_pools_submit(ps, "p", &now.job), 0);
        wait_settled(&j, 2);
        /* The urgent job was not due, so the nightly one went first; the urgent one not early. */
        assert_string_equal(j.order, "nL");
        assert_true(later.started_wall >= later.job.due_us);
        sched_pools_free(ps);
}

static void test_backfill_does_not_delay_urgent_work(void **state)
{
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct journal j;
        struct test_job slot, long_nightly, short_nightly;

        journal_init(&j);
        sched_pools_set_generation(ps, 1);
        int64_t due = clock_wall_us() + 300 * USEC_PER_MSEC;
        init_job(&slot, &j, 's', SCHED_PRIO_SCHEDULED);
        slot.job.due_us = due;
        init_job(&long_nightly, &j, 'L', SCHED_PRIO_NIGHTLY);
        long_nightly.job.estimate_us = 10 * USEC_PER_SEC; /* would overrun the slot */
        init_job(&short_nightly, &j, 'x', SCHED_PRIO_NIGHTLY);
        short_nightly.job.estimate_us = 1000; /* fits before the slot */
        assert_int_equal(sched_pools_submit(ps, "p", &slot.job), 0);
        assert_int_equal(sched_pools_submit(ps, "p", &long_nightly.job), 0);
        assert_int_equal(sched_pools_submit(ps, "p", &short_nightly.job), 0);
        wait_settled(&j, 3);
        /*
         * The long nightly job is first in line but would still run at the slot's time, so it
         * waits for the slot. Jobs of one priority keep their order, so the short one behind it
         * waits too: nothing starts before the slot, then both nightly jobs in order.
         */
        assert_string_equal(j.order, "sLx");
        assert_true(slot.started_wall >= due);
        sched_pools_free(ps);
}

static void test_backfill_where_it_fits(void **state)
{
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct journal j;
        struct test_job slot, nightly;

        journal_init(&j);
        sched_pools_set_generation(ps, 1);
        init_job(&slot, &j, 's', SCHED_PRIO_SCHEDULED);
        slot.job.due_us = clock_wall_us() + 5 * USEC_PER_SEC;
        init_job(&nightly, &j, 'n', SCHED_PRIO_NIGHTLY);
        nightly.job.estimate_us = 1000;
        assert_int_equal(sched_pools_submit(ps, "p", &slot.job), 0);
        assert_int_equal(sched_pools_submit(ps, "p", &nightly.job), 0);
        /* The nightly save fits before the slot: it starts now. */
        wait_settled(&j, 1);
        assert_string_equal(j.order, "n");
        assert_true(nightly.started_wall < slot.job.due_us);
        sched_pools_clear(ps);
        wait_settled(&j, 2);
        assert_int_equal(j.n_cancelled, 1);
        sched_pools_free(ps);
}

static void test_backfill_starvation_bound(void **state)
{
        /* A starvation bound of 20 ms: the long nightly job stops waiting for the slot. */
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 20 * USEC_PER_MSEC);
        struct journal j;
        struct test_job slot, nightly;

        journal_init(&j);
        sched_pools_set_generation(ps, 1);
        init_job(&slot, &j, 's', SCHED_PRIO_SCHEDULED);
        slot.job.due_us = clock_wall_us() + 2 * USEC_PER_SEC;
        init_job(&nightly, &j, 'n', SCHED_PRIO_NIGHTLY);
        nightly.job.estimate_us = 60 * USEC_PER_SEC;
        assert_int_equal(sched_pools_submit(ps, "p", &slot.job), 0);
        assert_int_equal(sched_pools_submit(ps, "p", &nightly.job), 0);
        wait_settled(&j, 2);
        assert_string_equal(j.order, "ns");
        sched_pools_free(ps);
}

static void test_leadership_loss_cancels_queued(void **state)
{
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct journal j;
        struct test_job running, queued[5], late;

        journal_init(&j);
        /* Not leading: nothing is accepted, and the job stays the caller's. */
        init_job(&late, &j, 'z', SCHED_PRIO_PERSIST);
        assert_int_equal(sched_pools_submit(ps, "p", &late.job), -EAGAIN);
        assert_int_equal(sched_pools_generation(ps), 0);

        sched_pools_set_generation(ps, 3);
        init_job(&running, &j, 'r', SCHED_PRIO_PERSIST);
        running.gate = true;
        assert_int_equal(sched_pools_submit(ps, "p", &running.job), 0);
        wait_running(&j, 1);
        for (int i = 0; i < 5; i++) {
                init_job(&queued[i], &j, 'q', SCHED_PRIO_SCHEDULED);
                assert_int_equal(sched_pools_submit(ps, "p", &queued[i].job), 0);
        }
        sched_pools_clear(ps);
        assert_int_equal(j.n_cancelled, 5);
        assert_int_equal(j.last_reason, SCHED_CANCEL_LEADERSHIP);
        assert_int_equal(sched_pools_submit(ps, "p", &late.job), -EAGAIN);
        /* The running job finishes on its own. */
        open_gate(&j);
        wait_settled(&j, 6);
        assert_string_equal(j.order, "r");
        sched_pools_free(ps);
}

static void test_withdraw_by_owner(void **state)
{
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct journal j;
        struct test_job blocker, a, b, c;

        journal_init(&j);
        sched_pools_set_generation(ps, 1);
        init_job(&blocker, &j, 'B', SCHED_PRIO_PERSIST);
        blocker.gate = true;
        assert_int_equal(sched_pools_submit(ps, "p", &blocker.job), 0);
        wait_running(&j, 1);
        init_job(&a, &j, 'a', SCHED_PRIO_SCHEDULED);
        a.job.owner_key = 42;
        init_job(&b, &j, 'b', SCHED_PRIO_SCHEDULED);
        b.job.owner_key = 7;
        init_job(&c, &j, 'c', SCHED_PRIO_SCHEDULED);
        c.job.owner_key = 42;
        assert_int_equal(sched_pools_submit(ps, "p", &a.job), 0);
        assert_int_equal(sched_pools_submit(ps, "p", &b.job), 0);
        assert_int_equal(sched_pools_submit(ps, "p", &c.job), 0);
        /* Only jobs due at or after the bound go: a and c are due at 0, before 1. */
        assert_int_equal(sched_pools_withdraw(ps, "p", 42, 1), 0);
        assert_int_equal(sched_pools_withdraw(ps, "p", 42, INT64_MIN), 2);
        assert_int_equal(j.last_reason, SCHED_CANCEL_WITHDRAWN);
        assert_int_equal(sched_pools_withdraw(ps, "other", 42, INT64_MIN), 0);
        open_gate(&j);
        wait_settled(&j, 4);
        assert_string_equal(j.order, "Bb");
        sched_pools_free(ps);
}

static void test_pools_run_in_parallel(void **state)
{
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct journal j;
        struct test_job a, b, c;

        journal_init(&j);
        sched_pools_set_generation(ps, 1);
        init_job(&a, &j, 'a', SCHED_PRIO_NIGHTLY);
        init_job(&b, &j, 'b', SCHED_PRIO_NIGHTLY);
        init_job(&c, &j, 'c', SCHED_PRIO_NIGHTLY);
        a.gate = b.gate = c.gate = true;
        assert_int_equal(sched_pools_submit(ps, "ssd-1", &a.job), 0);
        assert_int_equal(sched_pools_submit(ps, "ssd-2", &b.job), 0);
        assert_int_equal(sched_pools_submit(ps, "ssd-1", &c.job), 0);
        /* One per pool: two at once, the second job of ssd-1 waits for its place. */
        wait_running(&j, 2);
        pthread_mutex_lock(&j.lock);
        assert_int_equal(j.max_running, 2);
        pthread_mutex_unlock(&j.lock);
        open_gate(&j);
        wait_settled(&j, 3);
        assert_int_equal(j.max_running, 2);
        sched_pools_free(ps);
}

static void test_free_cancels_queued(void **state)
{
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct journal j;
        struct test_job future;

        journal_init(&j);
        sched_pools_set_generation(ps, 1);
        init_job(&future, &j, 'f', SCHED_PRIO_SCHEDULED);
        future.job.due_us = clock_wall_us() + 3600 * USEC_PER_SEC;
        assert_int_equal(sched_pools_submit(ps, "p", &future.job), 0);
        sched_pools_free(ps);
        assert_int_equal(j.n_cancelled, 1);
        assert_int_equal(j.last_reason, SCHED_CANCEL_SHUTDOWN);
        sched_pools_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_limit_never_exceeded),
            cmocka_unit_test(test_priority_order),
            cmocka_unit_test(test_due_time_respected),
            cmocka_unit_test(test_backfill_does_not_delay_urgent_work),
            cmocka_unit_test(test_backfill_where_it_fits),
            cmocka_unit_test(test_backfill_starvation_bound),
            cmocka_unit_test(test_leadership_loss_cancels_queued),
            cmocka_unit_test(test_withdraw_by_owner),
            cmocka_unit_test(test_pools_run_in_parallel),
            cmocka_unit_test(test_free_cancels_queued),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
