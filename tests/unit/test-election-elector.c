/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The elector with real threads against an in-memory Lease server shared by several electors:
 * never two leaders at once (a sampling thread checks continuously), a partitioned or hung
 * leader stops acting before its lease can expire elsewhere, a release hands over at once,
 * transitions are counted as client-go counts them, a restarted replica waits like any other.
 * Timings are short (lease 1 s, renew deadline 0.7 s, retry 0.2 s); assertions poll with
 * generous deadlines and never demand that something be fast.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/log.h"
#include "election/elector.h"
#include "fake-lease.h"

#define MS          USEC_PER_MSEC
#define LEASE_S     1
#define RENEW_US    (700 * MS)
#define RETRY_US    (200 * MS)
#define GENEROUS_US (20 * USEC_PER_SEC)

static pthread_mutex_t tlock = PTHREAD_MUTEX_INITIALIZER;

struct replica {
        struct fake_client client;
        struct elector *e;
        char identity[64];
        /* Under tlock, written by the callbacks. */
        int started, stopped;
        uint64_t last_generation;
        int64_t started_mono, stopped_mono;
        char new_leader[ELECTION_HOLDER_MAX];
        int new_leader_calls;
};

static void on_started(void *userdata, uint64_t generation)
{
        struct replica *r = userdata;
        pthread_mutex_lock(&tlock);
        r->started++;
        r->last_generation = generation;
        r->started_mono = clock_mono_us();
        pthread_mutex_unlock(&tlock);
}

static void on_stopped(void *userdata, uint64_t generation)
{
        struct replica *r = userdata;
        pthread_mutex_lock(&tlock);
        r->stopped++;
        r->stopped_mono = clock_mono_us();
        pthread_mutex_unlock(&tlock);
}

static void on_new_leader(void *userdata, const char *identity)
{
        struct replica *r = userdata;
        pthread_mutex_lock(&tlock);
        snprintf(r->new_leader, sizeof(r->new_leader), "%s", identity);
        r->new_leader_calls++;
        pthread_mutex_unlock(&tlock);
}

static int counter(const struct replica *r, const int *field)
{
        pthread_mutex_lock(&tlock);
        int v = *field;
        pthread_mutex_unlock(&tlock);
        return v;
}

struct timings {
        int32_t lease_s;
        int64_t renew_us, retry_us;
};

static const struct timings SHORT = {LEASE_S, RENEW_US, RETRY_US};

static void replica_init(struct replica *r, struct fake_server *s, const char *identity, bool watch,
                         struct timings t)
{
        memset(r, 0, sizeof(*r));
        fake_client_init(&r->client, s);
        snprintf(r->identity, sizeof(r->identity), "%s", identity);
        struct elector_options opts = {
            .identity = r->identity,
            .lease_duration_s = t.lease_s,
            .renew_deadline_us = t.renew_us,
            .retry_period_us = t.retry_us,
        };
        struct election_lease_ops ops = fake_ops(&r->client, watch);
        struct elector_callbacks cb = {
            .on_started_leading = on_started,
            .on_stopped_leading = on_stopped,
            .on_new_leader = on_new_leader,
            .userdata = r,
        };
        assert_int_equal(elector_new(&opts, &ops, &cb, &r->e), 0);
}

static void replica_start(struct replica *r)
{
        assert_int_equal(elector_start(r->e), 0);
}

static void replica_done(struct replica *r)
{
        elector_free(r->e);
        r->e = NULL;
}

/* ---- the sampler: at any instant at most one replica may act as leader ------------------- */

struct sampler {
        struct replica *replicas;
        size_t n;
        atomic_bool stop;
        atomic_int violations;
        atomic_uint_fast64_t samples;
        pthread_t thread;
};

static void *sampler_thread(void *userdata)
{
        struct sampler *s = userdata;
        while (!atomic_load(&s->stop)) {
                int64_t t0 = clock_mono_us();
                int leaders = 0;
                for (size_t i = 0; i < s->n; i++)
                        if (s->replicas[i].e && elector_is_leader(s->replicas[i].e))
                                leaders++;
                /*
                 * A sample is one instant only if it was quick: between a step-down and the next
                 * takeover there are (lease - renew deadline) = 300 ms at least.
                 */
                if (clock_mono_us() - t0 < 100 * MS) {
                        atomic_fetch_add(&s->samples, 1);
                        if (leaders > 1)
                                atomic_fetch_add(&s->violations, 1);
                }
                clock_sleep_us(1 * MS);
        }
        return NULL;
}

