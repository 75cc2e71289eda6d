/* SPDX-License-Identifier: Apache-2.0 */
/* Shared fixtures of the fleet integration tests: a migrated database, a progress Redis, managed
 * redis-servers and a fleet wired to them with short timings. */
#pragma once

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fleet/fleet.h"
#include "harness.h"
#include "store/pgstore.h"
#include "store/progress.h"

#define FX_MAX_REDIS 10

struct fx {
        char *dbname;
        char *dsn;
        PGconn *sql; /* a platform team's psql */
        struct pgstore *store;
        struct th_redis prog;
        struct progress *progress;
        struct th_redis redis[FX_MAX_REDIS];
        redisContext *rc[FX_MAX_REDIS];
        int n_redis;
        atomic_int deposed;
        atomic_int events;
};

/* Start everything; `n` managed redis-servers, each with `extra` arguments (may be NULL). */
void fx_open(struct fx *x, const char *tag, int n, const char *const *extra);
void fx_close(struct fx *x);

struct pgstore *fx_store(const struct fx *x);
struct progress *fx_progress(const struct fx *x);

/* Options for a test fleet (short timings); limits: pool "p1" -> l1, "p2" -> l2. */
void fx_options(struct fleet_options *o, const char *identity, int l1, int l2);
/* The metrics registry the next fx_fleet() gets (NULL: none). */
extern struct metrics *fx_metrics;
/* A started fleet with `store` (NULL: the fixture's) and `progress` (NULL: the fixture's). */
struct fleet *fx_fleet(struct fx *x, const struct fleet_options *o, struct pgstore *store,
                       struct progress *progress);

/* SQL helpers. */
void fx_sql(struct fx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
long long fx_int(struct fx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Insert instance `id` for redis i (or a port with nothing listening when i < 0). */
void fx_instance(struct fx *x, const char *id, int i, const char *pool);

long long fx_rdb_saves(struct fx *x, int i);
/* Poll `cond` every 50 ms for up to timeout_ms. */
bool fx_wait(bool (*cond)(void *), void *arg, int timeout_ms);
/* Make saves of redis i slow: n keys, `delay_us` each. */
void fx_slow(struct fx *x, int i, int keys, int delay_us);
