/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark: storm avoidance (SPEC 15). The same fleet of real instances in one disk pool saves
 * twice: (a) uncoordinated, every instance BGSAVE at once, as per-instance save rules firing
 * together would; (b) paced, through persistd's pool (limit 1) and instance driver, one save
 * after another as the nightly pass does. A sampler reads INFO and /proc/<pid>/io every 10 ms;
 * a PING sampler (one thread and connection per instance) records the worst PING latency.
 * Run by bench/storm with the instances' ports; prints `metric: value unit` lines.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "core/clock.h"
#include "core/log.h"
#include "fleet-sampler.h"
#include "redis/driver.h"
#include "sched/pool.h"

#define POOL       "pool-a"
#define WINDOW_US  (100 * USEC_PER_MSEC)
#define SAVE_LIMIT (600 * USEC_PER_SEC)

struct phase {
        int peak_saving;
        double peak_rate, peak_device_rate, makespan_s, written_mb;
        size_t saves;
        double worst_ping_ms;
};

static int n_inst;
static int *ports;

static void die(const char *what)
{
        fprintf(stderr, "storm: %s\n", what);
        exit(1);
}

static long field(const char *info, const char *name)
{
        char key[64];
        snprintf(key, sizeof(key), "\n%s:", name);
        const char *p = strstr(info, key);
        return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static redisReply *command(redisContext *c, const char *cmd)
{
        redisReply *r = redisCommand(c, cmd);
        if (!r)
                die(c->errstr);
        return r;
}

static long rdb_saves(redisContext *c, bool *saving)
{
        redisReply *r = command(c, "INFO persistence");
        long v = field(r->str, "rdb_saves");
        *saving = field(r->str, "rdb_bgsave_in_progress") == 1;
        freeReplyObject(r);
        return v;
}

static void summarise(struct fleet_sampler *s, struct phase *ret)
{
        size_t n, k;
        const struct fleet_sample *v = fleet_sampler_samples(s, &n);
        const struct fleet_save *sv = fleet_sampler_saves(s, &k);
        int64_t first = INT64_MAX, last = 0;
        for (size_t i = 0; i < k; i++) {
                if (sv[i].start_us < first)
                        first = sv[i].start_us;
                if (sv[i].end_us > last)
                        last = sv[i].end_us;
        }
        ret->peak_saving = fleet_peak_saving(v, n);
        ret->peak_rate = fleet_peak_rate(v, n, WINDOW_US);
        ret->peak_device_rate = fleet_peak_device_rate(v, n, WINDOW_US);
        ret->makespan_s = k ? (double)(last - first) / 1e6 : 0;
        ret->saves = k;
        ret->written_mb = n ? (double)(v[n - 1].bytes - v[0].bytes) / 1e6 : 0;
}

/* ---- PING sampler: one connection and thread per instance, a PING every 10 ms -------------- */

struct pinger {
        pthread_t thread;
        redisContext *c;
        int64_t worst_us;
};

static struct pinger *pingers;
static bool ping_stop; /* under ping_lock */
static pthread_mutex_t ping_lock = PTHREAD_MUTEX_INITIALIZER;

static bool ping_stopping(void)
{
        pthread_mutex_lock(&ping_lock);
        bool stop = ping_stop;
        pthread_mutex_unlock(&ping_lock);
        return stop;
}

static void *pinger_main(void *arg)
{
        struct pinger *p = arg;
        while (!ping_stopping()) {
                int64_t t0 = clock_mono_us();
                redisReply *r = redisCommand(p->c, "PING");
                int64_t dt = clock_mono_us() - t0;
                if (!r) {
                        fprintf(stderr, "storm: PING: %s\n", p->c->errstr);
                        exit(1);
                }
                freeReplyObject(r);
                pthread_mutex_lock(&ping_lock);
                if (dt > p->worst_us)
                        p->worst_us = dt;
                pthread_mutex_unlock(&ping_lock);
                clock_sleep_us(10 * USEC_PER_MSEC);
        }
        return NULL;
}

static void pingers_start(void)
{
        struct timeval tv = {.tv_sec = 30};
        pingers = calloc((size_t)n_inst, sizeof(*pingers));
        if (!pingers)
                die("out of memory");
        ping_stop = 0;
        for (int i = 0; i < n_inst; i++) {
                pingers[i].c = redisConnectWithTimeout("127.0.0.1", ports[i], tv);
                if (!pingers[i].c || pingers[i].c->err)
                        die("connect (PING sampler)");
                redisSetTimeout(pingers[i].c, tv);
                if (pthread_create(&pingers[i].thread, NULL, pinger_main, &pingers[i]) != 0)
                        die("pthread_create");
        }
}

/* Stop the PING sampler; the worst PING latency of any instance, in ms. */
static double pingers_stop(void)
{
        int64_t worst = 0;
        pthread_mutex_lock(&ping_lock);
        ping_stop = 1;
        pthread_mutex_unlock(&ping_lock);
        for (int i = 0; i < n_inst; i++) {
                pthread_join(pingers[i].thread, NULL);
                redisFree(pingers[i].c);
                if (pingers[i].worst_us > worst)
                        worst = pingers[i].worst_us;
        }
        free(pingers);
        pingers = NULL;
        return (double)worst / 1e3;
}

/* Let the page cache write back what the last phase left, so each phase starts even. */
static void settle(void)
{
        sync();
        clock_sleep_us(1 * USEC_PER_SEC);
}

static void storm(struct fleet_sampler *s, struct phase *ret)
{
        redisContext **c = calloc((size_t)n_inst, sizeof(*c));
        long *before = calloc((size_t)n_inst, sizeof(*before));
        bool saving;
        if (!c || !before)
                die("out of memory");
        struct timeval tv = {.tv_sec = 5};
        for (int i = 0; i < n_inst; i++) {
                c[i] = redisConnectWithTimeout("127.0.0.1", ports[i], tv);
                if (!c[i] || c[i]->err)
                        die("connect");
                redisSetTimeout(c[i], tv);
                before[i] = rdb_saves(c[i], &saving);
        }
        pingers_start();
        if (fleet_sampler_start(s) < 0)
                die("sampler");
        clock_sleep_us(50 * USEC_PER_MSEC);
        for (int i = 0; i < n_inst; i++)
                redisAppendCommand(c[i], "BGSAVE");
        for (int i = 0; i < n_inst; i++) {
                redisReply *r;
                if (redisGetReply(c[i], (void **)&r) != REDIS_OK)
                        die("BGSAVE");
                if (r->type == REDIS_REPLY_ERROR)
                        die(r->str);
                freeReplyObject(r);
        }
        int64_t deadline = clock_mono_us() + SAVE_LIMIT;
        for (int i = 0; i < n_inst; i++) {
                while (rdb_saves(c[i], &saving) <= before[i] || saving) {
                        if (clock_mono_us() > deadline)
                                die("saves did not finish");
                        clock_sleep_us(20 * USEC_PER_MSEC);
                }
                redisReply *r = command(c[i], "INFO persistence");
                if (!strstr(r->str, "rdb_last_bgsave_status:ok"))
                        die("a save failed");
                freeReplyObject(r);
        }
        clock_sleep_us(100 * USEC_PER_MSEC);
        fleet_sampler_stop(s);
        ret->worst_ping_ms = pingers_stop();
        for (int i = 0; i < n_inst; i++)
                redisFree(c[i]);
        free(c);
        free(before);
        summarise(s, ret);
}

/* ---- paced: persistd's pool and driver ------------------------------------------------------ */

struct paced_job {
        struct sched_job job; /* first: the pool hands back this pointer */
        struct driver_instance *inst;
        struct driver_save_result res;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int finished, failed;

static int limit_one(const char *pool, void *userdata)
{
        return 1;
}

static void job_run(struct sched_job *job)
{
        struct paced_job *j = (struct paced_job *)job;
        const struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE,
                                                .mode = DRIVER_MODE_NORMAL};
        enum driver_outcome o = driver_instance_save(j->inst, &req, &j->res);
        pthread_mutex_lock(&lock);
        if (o != DRIVER_SUCCEEDED) {
                fprintf(stderr, "storm: save: %s: %s\n", driver_outcome_to_string(o),
                        j->res.reason);
                failed++;
        }
        finished++;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
}

static void job_cancel(struct sched_job *job, enum sched_cancel_reason reason)
{
        pthread_mutex_lock(&lock);
        failed++;
        finished++;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
}

static void paced(struct fleet_sampler *s, struct phase *ret)
{
        const struct driver_options dopt = {.connect_timeout_ms = 2000,
                                            .command_timeout_ms = 5000,
                                            .poll_min_ms = 20,
                                            .poll_max_ms = 2000,
                                            .timeout_factor = 4,
                                            .min_timeout_s = 60};
        struct driver_estimator *est = driver_estimator_new(100e6, 20, 0.3);
        struct sched_pools *pools = sched_pools_new(limit_one, NULL, 60 * USEC_PER_SEC);
        struct paced_job *jobs = calloc((size_t)n_inst, sizeof(*jobs));
        if (!est || !pools || !jobs)
                die("out of memory");
        for (int i = 0; i < n_inst; i++) {
                char id[32];
                snprintf(id, sizeof(id), "redis-%d", i);
                const struct driver_target t = {
                    .id = id, .host = "127.0.0.1", .port = (uint16_t)ports[i]};
                if (driver_instance_new(&t, &dopt, NULL, est, &jobs[i].inst, NULL) < 0)
                        die("driver_instance_new");
                if (driver_instance_connect(jobs[i].inst) < 0)
                        die(driver_instance_errstr(jobs[i].inst));
                jobs[i].job = (struct sched_job){.priority = SCHED_PRIO_NIGHTLY,
                                                 .owner_key = 1,
                                                 .run = job_run,
                                                 .cancel = job_cancel};
        }
        sched_pools_set_generation(pools, 1);
        pingers_start();
        if (fleet_sampler_start(s) < 0)
                die("sampler");
        clock_sleep_us(50 * USEC_PER_MSEC);
        for (int i = 0; i < n_inst; i++)
                if (sched_pools_submit(pools, POOL, &jobs[i].job) < 0)
                        die("submit");
        pthread_mutex_lock(&lock);
        while (finished < n_inst)
                pthread_cond_wait(&cond, &lock);
        pthread_mutex_unlock(&lock);
        clock_sleep_us(100 * USEC_PER_MSEC);
        fleet_sampler_stop(s);
        ret->worst_ping_ms = pingers_stop();
        if (failed)
                die("a paced save failed");
        sched_pools_free(pools);
        for (int i = 0; i < n_inst; i++)
                driver_instance_free(jobs[i].inst);
        free(jobs);
        driver_estimator_free(est);
        summarise(s, ret);
}

static int sample_ms(void)
{
        const char *e = getenv("BENCH_SAMPLE_MS");
        int ms = e ? atoi(e) : 10;
        return ms >= 1 && ms <= 1000 ? ms : 10;
}

int main(int argc, char *argv[])
{
        if (argc < 2)
                die("usage: storm PORT...");
        log_setup(LOG_LEVEL_WARN, LOG_FORMAT_TEXT, 2);
        n_inst = argc - 1;
        ports = calloc((size_t)n_inst, sizeof(*ports));
        if (!ports)
                die("out of memory");
        for (int i = 0; i < n_inst; i++)
                ports[i] = atoi(argv[i + 1]);
        struct fleet_sampler *s =
            fleet_sampler_new(ports, (size_t)n_inst, sample_ms(), getenv("BENCH_FLEET_DIR"));
        if (!s)
                return 1;
        struct phase st, pa;
        settle();
        storm(s, &st);
        if (st.saves != (size_t)n_inst)
                die("the sampler did not see every storm save");
        settle();
        paced(s, &pa);
        if (pa.saves != (size_t)n_inst)
                die("the sampler did not see every paced save");
        printf("peak_concurrent_saves_storm: %d saves\n", st.peak_saving);
        printf("peak_concurrent_saves_paced: %d saves\n", pa.peak_saving);
        printf("peak_write_mb_s_storm: %.1f MB/s\n", st.peak_rate / 1e6);
        printf("peak_write_mb_s_paced: %.1f MB/s\n", pa.peak_rate / 1e6);
        if (fleet_sampler_has_device(s)) {
                printf("peak_device_write_mb_s_storm: %.1f MB/s\n", st.peak_device_rate / 1e6);
                printf("peak_device_write_mb_s_paced: %.1f MB/s\n", pa.peak_device_rate / 1e6);
        }
        printf("makespan_s_storm: %.2f s\n", st.makespan_s);
        printf("makespan_s_paced: %.2f s\n", pa.makespan_s);
        printf("written_mb_storm: %.0f MB\n", st.written_mb);
        printf("written_mb_paced: %.0f MB\n", pa.written_mb);
        printf("worst_ping_ms_storm: %.1f ms\n", st.worst_ping_ms);
        printf("worst_ping_ms_paced: %.1f ms\n", pa.worst_ping_ms);
        fleet_sampler_free(s);
        free(ports);
        return 0;
}