static void sampler_start(struct sampler *s, struct replica *replicas, size_t n)
{
        memset(s, 0, sizeof(*s));
        s->replicas = replicas;
        s->n = n;
        assert_int_equal(pthread_create(&s->thread, NULL, sampler_thread, s), 0);
}

static void sampler_finish(struct sampler *s)
{
        /* At least one more sample after everything the test did. */
        uint64_t seen = atomic_load(&s->samples);
        int64_t deadline = clock_mono_us() + GENEROUS_US;
        while (atomic_load(&s->samples) <= seen + 1 && clock_mono_us() < deadline)
                clock_sleep_us(1 * MS);
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
        print_message("sampler: %llu samples, %d violations\n",
                      (unsigned long long)atomic_load(&s->samples), atomic_load(&s->violations));
        assert_int_equal(atomic_load(&s->violations), 0);
        assert_true(atomic_load(&s->samples) > 0);
}

/* The one replica leading now, waiting up to GENEROUS_US; fails the test if none. */
static struct replica *wait_leader(struct replica *rs, size_t n, const struct replica * not )
{
        int64_t deadline = clock_mono_us() + GENEROUS_US;
        while (clock_mono_us() < deadline) {
                for (size_t i = 0; i < n; i++)
                        if (&rs[i] != not &&rs[i].e && elector_is_leader(rs[i].e))
                                return &rs[i];
                clock_sleep_us(5 * MS);
        }
        fail_msg("no leader within the deadline");
        return NULL;
}

static void wait_not_leader(struct replica *r)
{
        int64_t deadline = clock_mono_us() + GENEROUS_US;
        while (elector_is_leader(r->e) && clock_mono_us() < deadline)
                clock_sleep_us(5 * MS);
        assert_false(elector_is_leader(r->e));
}

static void wait_counter(struct replica *r, const int *field, int at_least)
{
        int64_t deadline = clock_mono_us() + GENEROUS_US;
        while (counter(r, field) < at_least && clock_mono_us() < deadline)
                clock_sleep_us(5 * MS);
        assert_true(counter(r, field) >= at_least);
}

/*
 * Every takeover in the server's log came at least a lease after the previous holder's last
 * accepted write, unless that holder had released the Lease in between.
 */
static void check_write_log(struct fake_server *s, int32_t lease_s)
{
        pthread_mutex_lock(&s->lock);
        char prev[ELECTION_HOLDER_MAX] = "";
        int64_t prev_last = 0;
        bool released = false;
        for (size_t i = 0; i < s->n_writes; i++) {
                const struct fake_write *w = &s->writes[i];
                if (w->release) {
                        released = true;
                        continue;
                }
                if (prev[0] && !streq(prev, w->holder) && !released) {
                        int64_t gap = w->applied_mono_us - prev_last;
                        if (gap < (int64_t)lease_s * USEC_PER_SEC)
                                fail_msg("takeover by %s only %lld µs after %s's last write",
                                         w->holder, (long long)gap, prev);
                }
                snprintf(prev, sizeof(prev), "%s", w->holder);
                prev_last = w->applied_mono_us;
                released = false;
        }
        pthread_mutex_unlock(&s->lock);
}

