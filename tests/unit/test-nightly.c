/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The nightly pass over real pools and threads, with fake stores: an in-memory progress set and
 * pass table, and saves that sleep a few milliseconds and record how many run at once per pool and
 * per instance. Asserts counts, orders and states; the only durations asserted are lower bounds
 * (a retry never comes before its backoff).
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
#include "sched/nightly.h"

#define MAX_INST   32
#define MAX_POOLS  8
#define MAX_PASSES 8
#define WAIT_US    (20 * USEC_PER_SEC)

struct finst {
        char id[32];
        char pool[16];
        int64_t estimate_us;
        int64_t last_success_us;
        bool enabled;
        int fail_times; /* the first attempts that fail */
        int attempts;   /* save() calls */
        int saves_ok;   /* saves that completed, adopted ones included */
        int saving;     /* saves on the instance right now, orphans included */
        int max_saving;
        bool orphan; /* a cancelled save left running on the instance */
        int64_t attempt_mono[8];
};

struct fpool {
        char name[16];
        int running; /* orphans included: they still write to the disk */
        int max_running;
};

struct fake {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct finst inst[MAX_INST];
        int n_inst;
        struct fpool pools[MAX_POOLS];
        int n_pools;
        int running_all, max_running_all, in_save;

        /* progress set */
        char key[128];
        bool set_exists;
        char members[MAX_INST][32];
        int n_members;
        int64_t ttl;
        int creates, created_n;
        bool progress_down;
        int fail_creates; /* the next creates fail as if the progress Redis were down */
        bool stale;       /* pass_create answers -ESTALE (deposed) */
        int deposed;

        /* passes */
        struct nightly_pass_record passes[MAX_PASSES];
        char pass_date[MAX_PASSES][16];
        int n_passes;
        int list_calls;

        /* behaviour */
        int64_t save_us;
        bool hold;         /* saves wait (while not cancelled) */
        int hold_after;    /* hold = true once this many saves completed (0: never) */
        int barrier_pools; /* the first saves wait until this many pools run at once */
        int barrier_pool;  /* ... or until this many run in their own pool */
        bool barrier_met;
        int down_after; /* the progress Redis goes down after this many saves (0: never) */
        int saves_total;
        int adopts;
        int seq[256]; /* instance index of each save start */
        int n_seq;
        int overruns;
        int64_t overrun_eta, overrun_wend;
};

static struct fake fake;
static _Atomic int64_t fake_now; /* 0: real schedule clock */

static int64_t now_fn(void *u)
{
        int64_t t = atomic_load(&fake_now);
        return t ? t : clock_wall_us();
}

static int limit_of(const char *pool, void *u)
{
        return strcmp(pool, "wide") == 0 ? 2 : 1;
}

static struct finst *find_inst(const char *id)
{
        for (int i = 0; i < fake.n_inst; i++)
                if (strcmp(fake.inst[i].id, id) == 0)
                        return &fake.inst[i];
        return NULL;
}

static struct fpool *find_pool(const char *name)
{
        for (int i = 0; i < fake.n_pools; i++)
                if (strcmp(fake.pools[i].name, name) == 0)
                        return &fake.pools[i];
        assert_true(fake.n_pools < MAX_POOLS);
        struct fpool *p = &fake.pools[fake.n_pools++];
        snprintf(p->name, sizeof(p->name), "%s", name);
        return p;
}

static void add_inst(const char *id, const char *pool, int64_t estimate_us)
{
        struct finst *f = &fake.inst[fake.n_inst++];
        snprintf(f->id, sizeof(f->id), "%s", id);
        snprintf(f->pool, sizeof(f->pool), "%s", pool);
        f->estimate_us = estimate_us;
        f->enabled = true;
        find_pool(pool);
}

/* ---- fake ops ---------------------------------------------------------------------------- */

