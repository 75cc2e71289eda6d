/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark: the nightly pass (SPEC 7, 15) over real instances in one disk pool of limit 1: the
 * real pass module (sched/nightly.h) feeding the real pools (sched/pool.h), the real driver
 * (redis/driver.h) saving each instance, and the real progress store (store/progress.h) on a
 * Redis of its own. Only the pass records live in memory here (PostgreSQL's `passes` table in
 * the daemon). A sampler reads INFO and /proc/<pid>/io every 10 ms; from it come each save's
 * start and end, the idle gaps between consecutive saves and any sample above the pool limit.
 * Run by bench/nightly; prints `metric: value unit` lines.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/clock.h"
#include "core/log.h"
#include "fleet-sampler.h"
#include "redis/driver.h"
#include "sched/nightly.h"
#include "sched/pool.h"
#include "store/progress.h"

#define POOL       "pool-a"
#define LIMIT      1
#define PREFIX     "persistd-bench"
#define GENERATION 1
#define PASS_LIMIT (600 * USEC_PER_SEC)

struct binst {
        char id[32];
        int port;
        uint64_t used_memory;
        struct driver_instance *drv;
        struct driver_save_result res; /* of its last save */
        int saves;
};

static struct binst *inst;
static int n_inst;
static struct driver_estimator *est;
static struct progress *prog;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct nightly_pass_record pass; /* the one pass of the run */
static char pass_date[NIGHTLY_DATE_MAX];
static bool have_pass;
static int save_errors;

static void die(const char *what)
{
        fprintf(stderr, "nightly: %s\n", what);
        exit(1);
}

static struct binst *find(const char *id)
{
        for (int i = 0; i < n_inst; i++)
                if (strcmp(inst[i].id, id) == 0)
                        return &inst[i];
        return NULL;
}

/* ---- ops: instances and pass records (PostgreSQL in the daemon) ---------------------------- */