/* Time the server applied the first write by `holder` at or after `since`; 0 if none. */
static int64_t first_write_by(struct fake_server *s, const char *holder, int64_t since)
{
        int64_t t = 0;
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < s->n_writes && !t; i++)
                if (streq(s->writes[i].holder, holder) && s->writes[i].applied_mono_us >= since)
                        t = s->writes[i].applied_mono_us;
        pthread_mutex_unlock(&s->lock);
        return t;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_new_validates(void **state)
{
        struct fake_server s;
        struct fake_client c;
        struct elector *e = NULL;
        fake_server_init(&s);
        fake_client_init(&c, &s);
        struct election_lease_ops ops = fake_ops(&c, true);
        struct elector_options opts = {.identity = "a_1",
                                       .lease_duration_s = 15,
                                       .renew_deadline_us = 10 * USEC_PER_SEC,
                                       .retry_period_us = 2 * USEC_PER_SEC};

        struct elector_options bad = opts;
        bad.renew_deadline_us = 15 * USEC_PER_SEC; /* not below the lease */
        assert_int_equal(elector_new(&bad, &ops, NULL, &e), -EINVAL);
        bad = opts;
        bad.retry_period_us = 9 * USEC_PER_SEC; /* 1.2 × retry above the renew deadline */
        assert_int_equal(elector_new(&bad, &ops, NULL, &e), -EINVAL);
        bad = opts;
        bad.retry_period_us = 0;
        assert_int_equal(elector_new(&bad, &ops, NULL, &e), -EINVAL);
        bad = opts;
        bad.identity = "";
        assert_int_equal(elector_new(&bad, &ops, NULL, &e), -EINVAL);
        struct election_lease_ops no_update = ops;
        no_update.update = NULL;
        assert_int_equal(elector_new(&opts, &no_update, NULL, &e), -EINVAL);
        assert_null(e);

        assert_int_equal(elector_new(&opts, &ops, NULL, &e), 0);
        assert_false(elector_is_leader(e));
        assert_int_equal(elector_leader_generation(e), 0);
        assert_int_equal(elector_release(e, USEC_PER_SEC), -ESRCH); /* not running */
        elector_free(e);
        elector_free(NULL);
        fake_server_destroy(&s);
}

static void test_single_elector_creates_and_renews(void **state)
{
        struct fake_server s;
        struct replica r;
        struct election_record first, later;

        fake_server_init(&s);
        replica_init(&r, &s, "solo-0_1", true, SHORT);
        replica_start(&r);
        assert_int_equal(elector_start(r.e), -EALREADY);

        wait_leader(&r, 1, NULL);
        wait_counter(&r, &r.started, 1);
        assert_int_equal(elector_leader_generation(r.e), 1);
        assert_true(fake_server_get_record(&s, &first));
        assert_string_equal(first.holder, "solo-0_1");
        assert_int_equal(first.lease_duration_s, LEASE_S);
        assert_int_equal(first.lease_transitions, 0);
        assert_true(first.acquire_time_us > 0 && first.renew_time_us >= first.acquire_time_us);

        /* Renewals move renewTime and keep acquireTime and the transitions. */
        int64_t deadline = clock_mono_us() + GENEROUS_US;
        do {
                clock_sleep_us(50 * MS);
                assert_true(fake_server_get_record(&s, &later));
        } while (later.renew_time_us == first.renew_time_us && clock_mono_us() < deadline);
        assert_true(later.renew_time_us > first.renew_time_us);
        assert_int_equal(later.acquire_time_us, first.acquire_time_us);
        assert_int_equal(later.lease_transitions, 0);
        assert_false(elector_is_wedged(r.e, clock_mono_us()));

        struct elector_status st;
        elector_get_status(r.e, &st);
        assert_string_equal(st.identity, "solo-0_1");
        assert_string_equal(st.holder, "solo-0_1");
        assert_true(st.last_renew_mono_us > 0);
        pthread_mutex_lock(&tlock);
        assert_string_equal(r.new_leader, "solo-0_1");
        pthread_mutex_unlock(&tlock);

        /* Stopping steps down without releasing. */
        elector_stop(r.e);
        assert_int_equal(counter(&r, &r.stopped), 1);
        assert_false(elector_is_leader(r.e));
        assert_true(fake_server_get_record(&s, &later));
        assert_string_equal(later.holder, "solo-0_1");
        replica_done(&r);
        fake_server_destroy(&s);
}

