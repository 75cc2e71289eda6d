/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prometheus metrics: a thread-safe registry of counters, gauges and histograms with label sets
 * of bounded cardinality, rendered in the text exposition format 0.0.4. Every metric family of
 * persistd is a row of one table (metrics_families[], SPEC 11), so modules only update values
 * by id and docs/metrics.md is written from the same rows (`persistd metrics-docs` is not
 * needed: metrics_write_markdown() prints it).
 */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include "core/macro.h"

enum metric_type {
        METRIC_COUNTER,
        METRIC_GAUGE,
        METRIC_HISTOGRAM,
};

#define METRIC_MAX_LABELS 4

/* One family: a row of the table. Plain data; tables are static const. */
struct metric_def {
        const char *name;
        enum metric_type type;
        const char *help;
        const char *labels[METRIC_MAX_LABELS]; /* label names, NULL after the last */
        const double *buckets;                 /* histograms: upper bounds, increasing, no +Inf */
        size_t n_buckets;
        size_t max_series; /* label sets beyond this are dropped (0 = 64) */
};

/* persistd's families (SPEC 11). The order of this enum is the order of metrics_families[]. */
enum metric_id {
        M_IS_LEADER,
        M_LEADER_TRANSITIONS,
        M_RENEW_FAILURES,
        M_RENEW_DURATION,
        M_POOL_SAVES_RUNNING,
        M_POOL_SAVES_QUEUED,
        M_POOL_LIMIT,
        M_RUNS,
        M_SAVE_DURATION,
        M_SCHEDULE_LATENESS,
        M_ESTIMATE_ERROR,
        M_PLAN_OVERRUN,
        M_NIGHTLY_PENDING,
        M_NIGHTLY_ETA,
        M_INSTANCES_LAST_SAVE_FAILED,
        M_INSTANCES_SAVE_CONFIG_DRIFTED,
        M_UNUSABLE_ROWS,
        M_HTTP_REQUESTS,
        M_SERIES_DROPPED,
        M__COUNT,
};

extern const struct metric_def metrics_families[M__COUNT];

struct metrics;

/* A registry of persistd's families (metrics_families). NULL on OOM. Caller frees. */
struct metrics *metrics_new(void);

/*
 * A registry of other families (`defs` borrowed, must outlive it; ids are indexes into it).
 * For tests and tools. NULL on OOM or when a definition is invalid (bad name, unsorted buckets).
 */
struct metrics *metrics_new_with(const struct metric_def *defs, size_t n_defs);
void metrics_free(struct metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct metrics *, metrics_free);

/*
 * Update the series of family `id` with the label values `values` (borrowed, one per label of
 * the family, in order; NULL when the family has no labels). A new label set is created on first
 * use; past the family's max_series it is dropped and counted in M_SERIES_DROPPED (registries
 * made with metrics_new() only).
 *
 * Returns 0; -EINVAL when `id` is out of range, the family has another type (counter_add on a
 * gauge), a counter would decrease, or a value is NULL or longer than 256 bytes; -E2BIG when
 * dropped; -ENOMEM. Any thread.
 */
int metrics_counter_add(struct metrics *m, int id, const char *const *values, double v);
int metrics_gauge_set(struct metrics *m, int id, const char *const *values, double v);
int metrics_gauge_add(struct metrics *m, int id, const char *const *values, double v);
int metrics_histogram_observe(struct metrics *m, int id, const char *const *values, double v);

/* Remove every series of family `id` (e.g. before re-publishing per-pool gauges). Any thread. */
void metrics_family_clear(struct metrics *m, int id);

/*
 * The value of a counter or gauge series (histograms: the count), or NAN when it does not
 * exist. For tests. Any thread.
 */
double metrics_value(struct metrics *m, int id, const char *const *values);

/*
 * The text exposition format 0.0.4 of every family, in table order; series in the order they
 * were created. Caller frees; NULL on OOM. Any thread.
 */
char *metrics_render(struct metrics *m);

/* The Content-Type of metrics_render()'s output. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct sched_pool_stats;

/*
 * Publish a snapshot of the pools (sched_pools_stats(), borrowed): M_POOL_SAVES_RUNNING,
 * M_POOL_SAVES_QUEUED per priority and M_POOL_LIMIT for each pool. Any thread.
 */
void metrics_publish_pools(struct metrics *m, const struct sched_pool_stats *stats, size_t n);

/* Write docs/metrics.md's reference table from metrics_families[]. */
void metrics_write_markdown(FILE *out);
