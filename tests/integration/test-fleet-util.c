/* SPDX-License-Identifier: Apache-2.0 */
/* Shared fixtures of the fleet integration tests (test-fleet-util.h). */
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

static struct pgstore *store_for(const char *dsn)
{
        const struct pgstore_options o = {
            .dsn = dsn, .connect_timeout_s = 5, .statement_timeout_ms = 10000};
        struct pgstore *s = pgstore_new(&o);
        assert_non_null(s);
        return s;
}

void fx_open(struct fx *x, const char *tag, int n, const char *const *extra)
{
        char addr[64];

        memset(x, 0, sizeof(*x));
        x->dbname = th_pg_create_db(tag);
        x->dsn = th_pg_dsn(x->dbname);
        x->sql = th_pg_connect(x->dbname);
        x->store = store_for(x->dsn);
        assert_int_equal(pgstore_migrate(x->store, NULL, NULL), 0);
        th_redis_start(&x->prog, NULL);
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", x->prog.port);
        struct progress_options po = {.address = addr,
                                      .key_prefix = "persistd",
                                      .connect_timeout_ms = 2000,
                                      .command_timeout_ms = 2000};
        assert_int_equal(progress_new(&po, &x->progress), 0);
        assert_true(n <= FX_MAX_REDIS);
        for (int i = 0; i < n; i++) {
                th_redis_start(&x->redis[i], extra);
                x->rc[i] = th_redis_connect(&x->redis[i]);
        }
        x->n_redis = n;
}

void fx_close(struct fx *x)
{
        for (int i = 0; i < x->n_redis; i++) {
                redisFree(x->rc[i]);
                th_redis_stop(&x->redis[i]);
        }
        progress_free(x->progress);
        th_redis_stop(&x->prog);
        pgstore_free(x->store);
        PQfinish(x->sql);
        free(x->dbname);
        free(x->dsn);
}

struct pgstore *fx_store(const struct fx *x)
{
        return store_for(x->dsn);
}

struct progress *fx_progress(const struct fx *x)
{
        char addr[64];
        struct progress *p;

        snprintf(addr, sizeof(addr), "127.0.0.1:%u", x->prog.port);
        struct progress_options po = {.address = addr,
                                      .key_prefix = "persistd",
                                      .connect_timeout_ms = 2000,
                                      .command_timeout_ms = 2000};
        assert_int_equal(progress_new(&po, &p), 0);
        return p;
}

static struct fleet_pool_limit limits[2];

void fx_options(struct fleet_options *o, const char *identity, int l1, int l2)
{
        fleet_options_init(o);
        o->identity = identity;
        o->driver = (struct driver_options){.connect_timeout_ms = 1000,
                                            .command_timeout_ms = 3000,
                                            .poll_min_ms = 20,
                                            .poll_max_ms = 200,
                                            .timeout_factor = 10,
                                            .min_timeout_s = 30};
        o->save_check_interval_s = 10;
        o->write_rate_mb_s = 100;
        o->fork_ms_per_gb = 10;
        limits[0] = (struct fleet_pool_limit){"p1", l1};
        limits[1] = (struct fleet_pool_limit){"p2", l2};
        o->pool_limits = limits;
        o->n_pool_limits = 2;
        o->default_pool_limit = 1;
        o->nightly.enabled = false;
        o->nightly.tick_us = 50 * USEC_PER_MSEC;
        o->nightly.store_retry_us = 200 * USEC_PER_MSEC;
        o->nightly.retry_backoff_us = 200 * USEC_PER_MSEC;
        o->nightly.max_attempts = 2;
        o->epoch_retry_min_us = 100 * USEC_PER_MSEC;
        o->epoch_retry_max_us = 500 * USEC_PER_MSEC;
        o->metrics_interval_us = 200 * USEC_PER_MSEC;
}

struct metrics *fx_metrics;

static void on_deposed(void *userdata)
{
        struct fx *x = userdata;
        atomic_fetch_add(&x->deposed, 1);
}

static void on_event(enum fleet_event_type type, const char *reason, const char *message,
                     void *userdata)
{
        struct fx *x = userdata;
        (void)type;
        (void)reason;
        (void)message;
        atomic_fetch_add(&x->events, 1);
}

struct fleet *fx_fleet(struct fx *x, const struct fleet_options *o, struct pgstore *store,
                       struct progress *progress)
{
        struct fleet_callbacks cb = {.deposed = on_deposed, .event = on_event, .userdata = x};
        struct fleet *f = NULL;
        char err[256];

        assert_int_equal(fleet_new(o, store ? store : x->store, progress ? progress : x->progress,
                                   fx_metrics, NULL, &cb, &f, err, sizeof(err)),
                         0);
        assert_int_equal(fleet_start(f), 0);
        return f;
}

void fx_sql(struct fx *x, const char *fmt, ...)
{
        char buf[4096];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        th_pg_exec(x->sql, buf);
}

long long fx_int(struct fx *x, const char *fmt, ...)
{
        char buf[4096];
        va_list ap;
        char *v;
        long long n;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        v = th_pg_value(x->sql, buf);
        n = v ? strtoll(v, NULL, 10) : -1;
        free(v);
        return n;
}

void fx_instance(struct fx *x, const char *id, int i, const char *pool)
{
        unsigned port = i >= 0 ? x->redis[i].port : th_free_port();
        fx_sql(x,
               "INSERT INTO instances (id, host, port, pool) VALUES ('%s', '127.0.0.1', %u, '%s')",
               id, port, pool);
}

long long fx_rdb_saves(struct fx *x, int i)
{
        return th_redis_info_int(x->rc[i], "rdb_saves");
}

bool fx_wait(bool (*cond)(void *), void *arg, int timeout_ms)
{
        int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000;

        for (;;) {
                if (cond(arg))
                        return true;
                if (clock_mono_us() > end)
                        return false;
                clock_sleep_us(50 * 1000);
        }
}

void fx_slow(struct fx *x, int i, int keys, int delay_us)
{
        redisReply *r = th_redis_cmd(x->rc[i], "DEBUG POPULATE %d", keys);
        freeReplyObject(r);
        r = th_redis_cmd(x->rc[i], "CONFIG SET rdb-key-save-delay %d", delay_us);
        freeReplyObject(r);
}