static void test_never_two_leaders_under_faults(void **state)
{
        struct fake_server s;
        struct replica rs[3];
        struct sampler smp;
        unsigned seed = 20261201;
        char name[32];

        fake_server_init(&s);
        for (int i = 0; i < 3; i++) {
                snprintf(name, sizeof(name), "replica-%d_%d", i, i + 100);
                replica_init(&rs[i], &s, name, i != 2, SHORT); /* one without a watch */
        }
        sampler_start(&smp, rs, 3);
        for (int i = 0; i < 3; i++)
                replica_start(&rs[i]);
        wait_leader(rs, 3, NULL);

        /* Four seconds of trouble: latency, errors, conflicts, a partitioned leader. */
        int64_t end = clock_mono_us() + 4 * USEC_PER_SEC;
        for (int iter = 0; clock_mono_us() < end; iter++) {
                struct replica *r = &rs[rand_r(&seed) % 3];
                /* A partition of the leader now and then; other faults in between. */
                switch (iter % 12 == 6 ? 5 : (int)(rand_r(&seed) % 5)) {
                case 0:
                        FAKE_SET(&r->client, latency_us, (int64_t)(rand_r(&seed) % 150) * MS);
                        break;
                case 1:
                        FAKE_SET(&r->client, fail_next, 1 + (int)(rand_r(&seed) % 2));
                        break;
                case 2:
                        FAKE_SET(&r->client, conflict_next, 1);
                        break;
                case 3:
                        FAKE_SET(&r->client, reply_latency_us, (int64_t)(rand_r(&seed) % 100) * MS);
                        break;
                case 4:
                        FAKE_SET(&r->client, hang_us, (int64_t)(rand_r(&seed) % 250) * MS);
                        break;
                case 5:
                        for (int i = 0; i < 3; i++)
                                if (elector_is_leader(rs[i].e)) {
                                        FAKE_SET(&rs[i].client, partitioned, true);
                                        clock_sleep_us(1200 * MS);
                                        FAKE_SET(&rs[i].client, partitioned, false);
                                        break;
                                }
                        break;
                default:
                        break;
                }
                clock_sleep_us(150 * MS);
                FAKE_SET(&r->client, latency_us, 0);
                FAKE_SET(&r->client, reply_latency_us, 0);
                FAKE_SET(&r->client, hang_us, 0);
        }
        for (int i = 0; i < 3; i++) {
                FAKE_SET(&rs[i].client, fail_next, 0);
                FAKE_SET(&rs[i].client, conflict_next, 0);
        }
        wait_leader(rs, 3, NULL);
        sampler_finish(&smp);
        for (int i = 0; i < 3; i++)
                replica_done(&rs[i]);

        struct election_record rec;
        assert_true(fake_server_get_record(&s, &rec));
        print_message("%zu writes, %d transitions, %llu conflicts\n", s.n_writes,
                      rec.lease_transitions, (unsigned long long)s.conflicts);
        assert_int_equal(rec.lease_transitions, s.expected_transitions);
        check_write_log(&s, LEASE_S);
        fake_server_destroy(&s);
}

static void test_partitioned_leader_steps_down_first(void **state)
{
        struct fake_server s;
        struct replica rs[3];
        struct sampler smp;
        char name[32];

        fake_server_init(&s);
        for (int i = 0; i < 3; i++) {
                snprintf(name, sizeof(name), "part-%d_%d", i, i + 7);
                replica_init(&rs[i], &s, name, true, SHORT);
        }
        sampler_start(&smp, rs, 3);
        for (int i = 0; i < 3; i++)
                replica_start(&rs[i]);
        struct replica *l = wait_leader(rs, 3, NULL);
        int64_t partitioned_at = clock_mono_us();
        FAKE_SET(&l->client, partitioned, true);

        struct replica *m = wait_leader(rs, 3, l);
        wait_not_leader(l);
        wait_counter(l, &l->stopped, 1);

        /*
         * The timing argument: the old leader's term ended at its last successful renewal's send
         * time + the renew deadline; the new leader's takeover reached the server at least a
         * lease after the old leader's last accepted write, which came after that send time.
         */
        struct elector_status st;
        elector_get_status(l->e, &st);
        int64_t takeover = first_write_by(&s, m->identity, partitioned_at);
        assert_true(takeover > 0);
        assert_true(st.last_renew_mono_us + (int64_t)LEASE_S * USEC_PER_SEC <= takeover);
        assert_true(st.last_renew_mono_us + RENEW_US < takeover);
        print_message("takeover %lld ms after the cut-off leader's last renewal was sent\n",
                      (long long)((takeover - st.last_renew_mono_us) / MS));
        assert_true(st.last_error < 0);

        /* No zombie: healed, it follows; when the new leader is cut off, it leads again. */
        FAKE_SET(&l->client, partitioned, false);
        FAKE_SET(&m->client, partitioned, true);
        struct replica *n = wait_leader(rs, 3, m);
        wait_not_leader(m);
        FAKE_SET(&m->client, partitioned, false);
        sampler_finish(&smp);
        assert_true(n != m);
        for (int i = 0; i < 3; i++)
                replica_done(&rs[i]);
        check_write_log(&s, LEASE_S);
        fake_server_destroy(&s);
}

