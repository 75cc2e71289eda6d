/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metrics registry: one mutex over every family; series are kept in creation order in a
 * small array per family (cardinality is bounded, so a linear search is cheap), and rendering
 * writes the Prometheus text format 0.0.4 under the same lock.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "http/metrics.h"
#include "sched/pool.h"

#define LABEL_VALUE_MAX    256
#define DEFAULT_MAX_SERIES 64

/* Seconds: from a few milliseconds (renewals, HTTP) to an hour (big saves). */
static const double seconds_short[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25,  0.5,    1,     2.5,  5,     10};
static const double seconds_long[] = {0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600};
static const double lateness_buckets[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800};
static const double ratio_buckets[] = {0.25, 0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2, 4};

#define B(a) .buckets = (a), .n_buckets = ELEMENTSOF(a)

const struct metric_def metrics_families[M__COUNT] = {
    [M_IS_LEADER] = {.name = "persistd_is_leader",
                     .type = METRIC_GAUGE,
                     .help = "1 while this replica holds the Lease, else 0."},
    [M_LEADER_TRANSITIONS] = {.name = "persistd_leader_transitions_total",
                              .type = METRIC_COUNTER,
                              .help = "Times this replica became or stopped being the leader.",
                              .labels = {"direction"},
                              .max_series = 2},
    [M_RENEW_FAILURES] = {.name = "persistd_lease_renew_failures_total",
                          .type = METRIC_COUNTER,
                          .help = "Lease renewals that failed (error, conflict or timeout)."},
    [M_RENEW_DURATION] = {.name = "persistd_lease_renew_duration_seconds",
                          .type = METRIC_HISTOGRAM,
                          .help = "Latency of Lease renewals, successful or not.",
                          B(seconds_short)},
    [M_POOL_SAVES_RUNNING] = {.name = "persistd_pool_saves_running",
                              .type = METRIC_GAUGE,
                              .help = "Saves running now in a pool.",
                              .labels = {"pool"},
                              .max_series = 256},
    [M_POOL_SAVES_QUEUED] = {.name = "persistd_pool_saves_queued",
                             .type = METRIC_GAUGE,
                             .help = "Saves waiting for a place in a pool, by priority.",
                             .labels = {"pool", "priority"},
                             .max_series = 1280},
    [M_POOL_LIMIT] = {.name = "persistd_pool_limit",
                      .type = METRIC_GAUGE,
                      .help = "Most saves that may run at once in a pool.",
                      .labels = {"pool"},
                      .max_series = 256},
    [M_RUNS] = {.name = "persistd_runs_total",
                .type = METRIC_COUNTER,
                .help = "Finished runs by kind (scheduled, nightly, manual, persist) and "
                        "result (succeeded, failed, skipped, missed, timed_out).",
                .labels = {"kind", "result"},
                .max_series = 64},
    [M_SAVE_DURATION] = {.name = "persistd_save_duration_seconds",
                         .type = METRIC_HISTOGRAM,
                         .help = "Duration of completed saves, per pool.",
                         .labels = {"pool"},
                         .max_series = 256,
                         B(seconds_long)},
    [M_SCHEDULE_LATENESS] = {.name = "persistd_schedule_lateness_seconds",
                             .type = METRIC_HISTOGRAM,
                             .help = "How long after its slot time a scheduled save started.",
                             .labels = {"pool"},
                             .max_series = 256,
                             B(lateness_buckets)},
    [M_ESTIMATE_ERROR] = {.name = "persistd_estimate_error_ratio",
                          .type = METRIC_HISTOGRAM,
                          .help = "Actual save duration divided by its estimate.",
                          .labels = {"pool"},
                          .max_series = 256,
                          B(ratio_buckets)},
    [M_PLAN_OVERRUN] = {.name = "persistd_plan_overrun_seconds",
                        .type = METRIC_GAUGE,
                        .help = "How far the plan of the loaded hour ends after the hour, "
                                "per pool (0: it fits).",
                        .labels = {"pool"},
                        .max_series = 256},
    [M_NIGHTLY_PENDING] = {.name = "persistd_nightly_pending",
                           .type = METRIC_GAUGE,
                           .help = "Instances the nightly pass has still to persist."},
    [M_NIGHTLY_ETA] = {.name = "persistd_nightly_eta_seconds",
                       .type = METRIC_GAUGE,
                       .help = "Seconds until the nightly pass is expected to finish, from "
                               "the estimates (0 when no pass runs)."},
    [M_INSTANCES_LAST_SAVE_FAILED] = {.name = "persistd_instances_last_save_failed",
                                      .type = METRIC_GAUGE,
                                      .help = "Instances whose last save failed, per pool.",
                                      .labels = {"pool"},
                                      .max_series = 256},
    [M_INSTANCES_SAVE_CONFIG_DRIFTED] = {.name = "persistd_instances_save_config_drifted",
                                         .type = METRIC_GAUGE,
                                         .help = "Instances whose `save` configuration is not "
                                                 "\"\" (it did not stick or was changed), per "
                                                 "pool.",
                                         .labels = {"pool"},
                                         .max_series = 256},
    [M_UNUSABLE_ROWS] = {.name = "persistd_unusable_rows",
                         .type = METRIC_GAUGE,
                         .help =
                             "Rows persistd cannot use (a malformed cron, an unknown action, an "
                             "instance it cannot address), by table; the reasons are in the "
                             "unusable_rows view.",
                         .labels = {"table"},
                         .max_series = 2},
    [M_HTTP_REQUESTS] = {.name = "persistd_http_requests_total",
                         .type = METRIC_COUNTER,
                         .help = "HTTP requests answered, by route pattern and status code.",
                         .labels = {"route", "code"},
                         .max_series = 512},
    [M_SERIES_DROPPED] = {.name = "persistd_metrics_series_dropped_total",
                          .type = METRIC_COUNTER,
                          .help = "Label sets refused because a family reached its "
                                  "cardinality bound."},
};