static int o_list_instances(void *u, struct nightly_list *out)
{
        for (int i = 0; i < n_inst; i++) {
                const struct nightly_instance ni = {
                    .id = inst[i].id, .pool = POOL, .used_memory = inst[i].used_memory};
                int r = nightly_list_add(out, &ni);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int64_t o_estimate(void *u, const struct nightly_instance *ni)
{
        return driver_estimator_estimate_us(est, (int64_t)ni->used_memory);
}

static int o_pass_create(void *u, const char *date, int64_t started_us,
                         const struct nightly_totals *t, int64_t *ret_id)
{
        pthread_mutex_lock(&lock);
        pass = (struct nightly_pass_record){.id = 1, .started_us = started_us, .totals = *t};
        snprintf(pass_date, sizeof(pass_date), "%s", date);
        have_pass = true;
        *ret_id = 1;
        pthread_mutex_unlock(&lock);
        return 0;
}

static int o_pass_lookup(void *u, const char *date, struct nightly_pass_record *ret)
{
        int r = -ENOENT;
        pthread_mutex_lock(&lock);
        if (have_pass && strcmp(date, pass_date) == 0) {
                *ret = pass;
                r = 0;
        }
        pthread_mutex_unlock(&lock);
        return r;
}

static int o_pass_update(void *u, int64_t id, bool paused, const struct nightly_totals *t)
{
        pthread_mutex_lock(&lock);
        pass.paused = paused;
        pass.totals = *t;
        pthread_mutex_unlock(&lock);
        return 0;
}

static int o_pass_finish(void *u, int64_t id, const struct nightly_totals *t)
{
        pthread_mutex_lock(&lock);
        pass.finished = true;
        pass.totals = *t;
        pthread_mutex_unlock(&lock);
        return 0;
}

/* ---- ops: the progress set, in the real progress store ------------------------------------- */

static int o_exists(void *u, const char *key)
{
        bool e;
        int r = progress_set_exists(prog, key, &e);
        return r < 0 ? r : e;
}

static int o_create(void *u, const char *key, const char *const *ids, size_t n, int64_t ttl_s)
{
        return progress_set_replace(prog, key, ids, n, ttl_s);
}

static int o_remove(void *u, const char *key, const char *id)
{
        return progress_set_remove(prog, key, id, NULL);
}

static int o_members(void *u, const char *key, struct nightly_list *out)
{
        char **ids;
        size_t n;
        int r = progress_set_members(prog, key, &ids, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++)
                r = nightly_list_add_id(out, ids[i]);
        progress_strv_free(ids);
        return r < 0 ? r : 0;
}

static int o_count(void *u, const char *key)
{
        int64_t n;
        int r = progress_set_count(prog, key, &n);
        return r < 0 ? r : (int)n;
}

/* ---- ops: one save, through the driver ------------------------------------------------------ */

static int o_save(void *u, const struct nightly_save_request *req, struct nightly_save_result *res)
{
        struct binst *b = find(req->instance_id);
        if (!b)
                return -ENOENT;
        const struct driver_save_request dreq = {.action = DRIVER_ACTION_BGSAVE,
                                                 .mode = DRIVER_MODE_NORMAL};
        struct driver_save_result dres;
        enum driver_outcome o = driver_instance_save(b->drv, &dreq, &dres);
        pthread_mutex_lock(&lock);
        b->res = dres;
        b->saves++;
        if (o != DRIVER_SUCCEEDED)
                save_errors++;
        pthread_mutex_unlock(&lock);
        res->ok = o == DRIVER_SUCCEEDED;
        if (!res->ok)
                snprintf(res->error, sizeof(res->error), "%s: %.200s", driver_outcome_to_string(o),
                         dres.reason);
        return 0;
}

static const struct nightly_ops ops = {
    .list_instances = o_list_instances,
    .estimate = o_estimate,
    .pass_create = o_pass_create,
    .pass_lookup = o_pass_lookup,
    .pass_update = o_pass_update,
    .pass_finish = o_pass_finish,
    .progress_exists = o_exists,
    .progress_create = o_create,
    .progress_remove = o_remove,
    .progress_members = o_members,
    .progress_count = o_count,
    .save = o_save,
};

static int limit_of(const char *pool, void *u)
{
        return LIMIT;
}

static int sample_ms(void)
{
        const char *e = getenv("BENCH_SAMPLE_MS");
        int ms = e ? atoi(e) : 10;
        return ms >= 1 && ms <= 1000 ? ms : 10;
}

/* ---- the run ------------------------------------------------------------------------------ */

static enum nightly_state state_of(struct nightly *n, struct nightly_totals *totals)
{
        struct nightly_status *s;
        if (nightly_status(n, &s) < 0)
                die("nightly_status");
        enum nightly_state st = s->state;
        *totals = s->totals;
        nightly_status_free(s);
        return st;
}

static int cmp_start(const void *a, const void *b)
{
        const struct fleet_save *x = a, *y = b;
        return x->start_us < y->start_us ? -1 : x->start_us > y->start_us;
}

struct wall_save {
        int64_t start, end;
};

static int cmp_wall(const void *a, const void *b)
{
        const struct wall_save *x = a, *y = b;
        return x->start < y->start ? -1 : x->start > y->start;
}

int main(int argc, char *argv[])
{
        if (argc < 3)
                die("usage: nightly PROGRESS-PORT PORT...");
        log_setup(LOG_LEVEL_WARN, LOG_FORMAT_TEXT, 2); /* the figures go to stdout alone */
        n_inst = argc - 2;
        inst = calloc((size_t)n_inst, sizeof(*inst));
        int *ports = calloc((size_t)n_inst, sizeof(*ports));
        est = driver_estimator_new(100e6, 20, 0.3);
        if (!inst || !ports || !est)
                die("out of memory");

        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%s", argv[1]);
        const struct progress_options po = {.address = addr,
                                            .key_prefix = PREFIX,
                                            .connect_timeout_ms = 2000,
                                            .command_timeout_ms = 5000};
        if (progress_new(&po, &prog) < 0)
                die("progress_new");

        /* The driver.* defaults of SPEC 10. */
        const struct driver_options dopt = {.connect_timeout_ms = 2000,
                                            .command_timeout_ms = 5000,
                                            .poll_min_ms = 20,
                                            .poll_max_ms = 2000,
                                            .timeout_factor = 4,
                                            .min_timeout_s = 60};
        for (int i = 0; i < n_inst; i++) {
                struct binst *b = &inst[i];
                ports[i] = b->port = atoi(argv[i + 2]);
                snprintf(b->id, sizeof(b->id), "redis-%d", i);
                const struct driver_target t = {
                    .id = b->id, .host = "127.0.0.1", .port = (uint16_t)b->port};
                if (driver_instance_new(&t, &dopt, NULL, est, &b->drv, NULL) < 0)
                        die("driver_instance_new");
                struct rinfo ri;
                if (driver_instance_info(b->drv, &ri) < 0)
                        die(driver_instance_errstr(b->drv));
                b->used_memory =
                    ri.has_used_memory && ri.used_memory > 0 ? (uint64_t)ri.used_memory : 0;
        }

        struct fleet_sampler *smp =
            fleet_sampler_new(ports, (size_t)n_inst, sample_ms(), getenv("BENCH_FLEET_DIR"));
        if (!smp)
                return 1;
        struct sched_pools *pools = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        struct nightly_options no;
        nightly_options_init(&no);
        no.enabled = false; /* started by hand below */
        no.key_prefix = PREFIX;
        no.limit_fn = limit_of;
        if (!pools)
                die("out of memory");
        sched_pools_set_generation(pools, GENERATION);
        struct nightly *n = nightly_new(pools, &ops, &no);
        if (!n || nightly_start(n) < 0)
                die("nightly_new");

        if (fleet_sampler_start(smp) < 0)
                die("sampler");
        nightly_start_leading(n, GENERATION);
        int64_t deadline = clock_mono_us() + PASS_LIMIT;
        int r;
        while ((r = nightly_start_now(n)) == -EBUSY && clock_mono_us() < deadline)
                clock_sleep_us(10 * USEC_PER_MSEC);
        if (r < 0)
                die("nightly_start_now");
        struct nightly_totals t;
        while (state_of(n, &t) != NIGHTLY_DONE) {
                if (clock_mono_us() > deadline)
                        die("the pass did not finish");
                clock_sleep_us(50 * USEC_PER_MSEC);
        }
        clock_sleep_us(100 * USEC_PER_MSEC);
        fleet_sampler_stop(smp);
        nightly_stop(n);
        sched_pools_free(pools);
        nightly_free(n);

        if (t.done != n_inst || save_errors)
                die("not every instance was saved");
        size_t seen;
        fleet_sampler_saves(smp, &seen);
        if (seen != (size_t)n_inst)
                die("the sampler did not see every save");

        size_t ns, nsv;
        const struct fleet_sample *v = fleet_sampler_samples(smp, &ns);
        const struct fleet_save *sv0 = fleet_sampler_saves(smp, &nsv);
        struct fleet_save *sv = calloc(nsv + 1, sizeof(*sv));
        double *gaps = calloc(nsv + 1, sizeof(*gaps)), *dk = calloc(nsv + 1, sizeof(*dk));
        struct wall_save *ws = calloc((size_t)n_inst, sizeof(*ws));
        double *dgaps = calloc((size_t)n_inst, sizeof(*dgaps));
        if (!sv || !gaps || !dk || !ws || !dgaps)
                die("out of memory");
        memcpy(sv, sv0, nsv * sizeof(*sv));
        qsort(sv, nsv, sizeof(*sv), cmp_start);

        int violations = 0;
        for (size_t i = 0; i < ns; i++)
                violations += v[i].saving > LIMIT;
        int64_t sum = 0;
        for (size_t i = 0; i < nsv; i++) {
                sum += sv[i].end_us - sv[i].start_us;
                if (i > 0) {
                        gaps[i - 1] = (double)(sv[i].start_us - sv[i - 1].end_us) / 1e3;
                        dk[i - 1] = (double)(sv[i].start_us - sv[i - 1].child_exit_us) / 1e3;
                }
        }
        int64_t makespan = nsv ? sv[nsv - 1].end_us - sv[0].start_us : 0;

        /* The same from the driver's own timestamps: command sent, completion seen. */
        for (int i = 0; i < n_inst; i++)
                ws[i] = (struct wall_save){inst[i].res.save_started_wall_us,
                                           inst[i].res.finished_wall_us};
        qsort(ws, (size_t)n_inst, sizeof(*ws), cmp_wall);
        for (int i = 1; i < n_inst; i++)
                dgaps[i - 1] = (double)(ws[i].start - ws[i - 1].end) / 1e3;

        size_t ng = nsv ? nsv - 1 : 0;
        printf("saves: %zu saves\n", nsv);
        printf("sample_interval_ms: %d ms\n", sample_ms());
        printf("idle_gap_median_ms: %.1f ms\n", fleet_quantile(gaps, ng, 0.5));
        printf("idle_gap_p99_ms: %.1f ms\n", fleet_quantile(gaps, ng, 0.99));
        printf("makespan_over_sum_of_saves: %.4f ratio\n",
               sum ? (double)makespan / (double)sum : 0);
        printf("pool_limit_violations: %d samples\n", violations);
        printf("makespan_s: %.2f s\n", (double)makespan / 1e6);
        printf("sum_of_saves_s: %.2f s\n", (double)sum / 1e6);
        printf("driver_idle_gap_median_ms: %.1f ms\n",
               fleet_quantile(dgaps, (size_t)(n_inst - 1), 0.5));
        printf("driver_idle_gap_p99_ms: %.1f ms\n",
               fleet_quantile(dgaps, (size_t)(n_inst - 1), 0.99));
        printf("disk_idle_gap_median_ms: %.1f ms\n", fleet_quantile(dk, ng, 0.5));
        printf("disk_idle_gap_p99_ms: %.1f ms\n", fleet_quantile(dk, ng, 0.99));
        printf("peak_write_mb_s: %.1f MB/s\n", fleet_peak_rate(v, ns, 100 * USEC_PER_MSEC) / 1e6);

        free(sv);
        free(gaps);
        free(dk);
        free(ws);
        free(dgaps);
        fleet_sampler_free(smp);
        for (int i = 0; i < n_inst; i++)
                driver_instance_free(inst[i].drv);
        free(inst);
        free(ports);
        driver_estimator_free(est);
        progress_free(prog);
        return 0;
}