static void test_release_hands_over_through_the_watch(void **state)
{
        /* Polls every 5-11 s and a 20 s lease: only the watch can make the hand-over quick. */
        const struct timings slow = {20, 15 * USEC_PER_SEC, 5 * USEC_PER_SEC};
        struct fake_server s;
        struct replica rs[2];
        struct sampler smp;

        fake_server_init(&s);
        replica_init(&rs[0], &s, "watch-0_a", true, slow);
        replica_init(&rs[1], &s, "watch-1_b", true, slow);
        sampler_start(&smp, rs, 2);
        replica_start(&rs[0]);
        replica_start(&rs[1]);
        struct replica *l = wait_leader(rs, 2, NULL);
        struct replica *m = l == &rs[0] ? &rs[1] : &rs[0];
        /* The follower has seen the record (it waits on the watch from it). */
        wait_counter(m, &m->new_leader_calls, 1);

        struct election_record before;
        assert_true(fake_server_get_record(&s, &before));
        int64_t t0 = clock_mono_us();
        assert_int_equal(elector_release(l->e, 5 * USEC_PER_SEC), 0);
        assert_false(elector_is_leader(l->e));
        assert_int_equal(counter(l, &l->stopped), 1);

        /* Within 4 s, i.e. before the follower's next poll (>= 5 s) or the lease (20 s). */
        while (!elector_is_leader(m->e) && clock_mono_us() < t0 + 4 * USEC_PER_SEC)
                clock_sleep_us(2 * MS);
        assert_true(elector_is_leader(m->e));
        print_message("hand-over after release: %lld ms\n",
                      (long long)((clock_mono_us() - t0) / MS));

        /* The release record: holder "", 1 s, transitions kept; then a takeover counts one. */
        pthread_mutex_lock(&s.lock);
        bool saw_release = false;
        for (size_t i = 0; i < s.n_writes; i++)
                if (s.writes[i].release) {
                        saw_release = true;
                        assert_int_equal(s.writes[i].transitions, before.lease_transitions);
                }
        pthread_mutex_unlock(&s.lock);
        assert_true(saw_release);
        struct election_record after;
        assert_true(fake_server_get_record(&s, &after));
        assert_string_equal(after.holder, m->identity);
        assert_int_equal(after.lease_transitions, before.lease_transitions + 1);
        assert_true(after.acquire_time_us > before.acquire_time_us);

        /* A released elector does not compete again; a second release is a no-op. */
        assert_int_equal(elector_release(l->e, USEC_PER_SEC), 0);
        assert_false(elector_is_leader(l->e));
        sampler_finish(&smp);
        replica_done(&rs[0]);
        replica_done(&rs[1]);
        fake_server_destroy(&s);
}

static void test_release_record_fields(void **state)
{
        struct fake_server s;
        struct replica r;
        struct election_record rec;

        fake_server_init(&s);
        replica_init(&r, &s, "rel-0_1", false, SHORT);
        replica_start(&r);
        wait_leader(&r, 1, NULL);
        /* Transient failures and a conflict are retried within the timeout. */
        FAKE_SET(&r.client, fail_next, 2);
        FAKE_SET(&r.client, conflict_next, 1);
        assert_int_equal(elector_release(r.e, 5 * USEC_PER_SEC), 0);
        assert_int_equal(counter(&r, &r.stopped), 1);
        assert_true(fake_server_get_record(&s, &rec));
        assert_string_equal(rec.holder, "");
        assert_int_equal(rec.lease_duration_s, 1);
        assert_int_equal(rec.lease_transitions, 0);
        assert_true(rec.renew_time_us > 0);
        /* Nothing more is written once released. */
        size_t writes = s.n_writes;
        clock_sleep_us(3 * RETRY_US);
        pthread_mutex_lock(&s.lock);
        assert_int_equal(s.n_writes, writes);
        pthread_mutex_unlock(&s.lock);
        replica_done(&r);
        fake_server_destroy(&s);
}