struct series {
        char **values;    /* one per label */
        double value;     /* counter, gauge; histogram: sum */
        uint64_t count;   /* histogram */
        uint64_t *counts; /* histogram: per bucket, not cumulative */
};

struct family {
        const struct metric_def *def;
        size_t n_labels;
        struct series *series;
        size_t n_series, alloc;
};

struct metrics {
        pthread_mutex_t lock;
        struct family *families;
        size_t n_families;
        bool has_dropped_family;
};

static bool name_ok(const char *s, bool label)
{
        if (strempty(s))
                return false;
        for (size_t i = 0; s[i]; i++) {
                char c = s[i];
                bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                             (!label && c == ':');
                if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
                        return false;
        }
        return true;
}

struct metrics *metrics_new_with(const struct metric_def *defs, size_t n_defs)
{
        struct metrics *m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        pthread_mutex_init(&m->lock, NULL);
        m->families = calloc(n_defs ? n_defs : 1, sizeof(*m->families));
        if (!m->families) {
                metrics_free(m);
                return NULL;
        }
        m->n_families = n_defs;
        for (size_t i = 0; i < n_defs; i++) {
                const struct metric_def *d = &defs[i];
                struct family *f = &m->families[i];
                f->def = d;
                if (!name_ok(d->name, false))
                        goto invalid;
                while (f->n_labels < METRIC_MAX_LABELS && d->labels[f->n_labels]) {
                        if (!name_ok(d->labels[f->n_labels], true) ||
                            streq(d->labels[f->n_labels], "le"))
                                goto invalid;
                        f->n_labels++;
                }
                if (d->type == METRIC_HISTOGRAM) {
                        if (d->n_buckets == 0)
                                goto invalid;
                        for (size_t b = 1; b < d->n_buckets; b++)
                                if (!(d->buckets[b] > d->buckets[b - 1]))
                                        goto invalid;
                }
        }
        return m;
invalid:
        metrics_free(m);
        return NULL;
}

struct metrics *metrics_new(void)
{
        struct metrics *m = metrics_new_with(metrics_families, M__COUNT);
        if (m)
                m->has_dropped_family = true;
        return m;
}

static void series_release(struct series *s, size_t n_labels)
{
        for (size_t i = 0; i < n_labels; i++)
                free(s->values[i]);
        free(s->values);
        free(s->counts);
}