static int f_list_instances(void *u, struct nightly_list *out)
{
        pthread_mutex_lock(&fake.lock);
        fake.list_calls++;
        for (int i = 0; i < fake.n_inst; i++) {
                struct finst *f = &fake.inst[i];
                if (!f->enabled)
                        continue;
                struct nightly_instance inst = {.id = f->id,
                                                .pool = f->pool,
                                                .used_memory = 1 << 20,
                                                .estimate_us = f->estimate_us,
                                                .last_success_us = f->last_success_us};
                assert_int_equal(nightly_list_add(out, &inst), 0);
        }
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int f_pass_create(void *u, const char *date, int64_t started_us,
                         const struct nightly_totals *t, int64_t *ret_id)
{
        pthread_mutex_lock(&fake.lock);
        if (fake.stale) {
                pthread_mutex_unlock(&fake.lock);
                return -ESTALE;
        }
        assert_true(fake.n_passes < MAX_PASSES);
        int i = fake.n_passes++;
        fake.passes[i] =
            (struct nightly_pass_record){.id = i + 1, .started_us = started_us, .totals = *t};
        snprintf(fake.pass_date[i], sizeof(fake.pass_date[i]), "%s", date);
        *ret_id = i + 1;
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int f_pass_lookup(void *u, const char *date, struct nightly_pass_record *ret)
{
        int r = -ENOENT;
        pthread_mutex_lock(&fake.lock);
        for (int i = fake.n_passes - 1; i >= 0; i--)
                if (strcmp(fake.pass_date[i], date) == 0) {
                        *ret = fake.passes[i];
                        r = 0;
                        break;
                }
        pthread_mutex_unlock(&fake.lock);
        return r;
}

static int f_pass_update(void *u, int64_t id, bool paused, const struct nightly_totals *t)
{
        pthread_mutex_lock(&fake.lock);
        assert_true(id >= 1 && id <= fake.n_passes);
        fake.passes[id - 1].paused = paused;
        fake.passes[id - 1].totals = *t;
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int f_pass_finish(void *u, int64_t id, const struct nightly_totals *t)
{
        pthread_mutex_lock(&fake.lock);
        assert_true(id >= 1 && id <= fake.n_passes);
        fake.passes[id - 1].finished = true;
        fake.passes[id - 1].totals = *t;
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int f_exists(void *u, const char *key)
{
        pthread_mutex_lock(&fake.lock);
        int r =
            fake.progress_down ? -ECONNREFUSED : (fake.set_exists && strcmp(key, fake.key) == 0);
        pthread_mutex_unlock(&fake.lock);
        return r;
}

static int f_create(void *u, const char *key, const char *const *ids, size_t n, int64_t ttl)
{
        pthread_mutex_lock(&fake.lock);
        if (fake.progress_down || fake.fail_creates > 0) {
                if (fake.fail_creates > 0)
                        fake.fail_creates--;
                pthread_mutex_unlock(&fake.lock);
                return -ECONNREFUSED;
        }
        assert_true(n <= MAX_INST);
        snprintf(fake.key, sizeof(fake.key), "%s", key);
        for (size_t i = 0; i < n; i++)
                snprintf(fake.members[i], sizeof(fake.members[i]), "%s", ids[i]);
        fake.n_members = (int)n;
        fake.set_exists = n > 0;
        fake.ttl = ttl;
        fake.creates++;
        fake.created_n = (int)n;
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int f_remove(void *u, const char *key, const char *id)
{
        pthread_mutex_lock(&fake.lock);
        if (fake.progress_down) {
                pthread_mutex_unlock(&fake.lock);
                return -ECONNREFUSED;
        }
        if (strcmp(key, fake.key) == 0)
                for (int i = 0; i < fake.n_members; i++)
                        if (strcmp(fake.members[i], id) == 0) {
                                memmove(fake.members[i], fake.members[fake.n_members - 1],
                                        sizeof(fake.members[i]));
                                fake.n_members--;
                                break;
                        }
        if (fake.n_members == 0)
                fake.set_exists = false; /* Redis deletes an empty set */
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int f_members(void *u, const char *key, struct nightly_list *out)
{
        pthread_mutex_lock(&fake.lock);
        if (fake.progress_down) {
                pthread_mutex_unlock(&fake.lock);
                return -ECONNREFUSED;
        }
        if (fake.set_exists && strcmp(key, fake.key) == 0)
                for (int i = 0; i < fake.n_members; i++)
                        assert_int_equal(nightly_list_add_id(out, fake.members[i]), 0);
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int f_count(void *u, const char *key)
{
        pthread_mutex_lock(&fake.lock);
        int r = fake.progress_down
                    ? -ECONNREFUSED
                    : (fake.set_exists && strcmp(key, fake.key) == 0 ? fake.n_members : 0);
        pthread_mutex_unlock(&fake.lock);
        return r;
}

static int pools_running(void)
{
        int k = 0;
        for (int i = 0; i < fake.n_pools; i++)
                k += fake.pools[i].running > 0;
        return k;
}

/* Count a save as running on the instance and in its pool. fake.lock held. */
static void save_begins(struct finst *f, struct fpool *p)
{
        f->saving++;
        if (f->saving > f->max_saving)
                f->max_saving = f->saving;
        p->running++;
        if (p->running > p->max_running)
                p->max_running = p->running;
        fake.running_all++;
        if (fake.running_all > fake.max_running_all)
                fake.max_running_all = fake.running_all;
        pthread_cond_broadcast(&fake.cond);
}

static void save_ends(struct finst *f, struct fpool *p)
{
        f->saving--;
        p->running--;
        fake.running_all--;
        pthread_cond_broadcast(&fake.cond);
}

static void timed_wait_ms(int ms)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&fake.cond, &fake.lock, &ts);
}

static int f_save(void *u, const struct nightly_save_request *req, struct nightly_save_result *res)
{
        pthread_mutex_lock(&fake.lock);
        struct finst *f = find_inst(req->instance_id);
        assert_non_null(f);
        struct fpool *p = find_pool(req->pool);
        assert_string_equal(p->name, f->pool);
        assert_int_equal(req->attempt, f->attempts + 1);
        if (f->attempts < 8)
                f->attempt_mono[f->attempts] = clock_mono_us();
        f->attempts++;
        fake.in_save++;
        if (fake.n_seq < 256)
                fake.seq[fake.n_seq++] = (int)(f - fake.inst);
        save_begins(f, p);

        /* Barriers: the first saves wait (bounded) until enough run at once. */
        int64_t deadline = clock_mono_us() + 5 * USEC_PER_SEC;
        while (!fake.barrier_met && (fake.barrier_pools || fake.barrier_pool) &&
               clock_mono_us() < deadline) {
                if ((fake.barrier_pools && pools_running() >= fake.barrier_pools) ||
                    (fake.barrier_pool && p->running >= fake.barrier_pool))
                        fake.barrier_met = true;
                else
                        timed_wait_ms(5);
        }
        while (fake.hold && !nightly_save_is_cancelled(req))
                timed_wait_ms(2);
        pthread_mutex_unlock(&fake.lock);

        for (int64_t slept = 0; slept < fake.save_us && !nightly_save_is_cancelled(req);
             slept += 1000)
                clock_sleep_us(1000);

        pthread_mutex_lock(&fake.lock);
        fake.in_save--;
        if (nightly_save_is_cancelled(req)) {
                /* The BGSAVE goes on on the instance; the next leader must adopt it. */
                f->orphan = true;
                pthread_cond_broadcast(&fake.cond);
                pthread_mutex_unlock(&fake.lock);
                return -ECANCELED;
        }
        save_ends(f, p);
        bool fail = f->fail_times > 0;
        if (fail) {
                f->fail_times--;
                snprintf(res->error, sizeof(res->error), "MISCONF disk full");
        } else {
                f->saves_ok++;
                f->last_success_us = now_fn(NULL);
        }
        res->ok = !fail;
        fake.saves_total++;
        if (fake.hold_after && fake.saves_total >= fake.hold_after)
                fake.hold = true;
        if (fake.down_after && fake.saves_total == fake.down_after)
                fake.progress_down = true;
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int f_in_flight(void *u, int64_t pass_id, struct nightly_list *out)
{
        pthread_mutex_lock(&fake.lock);
        for (int i = 0; i < fake.n_inst; i++)
                if (fake.inst[i].orphan)
                        assert_int_equal(nightly_list_add_id(out, fake.inst[i].id), 0);
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int f_adopt(void *u, const struct nightly_save_request *req, struct nightly_save_result *res)
{
        pthread_mutex_lock(&fake.lock);
        struct finst *f = find_inst(req->instance_id);
        assert_non_null(f);
        fake.adopts++;
        if (!f->orphan) {
                pthread_mutex_unlock(&fake.lock);
                return -ENOENT;
        }
        pthread_mutex_unlock(&fake.lock);
        clock_sleep_us(2000); /* the rest of the old save */
        pthread_mutex_lock(&fake.lock);
        f->orphan = false;
        save_ends(f, find_pool(f->pool));
        f->saves_ok++;
        f->last_success_us = now_fn(NULL);
        res->ok = true;
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static void f_overrun(void *u, const char *date, int64_t eta_us, int64_t wend_us)
{
        pthread_mutex_lock(&fake.lock);
        fake.overruns++;
        fake.overrun_eta = eta_us;
        fake.overrun_wend = wend_us;
        pthread_mutex_unlock(&fake.lock);
}

static void f_deposed(void *u)
{
        pthread_mutex_lock(&fake.lock);
        fake.deposed++;
        pthread_mutex_unlock(&fake.lock);
}

static const struct nightly_ops fake_ops = {
    .list_instances = f_list_instances,
    .pass_create = f_pass_create,
    .pass_lookup = f_pass_lookup,
    .pass_update = f_pass_update,
    .pass_finish = f_pass_finish,
    .progress_exists = f_exists,
    .progress_create = f_create,
    .progress_remove = f_remove,
    .progress_members = f_members,
    .progress_count = f_count,
    .save = f_save,
    .list_in_flight = f_in_flight,
    .adopt = f_adopt,
    .overrun = f_overrun,
    .deposed = f_deposed,
};

/* ---- fixture ----------------------------------------------------------------------------- */

struct fixture {
        struct sched_pools *pools;
        struct nightly *n;
        struct nightly_options opt;
};

static int setup(void **state)
{
        memset(&fake, 0, sizeof(fake));
        pthread_mutex_init(&fake.lock, NULL);
        pthread_cond_init(&fake.cond, NULL);
        fake.save_us = 3000;
        atomic_store(&fake_now, 0);
        return 0;
}

static int teardown(void **state)
{
        pthread_cond_destroy(&fake.cond);
        pthread_mutex_destroy(&fake.lock);
        return 0;
}

static void default_options(struct nightly_options *o)
{
        nightly_options_init(o);
        o->enabled = false; /* tests start passes by hand unless they test the start */
        o->tick_us = 10 * USEC_PER_MSEC;
        o->store_retry_us = 20 * USEC_PER_MSEC;
        o->retry_backoff_us = 10 * USEC_PER_MSEC;
        o->limit_fn = limit_of;
        o->now = now_fn;
}

static void fixture_start(struct fixture *f, uint64_t generation)
{
        f->pools = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        assert_non_null(f->pools);
        sched_pools_set_generation(f->pools, generation);
        f->n = nightly_new(f->pools, &fake_ops, &f->opt);
        assert_non_null(f->n);
        assert_int_equal(nightly_start(f->n), 0);
        nightly_start_leading(f->n, generation);
}

/* The daemon's order: stop the pass, free the pools (waits for running saves), free the pass. */
static void fixture_stop(struct fixture *f)
{
        nightly_stop(f->n);
        sched_pools_free(f->pools);
        nightly_free(f->n);
}

static enum nightly_state state_of(struct nightly *n)
{
        struct nightly_status *s;
        assert_int_equal(nightly_status(n, &s), 0);
        enum nightly_state st = s->state;
        nightly_status_free(s);
        return st;
}

static void wait_state(struct nightly *n, enum nightly_state want)
{
        int64_t deadline = clock_mono_us() + WAIT_US;
        enum nightly_state st;
        while ((st = state_of(n)) != want && clock_mono_us() < deadline)
                clock_sleep_us(2000);
        if (st != want)
                fail_msg("state %s, wanted %s", nightly_state_to_string(st),
                         nightly_state_to_string(want));
}

/* Start a pass by hand once the leadership look-up is over. */
static void start_now(struct nightly *n)
{
        int64_t deadline = clock_mono_us() + WAIT_US;
        int r;
        while ((r = nightly_start_now(n)) == -EBUSY && clock_mono_us() < deadline)
                clock_sleep_us(2000);
        assert_int_equal(r, 0);
        /* What the API answers the operator at once: the pass is under way, not idle. */
        assert_int_not_equal(state_of(n), NIGHTLY_IDLE);
}

/* Wait (bounded) until `*value` (read under the fake's lock) reaches at least `want`. */
static void wait_int(const int *value, int want)
{
        int64_t deadline = clock_mono_us() + WAIT_US;
        pthread_mutex_lock(&fake.lock);
        while (*value < want && clock_mono_us() < deadline)
                timed_wait_ms(2);
        int got = *value;
        pthread_mutex_unlock(&fake.lock);
        if (got < want)
                fail_msg("%d, wanted at least %d", got, want);
}

static int read_int(const int *value)
{
        pthread_mutex_lock(&fake.lock);
        int v = *value;
        pthread_mutex_unlock(&fake.lock);
        return v;
}

static void set_bool(bool *b, bool v)
{
        pthread_mutex_lock(&fake.lock);
        *b = v;
        pthread_cond_broadcast(&fake.cond);
        pthread_mutex_unlock(&fake.lock);
}

/* Every instance saved exactly once, never two saves on one at once, the set gone. */
static void assert_all_saved_once(void)
{
        pthread_mutex_lock(&fake.lock);
        for (int i = 0; i < fake.n_inst; i++) {
                if (fake.inst[i].saves_ok != 1)
                        fail_msg("instance %s saved %d times", fake.inst[i].id,
                                 fake.inst[i].saves_ok);
                assert_int_equal(fake.inst[i].max_saving, 1);
                assert_false(fake.inst[i].orphan);
        }
        assert_false(fake.set_exists);
        assert_int_equal(fake.n_members, 0);
        pthread_mutex_unlock(&fake.lock);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_pass_over_three_pools(void **state)
{
        struct fixture f;
        char id[32], pool[16];

        for (int i = 0; i < 12; i++) {
                snprintf(id, sizeof(id), "cache-%02d", i);
                snprintf(pool, sizeof(pool), "p%d", i % 3);
                add_inst(id, pool, (i + 1) * USEC_PER_MSEC);
        }
        fake.barrier_pools = 3;
        default_options(&f.opt);
        /*
         * The thread's tick is a minute: the pass can only finish within the wait if each save
         * queues the next of its pool as it ends (no place waits for a tick).
         */
        f.opt.tick_us = 60 * USEC_PER_SEC;
        fixture_start(&f, 1);
        start_now(f.n);
        wait_state(f.n, NIGHTLY_DONE);

        assert_all_saved_once();
        for (int i = 0; i < fake.n_pools; i++)
                assert_int_equal(fake.pools[i].max_running, 1); /* limit 1: one after another */
        assert_int_equal(fake.max_running_all, 3);              /* the pools ran in parallel */
        assert_int_equal(fake.creates, 1);
        assert_int_equal(fake.created_n, 12);
        assert_int_equal(fake.ttl, 86400);
        assert_non_null(strstr(fake.key, "persistd:pass:"));
        assert_non_null(strstr(fake.key, ":pending"));
        assert_int_equal(fake.n_passes, 1);
        assert_true(fake.passes[0].finished);
        assert_int_equal(fake.passes[0].totals.total, 12);
        assert_int_equal(fake.passes[0].totals.done, 12);
        assert_int_equal(fake.passes[0].totals.failed, 0);
        assert_int_equal(fake.overruns, 0);

        /* Inside a pool the biggest estimate goes first. */
        for (int pi = 0; pi < 3; pi++) {
                int64_t last = INT64_MAX;
                for (int k = 0; k < fake.n_seq; k++) {
                        struct finst *fi = &fake.inst[fake.seq[k]];
                        if (fi->pool[1] - '0' != pi)
                                continue;
                        assert_true(fi->estimate_us < last);
                        last = fi->estimate_us;
                }
        }

        struct nightly_status *s;
        assert_int_equal(nightly_status(f.n, &s), 0);
        assert_int_equal(s->state, NIGHTLY_DONE);
        assert_int_equal(s->totals.done, 12);
        assert_int_equal(s->pending, 0);
        assert_true(s->started_us > 0 && s->finished_us >= s->started_us);
        assert_int_equal(s->eta_us, 0);
        assert_int_equal(s->n_pools, 3);
        for (size_t i = 0; i < s->n_pools; i++) {
                assert_int_equal(s->pools[i].n_current, 0);
                assert_int_equal(s->pools[i].pending, 0);
        }
        nightly_status_free(s);
        /* A second manual pass is possible once the first is done. */
        assert_int_equal(nightly_pause(f.n), -ENOENT);
        assert_int_equal(nightly_resume(f.n), -ENOENT);
        fixture_stop(&f);
}

static void test_limit_two_uses_both_places(void **state)
{
        struct fixture f;
        char id[32];

        for (int i = 0; i < 6; i++) {
                snprintf(id, sizeof(id), "wide-%d", i);
                add_inst(id, "wide", USEC_PER_MSEC);
        }
        fake.barrier_pool = 2;
        default_options(&f.opt);
        fixture_start(&f, 1);
        start_now(f.n);
        wait_state(f.n, NIGHTLY_DONE);
        assert_all_saved_once();
        assert_int_equal(fake.pools[0].max_running, 2);
        assert_true(fake.passes[0].finished);
        assert_int_equal(fake.passes[0].totals.done, 6);
        fixture_stop(&f);
}

static void test_retries_with_backoff_then_failed(void **state)
{
        struct fixture f;

        add_inst("bad", "p0", 100 * USEC_PER_MSEC); /* biggest: first in its pool */
        add_inst("ok-1", "p0", 3 * USEC_PER_MSEC);
        add_inst("ok-2", "p0", 2 * USEC_PER_MSEC);
        add_inst("ok-3", "p0", 1 * USEC_PER_MSEC);
        add_inst("flaky", "p1", 1 * USEC_PER_MSEC);
        fake.inst[0].fail_times = 100;
        fake.inst[4].fail_times = 1;
        default_options(&f.opt);
        f.opt.max_attempts = 3;
        f.opt.retry_backoff_us = 300 * USEC_PER_MSEC;
        fixture_start(&f, 1);
        start_now(f.n);
        wait_state(f.n, NIGHTLY_DONE);

        pthread_mutex_lock(&fake.lock);
        struct finst *bad = &fake.inst[0], *flaky = &fake.inst[4];
        assert_int_equal(bad->attempts, 3);
        assert_int_equal(bad->saves_ok, 0);
        assert_int_equal(flaky->attempts, 2);
        assert_int_equal(flaky->saves_ok, 1);
        for (int i = 1; i < 4; i++) {
                assert_int_equal(fake.inst[i].attempts, 1);
                assert_int_equal(fake.inst[i].saves_ok, 1);
        }
        /* The backoff doubles, and is never cut short. */
        assert_true(bad->attempt_mono[1] - bad->attempt_mono[0] >= 300 * USEC_PER_MSEC);
        assert_true(bad->attempt_mono[2] - bad->attempt_mono[1] >= 600 * USEC_PER_MSEC);
        /* The place was not held during the backoff: the others ran in between. */
        int p0_seq[16], n_p0 = 0;
        for (int k = 0; k < fake.n_seq && n_p0 < 16; k++)
                if (strcmp(fake.inst[fake.seq[k]].pool, "p0") == 0)
                        p0_seq[n_p0++] = fake.seq[k];
        assert_int_equal(n_p0, 6);
        assert_int_equal(p0_seq[0], 0);
        assert_int_equal(p0_seq[4], 0);
        assert_int_equal(p0_seq[5], 0);
        assert_false(fake.set_exists);
        assert_true(fake.passes[0].finished);
        assert_int_equal(fake.passes[0].totals.done, 4);
        assert_int_equal(fake.passes[0].totals.failed, 1);
        assert_int_equal(fake.pools[0].max_running, 1);
        pthread_mutex_unlock(&fake.lock);

        struct nightly_status *s;
        assert_int_equal(nightly_status(f.n, &s), 0);
        assert_int_equal(s->totals.failed, 1);
        assert_non_null(strstr(s->last_error, "bad: MISCONF disk full"));
        nightly_status_free(s);
        fixture_stop(&f);
}

static void test_pause_and_resume(void **state)
{
        struct fixture f;
        char id[32];

        for (int i = 0; i < 5; i++) {
                snprintf(id, sizeof(id), "cache-%d", i);
                add_inst(id, "p0", USEC_PER_MSEC);
        }
        fake.hold = true;
        default_options(&f.opt);
        fixture_start(&f, 1);
        assert_int_equal(nightly_pause(f.n), -ENOENT);
        start_now(f.n);
        wait_int(&fake.running_all, 1);
        /* The feeding rule: no more nightly jobs in the pool than its limit, running included. */
        struct sched_pool_stats *ps;
        assert_int_equal(sched_pools_stats(f.pools, &ps), 1);
        assert_int_equal(ps[0].running, 1);
        assert_int_equal(ps[0].queued_by_priority[SCHED_PRIO_NIGHTLY], 0);
        free(ps);
        assert_int_equal(nightly_pause(f.n), 0);
        assert_int_equal(nightly_pause(f.n), 0); /* idempotent */
        assert_int_equal(state_of(f.n), NIGHTLY_PAUSED);

        /* The running save ends; no new one starts. */
        set_bool(&fake.hold, false);
        wait_int(&fake.saves_total, 1);
        clock_sleep_us(150 * USEC_PER_MSEC);
        assert_int_equal(read_int(&fake.saves_total), 1);
        assert_int_equal(read_int(&fake.running_all), 0);
        assert_int_equal(state_of(f.n), NIGHTLY_PAUSED);
        struct nightly_status *s;
        assert_int_equal(nightly_status(f.n, &s), 0);
        assert_int_equal(s->totals.done, 1);
        assert_int_equal(s->pending, 4);
        nightly_status_free(s);
        /* The pause is recorded, so a new leader would keep it. */
        int64_t deadline = clock_mono_us() + WAIT_US;
        bool paused = false;
        while (!paused && clock_mono_us() < deadline) {
                pthread_mutex_lock(&fake.lock);
                paused = fake.passes[0].paused;
                pthread_mutex_unlock(&fake.lock);
                clock_sleep_us(2000);
        }
        assert_true(paused);

        assert_int_equal(nightly_resume(f.n), 0);
        wait_state(f.n, NIGHTLY_DONE);
        assert_all_saved_once();
        assert_false(fake.passes[0].paused);

        nightly_stop_leading(f.n);
        assert_int_equal(nightly_pause(f.n), -EAGAIN);
        assert_int_equal(nightly_start_now(f.n), -EAGAIN);
        assert_int_equal(state_of(f.n), NIGHTLY_IDLE);
        fixture_stop(&f);
}

static void test_skip_if_saved_recently(void **state)
{
        struct fixture f;
        int64_t now = clock_wall_us();

        add_inst("fresh-1", "p0", USEC_PER_MSEC);
        add_inst("fresh-2", "p1", USEC_PER_MSEC);
        add_inst("old", "p0", USEC_PER_MSEC);
        add_inst("never", "p1", USEC_PER_MSEC);
        fake.inst[0].last_success_us = now - 10 * 60 * USEC_PER_SEC;
        fake.inst[1].last_success_us = now - 59 * 60 * USEC_PER_SEC;
        fake.inst[2].last_success_us = now - 2 * 3600 * USEC_PER_SEC;
        default_options(&f.opt);
        f.opt.skip_if_saved_within_us = 3600 * USEC_PER_SEC;
        fixture_start(&f, 1);
        start_now(f.n);
        wait_state(f.n, NIGHTLY_DONE);

        pthread_mutex_lock(&fake.lock);
        assert_int_equal(fake.inst[0].attempts, 0);
        assert_int_equal(fake.inst[1].attempts, 0);
        assert_int_equal(fake.inst[2].saves_ok, 1);
        assert_int_equal(fake.inst[3].saves_ok, 1);
        assert_int_equal(fake.created_n, 2); /* the skipped ones never enter the set */
        assert_false(fake.set_exists);
        assert_int_equal(fake.passes[0].totals.total, 4);
        assert_int_equal(fake.passes[0].totals.skipped, 2);
        assert_int_equal(fake.passes[0].totals.done, 2);
        pthread_mutex_unlock(&fake.lock);
        fixture_stop(&f);
}

static void test_progress_store_down_pauses(void **state)
{
        struct fixture f;
        char id[32];

        for (int i = 0; i < 9; i++) {
                snprintf(id, sizeof(id), "cache-%d", i);
                add_inst(id, "p0", USEC_PER_MSEC);
        }
        fake.down_after = 3;
        default_options(&f.opt);
        fixture_start(&f, 1);
        start_now(f.n);
        wait_state(f.n, NIGHTLY_WAITING_PROGRESS);
        /* What was already running ends; then nothing new starts while the store is down. */
        int64_t deadline = clock_mono_us() + WAIT_US;
        while (read_int(&fake.running_all) > 0 && clock_mono_us() < deadline)
                clock_sleep_us(2000);
        int saved = read_int(&fake.saves_total);
        assert_true(saved >= 3 && saved < 9);
        clock_sleep_us(200 * USEC_PER_MSEC);
        assert_int_equal(read_int(&fake.saves_total), saved);
        assert_int_equal(state_of(f.n), NIGHTLY_WAITING_PROGRESS);

        set_bool(&fake.progress_down, false);
        wait_state(f.n, NIGHTLY_DONE);
        assert_all_saved_once();
        assert_true(fake.passes[0].finished);
        assert_int_equal(fake.passes[0].totals.done, 9);
        fixture_stop(&f);
}

static void test_progress_store_down_before_the_pass(void **state)
{
        struct fixture f;

        add_inst("cache-0", "p0", USEC_PER_MSEC);
        add_inst("cache-1", "p1", USEC_PER_MSEC);
        /* Down when leadership starts: the look for an interrupted pass waits for it. */
        fake.progress_down = true;
        default_options(&f.opt);
        fixture_start(&f, 1);
        wait_state(f.n, NIGHTLY_WAITING_PROGRESS);
        assert_int_equal(nightly_start_now(f.n), -EBUSY);
        set_bool(&fake.progress_down, false);
        wait_state(f.n, NIGHTLY_IDLE);

        /* The set cannot be created twice: the pass waits, then starts; nothing saved before. */
        pthread_mutex_lock(&fake.lock);
        fake.fail_creates = 2;
        pthread_mutex_unlock(&fake.lock);
        start_now(f.n);
        wait_state(f.n, NIGHTLY_DONE);
        assert_all_saved_once();
        assert_int_equal(fake.creates, 1);
        assert_int_equal(fake.n_passes, 1);
        assert_true(fake.passes[0].finished);
        fixture_stop(&f);
}

static void test_deposed_stops_the_pass(void **state)
{
        struct fixture f;

        add_inst("cache-0", "p0", USEC_PER_MSEC);
        fake.stale = true;
        default_options(&f.opt);
        fixture_start(&f, 1);
        start_now(f.n);
        wait_int(&fake.deposed, 1);
        clock_sleep_us(50 * USEC_PER_MSEC);
        pthread_mutex_lock(&fake.lock);
        assert_int_equal(fake.deposed, 1);
        assert_int_equal(fake.inst[0].attempts, 0); /* nothing sent to an instance */
        assert_int_equal(fake.n_passes, 0);
        pthread_mutex_unlock(&fake.lock);
        fixture_stop(&f);
}

static void test_failover_resumes_pending_only(void **state)
{
        struct fixture a, b;
        char id[32], pool[16];

        for (int i = 0; i < 12; i++) {
                snprintf(id, sizeof(id), "cache-%02d", i);
                snprintf(pool, sizeof(pool), "p%d", i % 3);
                add_inst(id, pool, USEC_PER_MSEC);
        }
        fake.hold_after = 3;
        default_options(&a.opt);
        fixture_start(&a, 1);
        start_now(a.n);
        /* Some saves done, then one save held in every pool: the leader dies mid-pass. */
        wait_int(&fake.saves_total, 3);
        wait_int(&fake.running_all, 3);
        nightly_stop_leading(a.n);
        sched_pools_clear(a.pools);
        int64_t deadline = clock_mono_us() + WAIT_US;
        while (read_int(&fake.in_save) > 0 && clock_mono_us() < deadline)
                clock_sleep_us(2000);
        assert_int_equal(read_int(&fake.in_save), 0);
        assert_int_equal(state_of(a.n), NIGHTLY_IDLE);
        pthread_mutex_lock(&fake.lock);
        int done_a = fake.saves_total, orphans = 0;
        for (int i = 0; i < fake.n_inst; i++)
                orphans += fake.inst[i].orphan;
        if (!(done_a >= 3 && orphans >= 3))
                fail_msg("done %d, orphans %d", done_a, orphans);
        /* Only what was saved left the set (a removal may not have happened before the end). */
        assert_true(fake.n_members >= 12 - done_a && fake.n_members <= 12);
        /* The record counts only what left the set: a resuming leader cannot count twice. */
        assert_true(fake.n_passes == 1 && fake.passes[0].totals.done + fake.n_members <= 12);
        fake.hold = false;
        fake.hold_after = 0;
        pthread_mutex_unlock(&fake.lock);
        clock_sleep_us(50 * USEC_PER_MSEC);
        assert_int_equal(read_int(&fake.saves_total), done_a); /* the old leader does nothing */

        /* Another replica, its own pools, the same stores. */
        default_options(&b.opt);
        fixture_start(&b, 2);
        wait_state(b.n, NIGHTLY_DONE);

        assert_all_saved_once(); /* none skipped, none doubled */
        pthread_mutex_lock(&fake.lock);
        assert_int_equal(fake.adopts, orphans); /* each interrupted save reconciled first */
        assert_int_equal(fake.saves_total, 12 - orphans);
        for (int i = 0; i < fake.n_pools; i++)
                assert_int_equal(fake.pools[i].max_running, 1); /* adoptions held the places */
        assert_int_equal(fake.n_passes, 1);                     /* the same pass, resumed */
        assert_true(fake.passes[0].finished);
        assert_int_equal(fake.passes[0].totals.total, 12);
        assert_int_equal(fake.passes[0].totals.done, 12);
        assert_int_equal(fake.list_calls, 2);
        pthread_mutex_unlock(&fake.lock);
        fixture_stop(&b);
        fixture_stop(&a);
}

static int64_t at(const char *rfc3339)
{
        int64_t us;
        assert_int_equal(clock_parse_rfc3339(rfc3339, false, &us), 0);
        return us;
}

static void test_start_at_configured_minute(void **state)
{
        struct fixture f;

        add_inst("cache-0", "p0", USEC_PER_MSEC);
        add_inst("cache-1", "p1", USEC_PER_MSEC);
        atomic_store(&fake_now, at("2026-12-01T23:59:58Z"));
        default_options(&f.opt);
        f.opt.enabled = true;
        f.opt.start_minute = 0;
        fixture_start(&f, 1);
        clock_sleep_us(150 * USEC_PER_MSEC);
        assert_int_equal(read_int(&fake.list_calls), 0);
        assert_int_equal(state_of(f.n), NIGHTLY_IDLE);

        int64_t start = at("2026-12-02T00:00:00.200Z");
        atomic_store(&fake_now, start);
        wait_state(f.n, NIGHTLY_DONE);
        assert_all_saved_once();
        assert_int_equal(fake.n_passes, 1);
        assert_string_equal(fake.pass_date[0], "2026-12-02");
        assert_int_equal(fake.passes[0].started_us, start);
        assert_string_equal(fake.key, "persistd:pass:2026-12-02:pending");

        /* Later that night: the day's pass is done, nothing starts again. */
        atomic_store(&fake_now, at("2026-12-02T00:30:00Z"));
        clock_sleep_us(100 * USEC_PER_MSEC);
        assert_int_equal(read_int(&fake.list_calls), 1);
        fixture_stop(&f);

        /* A new leader in the same window knows the day's pass from its record. */
        default_options(&f.opt);
        f.opt.enabled = true;
        fixture_start(&f, 2);
        clock_sleep_us(100 * USEC_PER_MSEC);
        assert_int_equal(read_int(&fake.list_calls), 1);
        assert_int_equal(read_int(&fake.n_passes), 1);
        fixture_stop(&f);
}

static void test_start_catch_up_within_window(void **state)
{
        struct fixture f;

        add_inst("cache-0", "p0", USEC_PER_MSEC);
        /* 23:00 start, 6 h window: at 01:00 the pass of the day before is due, never started. */
        atomic_store(&fake_now, at("2026-12-02T01:00:00Z"));
        default_options(&f.opt);
        f.opt.enabled = true;
        f.opt.start_minute = 23 * 60;
        fixture_start(&f, 1);
        wait_state(f.n, NIGHTLY_DONE);
        assert_int_equal(fake.n_passes, 1);
        assert_string_equal(fake.pass_date[0], "2026-12-01");
        fixture_stop(&f);

        /* Outside the window (00:00 start, 1 h window, now 02:00): nothing starts. */
        teardown(state);
        setup(state);
        add_inst("cache-0", "p0", USEC_PER_MSEC);
        atomic_store(&fake_now, at("2026-12-02T02:00:00Z"));
        default_options(&f.opt);
        f.opt.enabled = true;
        f.opt.window_us = 3600 * USEC_PER_SEC;
        fixture_start(&f, 1);
        clock_sleep_us(150 * USEC_PER_MSEC);
        assert_int_equal(read_int(&fake.list_calls), 0);
        fixture_stop(&f);
}

static void test_eta_and_overrun_warning(void **state)
{
        struct fixture f;
        char id[32];
        int64_t t0 = at("2026-12-02T00:00:00Z");
        int64_t two_h = 2 * 3600 * USEC_PER_SEC;

        for (int i = 0; i < 4; i++) {
                snprintf(id, sizeof(id), "big-%d", i);
                add_inst(id, "p0", two_h);
        }
        add_inst("small", "wide", 60 * USEC_PER_SEC);
        atomic_store(&fake_now, t0);
        fake.hold = true;
        default_options(&f.opt);
        fixture_start(&f, 1);
        start_now(f.n);
        wait_int(&fake.running_all, 2);

        struct nightly_status *s;
        assert_int_equal(nightly_status(f.n, &s), 0);
        assert_int_equal(s->state, NIGHTLY_RUNNING);
        assert_int_equal(s->started_us, t0);
        assert_int_equal(s->window_end_us, t0 + 3 * two_h);
        assert_int_equal(s->eta_us, t0 + 4 * two_h); /* one running, three behind it */
        assert_true(s->overrun);
        assert_int_equal(s->totals.total, 5);
        assert_int_equal(s->pending, 5);
        for (size_t i = 0; i < s->n_pools; i++) {
                assert_int_equal(s->pools[i].n_current, 1);
                if (strcmp(s->pools[i].name, "p0") == 0) {
                        assert_string_equal(s->pools[i].current[0], "big-0");
                        assert_int_equal(s->pools[i].pending, 4);
                } else {
                        assert_string_equal(s->pools[i].current[0], "small");
                        assert_int_equal(s->pools[i].limit, 2);
                }
        }
        nightly_status_free(s);
        wait_int(&fake.overruns, 1);
        assert_int_equal(fake.overrun_eta, t0 + 4 * two_h);
        assert_int_equal(fake.overrun_wend, t0 + 3 * two_h);

        set_bool(&fake.hold, false);
        wait_state(f.n, NIGHTLY_DONE);
        assert_int_equal(read_int(&fake.overruns), 1); /* once per pass */
        assert_all_saved_once();
        fixture_stop(&f);
}

static void test_options_and_helpers(void **state)
{
        struct nightly_options o;
        struct nightly_local_time lt;
        char key[64];
        struct sched_pools *ps = sched_pools_new(limit_of, NULL, USEC_PER_SEC);

        nightly_options_init(&o);
        assert_true(o.enabled);
        assert_int_equal(o.max_attempts, 3);
        assert_int_equal(o.window_us, 6 * 3600 * USEC_PER_SEC);
        o.max_attempts = 0;
        assert_null(nightly_new(ps, &fake_ops, &o));
        nightly_options_init(&o);
        o.start_minute = 24 * 60;
        assert_null(nightly_new(ps, &fake_ops, &o));
        nightly_options_init(&o);
        struct nightly_ops no_save = fake_ops;
        no_save.save = NULL;
        assert_null(nightly_new(ps, &no_save, &o));
        nightly_free(NULL);

        assert_int_equal(nightly_local_time_utc(at("2026-03-29T23:59:59.9Z"), &lt, NULL), 0);
        assert_string_equal(lt.date, "2026-03-29");
        assert_int_equal(lt.second_of_day, 86399);
        assert_string_equal(nightly_pending_key("persistd", "2026-12-02", key, sizeof(key)),
                            "persistd:pass:2026-12-02:pending");
        assert_string_equal(nightly_pending_key("persistd", "2026-12-02", key, 8), "");
        assert_string_equal(nightly_state_to_string(NIGHTLY_WAITING_PROGRESS),
                            "waiting-for-progress-store");
        sched_pools_free(ps);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_pass_over_three_pools, setup, teardown),
            cmocka_unit_test_setup_teardown(test_limit_two_uses_both_places, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retries_with_backoff_then_failed, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pause_and_resume, setup, teardown),
            cmocka_unit_test_setup_teardown(test_skip_if_saved_recently, setup, teardown),
            cmocka_unit_test_setup_teardown(test_progress_store_down_pauses, setup, teardown),
            cmocka_unit_test_setup_teardown(test_progress_store_down_before_the_pass, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_deposed_stops_the_pass, setup, teardown),
            cmocka_unit_test_setup_teardown(test_failover_resumes_pending_only, setup, teardown),
            cmocka_unit_test_setup_teardown(test_start_at_configured_minute, setup, teardown),
            cmocka_unit_test_setup_teardown(test_start_catch_up_within_window, setup, teardown),
            cmocka_unit_test_setup_teardown(test_eta_and_overrun_warning, setup, teardown),
            cmocka_unit_test_setup_teardown(test_options_and_helpers, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