static void test_transitions_counted(void **state)
{
        struct fake_server s;
        struct replica rs[3];
        struct sampler smp;
        struct election_record first, rec, again;
        char name[32];

        fake_server_init(&s);
        for (int i = 0; i < 3; i++) {
                snprintf(name, sizeof(name), "tr-%d_%d", i, i + 40);
                replica_init(&rs[i], &s, name, i != 1, SHORT);
        }
        sampler_start(&smp, rs, 3);
        for (int i = 0; i < 3; i++)
                replica_start(&rs[i]);

        struct replica *a = wait_leader(rs, 3, NULL);
        assert_true(fake_server_get_record(&s, &first));
        assert_int_equal(first.lease_transitions, 0);
        assert_int_equal(elector_release(a->e, 5 * USEC_PER_SEC), 0);
        struct replica *b = wait_leader(rs, 3, a);
        assert_int_equal(elector_release(b->e, 5 * USEC_PER_SEC), 0);
        struct replica *c = wait_leader(rs, 3, NULL);
        assert_true(c != a && c != b);

        assert_true(fake_server_get_record(&s, &rec));
        assert_string_equal(rec.holder, c->identity);
        assert_int_equal(rec.lease_transitions, s.expected_transitions);
        assert_true(rec.lease_transitions >= 2);
        assert_true(rec.acquire_time_us > first.acquire_time_us);

        /* c's renewals keep its acquireTime and the count. */
        int64_t deadline = clock_mono_us() + GENEROUS_US;
        do {
                clock_sleep_us(50 * MS);
                assert_true(fake_server_get_record(&s, &again));
        } while (again.renew_time_us == rec.renew_time_us && clock_mono_us() < deadline);
        if (streq(again.holder, c->identity)) {
                assert_true(again.renew_time_us > rec.renew_time_us);
                assert_int_equal(again.acquire_time_us, rec.acquire_time_us);
                assert_int_equal(again.lease_transitions, rec.lease_transitions);
        }
        sampler_finish(&smp);
        for (int i = 0; i < 3; i++)
                replica_done(&rs[i]);
        fake_server_destroy(&s);
}

static void test_restarted_replica_waits_for_expiry(void **state)
{
        struct fake_server s;
        struct replica r;
        struct election_record old = {0}, rec;

        /* The previous process of pod-0 held the Lease and died without releasing it. */
        fake_server_init(&s);
        election_record_set_holder(&old, "pod-0_0000000000000old");
        old.lease_duration_s = LEASE_S;
        old.acquire_time_us = 1;
        old.renew_time_us = 2;
        old.lease_transitions = 5;
        fake_server_put(&s, &old);

        replica_init(&r, &s, "pod-0_0000000000000new", true, SHORT);
        int64_t t0 = clock_mono_us();
        replica_start(&r);
        wait_leader(&r, 1, NULL);

        int64_t takeover = first_write_by(&s, "pod-0_0000000000000new", 0);
        assert_true(takeover >= t0 + (int64_t)LEASE_S * USEC_PER_SEC);
        assert_true(fake_server_get_record(&s, &rec));
        assert_int_equal(rec.lease_transitions, 6); /* a takeover, not a renewal */
        assert_true(rec.acquire_time_us > old.acquire_time_us);
        replica_done(&r);
        fake_server_destroy(&s);
}

static uint64_t client_gets(struct fake_client *c)
{
        pthread_mutex_lock(&c->s->lock);
        uint64_t n = c->gets;
        pthread_mutex_unlock(&c->s->lock);
        return n;
}