void metrics_family_clear(struct metrics *m, int id)
{
        if (!m || id < 0 || (size_t)id >= m->n_families)
                return;
        pthread_mutex_lock(&m->lock);
        struct family *f = &m->families[id];
        for (size_t i = 0; i < f->n_series; i++)
                series_release(&f->series[i], f->n_labels);
        f->n_series = 0;
        pthread_mutex_unlock(&m->lock);
}

void metrics_free(struct metrics *m)
{
        if (!m)
                return;
        for (size_t i = 0; m->families && i < m->n_families; i++) {
                struct family *f = &m->families[i];
                for (size_t j = 0; j < f->n_series; j++)
                        series_release(&f->series[j], f->n_labels);
                free(f->series);
        }
        free(m->families);
        pthread_mutex_destroy(&m->lock);
        free(m);
}

/*
 * The analyzer cannot see that each family's n_labels matches the label array its callers pass
 * (metrics_publish_pools and the others use the table's own label counts), nor that the
 * label-less M_SERIES_DROPPED family is the one reached with values == NULL.
 */
static bool values_ok(const struct family *f, const char *const *values)
{
        for (size_t i = 0; i < f->n_labels; i++)
                /* NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Branch) */
                if (!values || !values[i] ||
                    strnlen(values[i], LABEL_VALUE_MAX + 1) > LABEL_VALUE_MAX)
                        return false;
        return true;
}

static struct series *series_find(struct family *f, const char *const *values)
{
        if (f->n_labels == 0)
                return f->n_series ? &f->series[0] : NULL;
        for (size_t i = 0; i < f->n_series; i++) {
                size_t l = 0;
                /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
                while (l < f->n_labels && streq(f->series[i].values[l], values[l]))
                        l++;
                if (l == f->n_labels)
                        return &f->series[i];
        }
        return NULL;
}