static void test_followers_rely_on_the_watch(void **state)
{
        /*
         * A 4 s lease renewed every 0.2 s: a polling follower would read the Lease 5-10 times
         * in 2 s. With a working watch it reads only at the holder's expiry instant, which the
         * renewals it is told of keep pushing back. Once its watch breaks it polls again, so a
         * crash of the holder is still noticed.
         */
        const struct timings t = {4, 3 * USEC_PER_SEC, 200 * MS};
        struct fake_server s;
        struct replica rs[2];
        struct sampler smp;

        fake_server_init(&s);
        replica_init(&rs[0], &s, "watch-0_a", true, t);
        replica_init(&rs[1], &s, "watch-1_b", true, t);
        sampler_start(&smp, rs, 2);
        replica_start(&rs[0]);
        replica_start(&rs[1]);
        struct replica *l = wait_leader(rs, 2, NULL);
        struct replica *m = l == &rs[0] ? &rs[1] : &rs[0];
        wait_counter(m, &m->new_leader_calls, 1);
        /* Let the follower's watch answer once (the next renewal), then count its reads. */
        clock_sleep_us(1 * USEC_PER_SEC);

        uint64_t g0 = client_gets(&m->client);
        clock_sleep_us(2 * USEC_PER_SEC);
        uint64_t g1 = client_gets(&m->client);
        print_message("follower reads in 2 s with a working watch: %llu\n",
                      (unsigned long long)(g1 - g0));
        assert_true(g1 - g0 <= 1);
        assert_true(elector_is_leader(l->e));

        FAKE_SET(&m->client, watch_broken, true);
        clock_sleep_us(100 * MS);
        uint64_t g2 = client_gets(&m->client);
        clock_sleep_us(2 * USEC_PER_SEC);
        uint64_t g3 = client_gets(&m->client);
        print_message("follower reads in 2 s with a broken watch: %llu\n",
                      (unsigned long long)(g3 - g2));
        assert_true(g3 - g2 >= 2);

        /* The holder dies without releasing: the polling follower takes over after the lease. */
        elector_stop(l->e);
        assert_true(wait_leader(rs, 2, l) == m);
        check_write_log(&s, t.lease_s);
        sampler_finish(&smp);
        replica_done(&rs[0]);
        replica_done(&rs[1]);
        fake_server_destroy(&s);
}

static void test_jitter_seeds_differ(void **state)
{
        struct fake_server s;
        struct replica a, b;

        fake_server_init(&s);
        replica_init(&a, &s, "j-0_1", false, SHORT);
        replica_init(&b, &s, "j-1_2", false, SHORT);
        uint64_t sa = elector_jitter_seed(a.e), sb = elector_jitter_seed(b.e);
        assert_true(sa != sb);

        struct election_jitter ja, jb;
        election_jitter_init(&ja, sa);
        election_jitter_init(&jb, sb);
        int same = 0;
        for (int i = 0; i < 8; i++)
                if (election_jitter_next(&ja, RETRY_US) == election_jitter_next(&jb, RETRY_US))
                        same++;
        assert_true(same < 8);
        replica_done(&a);
        replica_done(&b);

        struct fake_client c;
        struct elector *e;
        fake_client_init(&c, &s);
        struct election_lease_ops ops = fake_ops(&c, false);
        struct elector_options opts = {.identity = "j-2_3",
                                       .lease_duration_s = LEASE_S,
                                       .renew_deadline_us = RENEW_US,
                                       .retry_period_us = RETRY_US,
                                       .jitter_seed = 7};
        assert_int_equal(elector_new(&opts, &ops, NULL, &e), 0);
        assert_int_equal(elector_jitter_seed(e), 7);
        elector_free(e);
        fake_server_destroy(&s);
}

static void test_hung_call_bounds_leadership_and_wedges(void **state)
{
        struct fake_server s;
        struct replica r;

        fake_server_init(&s);
        replica_init(&r, &s, "hang-0_1", false, SHORT);
        replica_start(&r);
        wait_leader(&r, 1, NULL);
        assert_int_equal(elector_leader_generation(r.e), 1);

        /* The API client ignores its timeout: calls hang 4 s. The clock ends the term. */
        FAKE_SET(&r.client, hang_us, 4 * USEC_PER_SEC);
        wait_not_leader(&r);
        assert_int_equal(elector_leader_generation(r.e), 0);

        /* The elector still believes it leads: /healthz must see it once a lease has passed. */
        int64_t deadline = clock_mono_us() + GENEROUS_US;
        while (!elector_is_wedged(r.e, clock_mono_us()) && counter(&r, &r.stopped) == 0 &&
               clock_mono_us() < deadline)
                clock_sleep_us(5 * MS);
        assert_true(elector_is_wedged(r.e, clock_mono_us()));

        /* When the call returns, it steps down, then renews its own record: a new term. */
        FAKE_SET(&r.client, hang_us, 0);
        wait_counter(&r, &r.stopped, 1);
        wait_counter(&r, &r.started, 2);
        wait_leader(&r, 1, NULL);
        assert_false(elector_is_wedged(r.e, clock_mono_us()));
        struct election_record rec;
        assert_true(fake_server_get_record(&s, &rec));
        assert_int_equal(rec.lease_transitions, 0);
        replica_done(&r);
        fake_server_destroy(&s);
}

static void test_conflicts_and_errors_do_not_depose(void **state)
{
        const struct timings relaxed = {3, 2 * USEC_PER_SEC, 500 * MS};
        struct fake_server s;
        struct replica r;

        fake_server_init(&s);
        replica_init(&r, &s, "cas-0_1", true, relaxed);
        replica_start(&r);
        wait_leader(&r, 1, NULL);

        /* Someone touches the Lease (metadata only): the fast renewal conflicts, the slow works. */
        FAKE_SET(&r.client, conflict_next, 2);
        clock_sleep_us(1200 * MS);
        FAKE_SET(&r.client, fail_next, 1);
        clock_sleep_us(1200 * MS);

        assert_true(elector_is_leader(r.e));
        assert_int_equal(elector_leader_generation(r.e), 1);
        assert_int_equal(counter(&r, &r.started), 1);
        assert_int_equal(counter(&r, &r.stopped), 0);
        struct election_record rec;
        assert_true(fake_server_get_record(&s, &rec));
        assert_string_equal(rec.holder, "cas-0_1");
        assert_int_equal(rec.lease_transitions, 0);
        pthread_mutex_lock(&s.lock);
        assert_true(r.client.updates >= 4);
        pthread_mutex_unlock(&s.lock);
        replica_done(&r);
        fake_server_destroy(&s);
}

static void test_lease_taken_by_another_deposes_at_once(void **state)
{
        struct fake_server s;
        struct replica r;
        struct election_record rec;

        fake_server_init(&s);
        replica_init(&r, &s, "dep-0_1", false, SHORT);
        replica_start(&r);
        wait_leader(&r, 1, NULL);

        /* An operator hands the Lease to someone else: the next renewal sees it and steps down. */
        assert_true(fake_server_get_record(&s, &rec));
        election_record_set_holder(&rec, "operator_x");
        fake_server_put(&s, &rec);
        wait_counter(&r, &r.stopped, 1);
        wait_not_leader(&r);
        pthread_mutex_lock(&tlock);
        assert_string_equal(r.new_leader, "operator_x");
        pthread_mutex_unlock(&tlock);
        replica_done(&r);
        fake_server_destroy(&s);
}

int main(void)
{
        log_setup(getenv("ELECTION_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR,
                  LOG_FORMAT_TEXT, 2);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_new_validates),
            cmocka_unit_test(test_single_elector_creates_and_renews),
            cmocka_unit_test(test_never_two_leaders_under_faults),
            cmocka_unit_test(test_partitioned_leader_steps_down_first),
            cmocka_unit_test(test_release_hands_over_through_the_watch),
            cmocka_unit_test(test_release_record_fields),
            cmocka_unit_test(test_transitions_counted),
            cmocka_unit_test(test_restarted_replica_waits_for_expiry),
            cmocka_unit_test(test_followers_rely_on_the_watch),
            cmocka_unit_test(test_jitter_seeds_differ),
            cmocka_unit_test(test_hung_call_bounds_leadership_and_wedges),
            cmocka_unit_test(test_conflicts_and_errors_do_not_depose),
            cmocka_unit_test(test_lease_taken_by_another_deposes_at_once),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