/* Find or create under the lock; *ret NULL with a negative errno when refused. */
static int series_get(struct metrics *m, struct family *f, const char *const *values,
                      struct series **ret)
{
        struct series *s = series_find(f, values);
        if (s) {
                *ret = s;
                return 0;
        }
        size_t max = f->def->max_series ? f->def->max_series : DEFAULT_MAX_SERIES;
        if (f->n_labels == 0)
                max = 1;
        if (f->n_series >= max) {
                if (m->has_dropped_family) {
                        struct family *d = &m->families[M_SERIES_DROPPED];
                        struct series *ds;
                        if (f != d && series_get(m, d, NULL, &ds) == 0)
                                ds->value += 1;
                }
                return -E2BIG;
        }
        if (f->n_series == f->alloc) {
                size_t alloc = f->alloc ? f->alloc * 2 : 4;
                struct series *n = realloc(f->series, alloc * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                f->series = n;
                f->alloc = alloc;
        }
        s = &f->series[f->n_series];
        memset(s, 0, sizeof(*s));
        s->values = calloc(f->n_labels ? f->n_labels : 1, sizeof(char *));
        if (!s->values)
                return -ENOMEM;
        for (size_t i = 0; i < f->n_labels; i++) {
                s->values[i] = strdup(values[i]); /* NOLINT(clang-analyzer-core.NullDereference) */
                if (!s->values[i]) {
                        series_release(s, i);
                        return -ENOMEM;
                }
        }
        if (f->def->type == METRIC_HISTOGRAM) {
                s->counts = calloc(f->def->n_buckets, sizeof(uint64_t));
                if (!s->counts) {
                        series_release(s, f->n_labels);
                        return -ENOMEM;
                }
        }
        f->n_series++;
        *ret = s;
        return 0;
}

enum op {
        OP_COUNTER_ADD,
        OP_GAUGE_SET,
        OP_GAUGE_ADD,
        OP_OBSERVE,
};

static int update(struct metrics *m, int id, const char *const *values, double v, enum op op)
{
        static const enum metric_type wanted[] = {
            [OP_COUNTER_ADD] = METRIC_COUNTER,
            [OP_GAUGE_SET] = METRIC_GAUGE,
            [OP_GAUGE_ADD] = METRIC_GAUGE,
            [OP_OBSERVE] = METRIC_HISTOGRAM,
        };
        if (!m || id < 0 || (size_t)id >= m->n_families)
                return -EINVAL;
        struct family *f = &m->families[id];
        if (f->def->type != wanted[op] || !values_ok(f, values) ||
            (op == OP_COUNTER_ADD && !(v >= 0)))
                return -EINVAL;

        pthread_mutex_lock(&m->lock);
        struct series *s;
        int r = series_get(m, f, values, &s);
        if (r == 0) {
                switch (op) {
                case OP_COUNTER_ADD:
                case OP_GAUGE_ADD:
                        s->value += v;
                        break;
                case OP_GAUGE_SET:
                        s->value = v;
                        break;
                case OP_OBSERVE: {
                        size_t b = 0;
                        while (b < f->def->n_buckets && v > f->def->buckets[b])
                                b++;
                        if (b < f->def->n_buckets)
                                s->counts[b]++;
                        s->count++;
                        s->value += v;
                        break;
                }
                }
        }
        pthread_mutex_unlock(&m->lock);
        return r;
}

int metrics_counter_add(struct metrics *m, int id, const char *const *values, double v)
{
        return update(m, id, values, v, OP_COUNTER_ADD);
}

int metrics_gauge_set(struct metrics *m, int id, const char *const *values, double v)
{
        return update(m, id, values, v, OP_GAUGE_SET);
}

int metrics_gauge_add(struct metrics *m, int id, const char *const *values, double v)
{
        return update(m, id, values, v, OP_GAUGE_ADD);
}

int metrics_histogram_observe(struct metrics *m, int id, const char *const *values, double v)
{
        return update(m, id, values, v, OP_OBSERVE);
}

double metrics_value(struct metrics *m, int id, const char *const *values)
{
        if (!m || id < 0 || (size_t)id >= m->n_families)
                return NAN;
        struct family *f = &m->families[id];
        if (!values_ok(f, values))
                return NAN;
        pthread_mutex_lock(&m->lock);
        struct series *s = series_find(f, values);
        double v = !s ? NAN : f->def->type == METRIC_HISTOGRAM ? (double)s->count : s->value;
        pthread_mutex_unlock(&m->lock);
        return v;
}

/* ---- exposition ------------------------------------------------------------------------ */

/* A float as Prometheus reads it: shortest round-trip decimal, +Inf, -Inf, NaN. */
static void add_number(struct strbuf *sb, double v)
{
        if (isnan(v)) {
                strbuf_adds(sb, "NaN");
                return;
        }
        if (isinf(v)) {
                strbuf_adds(sb, v > 0 ? "+Inf" : "-Inf");
                return;
        }
        char buf[32];
        if (v == floor(v) && fabs(v) < 1e15) {
                snprintf(buf, sizeof(buf), "%.0f", v);
                strbuf_adds(sb, v == 0 ? "0" : buf); /* no "-0" */
                return;
        }
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, sizeof(buf), "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        break;
        }
        strbuf_adds(sb, buf);
}

/* HELP text escapes backslash and newline; label values also the double quote. */
static void add_escaped(struct strbuf *sb, const char *s, bool quote)
{
        for (; *s; s++) {
                if (*s == '\\')
                        strbuf_adds(sb, "\\\\");
                else if (*s == '\n')
                        strbuf_adds(sb, "\\n");
                else if (quote && *s == '"')
                        strbuf_adds(sb, "\\\"");
                else
                        strbuf_addch(sb, *s);
        }
}

static void add_labels(struct strbuf *sb, const struct family *f, const struct series *s,
                       const char *le)
{
        if (f->n_labels == 0 && !le)
                return;
        strbuf_addch(sb, '{');
        for (size_t i = 0; i < f->n_labels; i++) {
                strbuf_addf(sb, "%s%s=\"", i ? "," : "", f->def->labels[i]);
                add_escaped(sb, s->values[i], true);
                strbuf_addch(sb, '"');
        }
        if (le)
                strbuf_addf(sb, "%sle=\"%s\"", f->n_labels ? "," : "", le);
        strbuf_addch(sb, '}');
}

static void render_series(struct strbuf *sb, const struct family *f, const struct series *s)
{
        const char *name = f->def->name;
        if (f->def->type != METRIC_HISTOGRAM) {
                strbuf_adds(sb, name);
                add_labels(sb, f, s, NULL);
                strbuf_addch(sb, ' ');
                add_number(sb, s->value);
                strbuf_addch(sb, '\n');
                return;
        }
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= f->def->n_buckets; b++) {
                struct strbuf le = STRBUF_INIT;
                if (b < f->def->n_buckets) {
                        cumulative += s->counts[b];
                        add_number(&le, f->def->buckets[b]);
                } else {
                        cumulative = s->count;
                        strbuf_adds(&le, "+Inf");
                }
                strbuf_addf(sb, "%s_bucket", name);
                add_labels(sb, f, s, strbuf_str(&le));
                strbuf_addf(sb, " %llu\n", (unsigned long long)cumulative);
                strbuf_release(&le);
        }
        strbuf_addf(sb, "%s_sum", name);
        add_labels(sb, f, s, NULL);
        strbuf_addch(sb, ' ');
        add_number(sb, s->value);
        strbuf_addf(sb, "\n%s_count", name);
        add_labels(sb, f, s, NULL);
        strbuf_addf(sb, " %llu\n", (unsigned long long)s->count);
}

char *metrics_render(struct metrics *m)
{
        static const char *const type_names[] = {
            [METRIC_COUNTER] = "counter",
            [METRIC_GAUGE] = "gauge",
            [METRIC_HISTOGRAM] = "histogram",
        };
        struct strbuf sb = STRBUF_INIT;

        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->n_families; i++) {
                const struct family *f = &m->families[i];
                strbuf_addf(&sb, "# HELP %s ", f->def->name);
                add_escaped(&sb, f->def->help, false);
                strbuf_addf(&sb, "\n# TYPE %s %s\n", f->def->name, type_names[f->def->type]);
                if (f->n_labels == 0 && f->n_series == 0) {
                        /* A family without labels always has its one series, at zero. */
                        struct series zero = {0};
                        uint64_t counts[64] = {0};
                        if (f->def->n_buckets <= ELEMENTSOF(counts)) {
                                zero.counts = counts;
                                render_series(&sb, f, &zero);
                        }
                        continue;
                }
                for (size_t j = 0; j < f->n_series; j++)
                        render_series(&sb, f, &f->series[j]);
        }
        pthread_mutex_unlock(&m->lock);
        return strbuf_detach(&sb);
}

void metrics_publish_pools(struct metrics *m, const struct sched_pool_stats *stats, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                const char *pool = stats[i].name;
                metrics_gauge_set(m, M_POOL_SAVES_RUNNING, (const char *[]){pool},
                                  stats[i].running);
                metrics_gauge_set(m, M_POOL_LIMIT, (const char *[]){pool}, stats[i].limit);
                for (int p = 0; p < SCHED_PRIO_COUNT; p++)
                        metrics_gauge_set(m, M_POOL_SAVES_QUEUED,
                                          (const char *[]){pool, sched_priority_to_string(p)},
                                          stats[i].queued_by_priority[p]);
        }
}

void metrics_write_markdown(FILE *out)
{
        static const char *const type_names[] = {
            [METRIC_COUNTER] = "counter",
            [METRIC_GAUGE] = "gauge",
            [METRIC_HISTOGRAM] = "histogram",
        };
        fputs("| name | type | labels | meaning |\n|---|---|---|---|\n", out);
        for (size_t i = 0; i < M__COUNT; i++) {
                const struct metric_def *d = &metrics_families[i];
                fprintf(out, "| `%s` | %s | ", d->name, type_names[d->type]);
                for (size_t l = 0; l < METRIC_MAX_LABELS && d->labels[l]; l++)
                        fprintf(out, "%s`%s`", l ? ", " : "", d->labels[l]);
                fprintf(out, " | %s |\n", d->help);
        }
        fputs("\nHistogram buckets (seconds, or a ratio for `persistd_estimate_error_ratio`):\n\n",
              out);
        for (size_t i = 0; i < M__COUNT; i++) {
                const struct metric_def *d = &metrics_families[i];
                if (d->type != METRIC_HISTOGRAM)
                        continue;
                fprintf(out, "- `%s`:", d->name);
                for (size_t b = 0; b < d->n_buckets; b++)
                        fprintf(out, " %g", d->buckets[b]);
                fputs("\n", out);
        }
}
