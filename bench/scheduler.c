/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark of the scheduler (SPEC 15): 100,000 tasks over 10,000 instances in 100 pools of
 * limit 1, loaded by the real scheduler with real pools and executors; each slot sends a real
 * BGSAVE to one of a few redis-servers (the instances share them). Prints the time to load an
 * hour, the RSS, and the lateness of slots whose pool was free. Usage: scheduler PORT...
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/clock.h"
#include "sched/scheduler.h"

#define N_TASKS     100000
#define N_INSTANCES 10000
#define N_POOLS     100
#define MAX_REDIS   16
/* 2027-01-01T00:00:00Z: the hour loaded and run. */
#define HOUR_US     (INT64_C(1798761600) * USEC_PER_SEC)
#define MAX_SAMPLES 200000

static uint16_t ports[MAX_REDIS];
static int n_ports;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t *take_ms, *sent_ms; /* lateness in µs, of slots whose pool was free */
static size_t n_samples, n_busy, n_refused, n_catch_up;
static bool pool_busy[N_POOLS];

/* Each executor thread's connections, closed when the thread ends. */
struct conns {
        redisContext *c[MAX_REDIS];
};
static pthread_key_t conns_key;

static void conns_free(void *p)
{
        struct conns *cs = p;
        for (int i = 0; i < MAX_REDIS; i++)
                if (cs->c[i])
                        redisFree(cs->c[i]);
        free(cs);
}

static void die(const char *what)
{
        fprintf(stderr, "scheduler bench: %s\n", what);
        exit(1);
}

static int pool_index(const char *pool)
{
        return atoi(pool + strlen("pool-"));
}

static void run_slot(const struct sched_slot_run *run, void *userdata)
{
        int p = pool_index(run->task->pool);
        int inst = atoi(run->task->instance_id + strlen("redis-"));
        int r = inst % n_ports;
        bool was_busy;
        (void)userdata;

        pthread_mutex_lock(&lock);
        was_busy = pool_busy[p];
        pool_busy[p] = true;
        pthread_mutex_unlock(&lock);

        struct conns *cs = pthread_getspecific(conns_key);
        if (!cs) {
                cs = calloc(1, sizeof(*cs));
                if (!cs || pthread_setspecific(conns_key, cs) != 0)
                        die("out of memory");
        }
        redisContext **conn = cs->c;
        if (!conn[r]) {
                struct timeval tv = {2, 0};
                conn[r] = redisConnectWithTimeout("127.0.0.1", ports[r], tv);
                if (!conn[r] || conn[r]->err)
                        die("cannot connect to redis-server");
                redisSetTimeout(conn[r], tv);
        }
        int64_t sent = clock_wall_us();
        /* SCHEDULE: a save already running on the shared server is not an error. */
        redisReply *rep = redisCommand(conn[r], "BGSAVE SCHEDULE");
        if (!rep)
                die("no answer from redis-server");
        /* The servers are shared: another instance's save may be running there. */
        bool refused = rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "in progress");
        if (rep->type != REDIS_REPLY_STATUS && !refused)
                die("unexpected BGSAVE reply");
        freeReplyObject(rep);

        pthread_mutex_lock(&lock);
        if (refused)
                n_refused++;
        if (run->catch_up)
                n_catch_up++;
        else if (was_busy)
                n_busy++;
        else if (n_samples < MAX_SAMPLES) {
                take_ms[n_samples] = run->started_us - run->slot_us;
                sent_ms[n_samples] = sent - run->slot_us;
                n_samples++;
        }
        pool_busy[p] = false;
        pthread_mutex_unlock(&lock);
}

static int recorded_slots(int64_t from_us, int64_t to_us, struct sched_slot_key **ret,
                          size_t *ret_n, void *userdata)
{
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

static int record_missed(const struct sched_task *task, int64_t slot_us, const char *reason,
                         uint64_t generation, void *userdata)
{
        return 0;
}

static int limit_of(const char *pool, void *userdata)
{
        return 1;
}

static long status_kib(const char *key)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        long v = -1;
        size_t n = strlen(key);
        while (f && fgets(line, sizeof(line), f))
                if (strncmp(line, key, n) == 0)
                        v = atol(line + n + 1);
        if (f)
                fclose(f);
        return v;
}

static int cmp64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

static double pct_ms(int64_t *v, size_t n, double p)
{
        if (n == 0)
                return 0;
        qsort(v, n, sizeof(*v), cmp64);
        size_t i = (size_t)(p * (double)(n - 1) + 0.5);
        return (double)v[i] / 1e3;
}

int main(int argc, char *argv[])
{
        const char *e = getenv("BENCH_SECONDS");
        int run_s = e ? atoi(e) : 30;

        for (int i = 1; i < argc && n_ports < MAX_REDIS; i++)
                ports[n_ports++] = (uint16_t)atoi(argv[i]);
        if (n_ports == 0 || run_s <= 0)
                die("usage: scheduler PORT... (BENCH_SECONDS=30)");
        if (pthread_key_create(&conns_key, conns_free) != 0)
                die("pthread_key_create");
        take_ms = calloc(MAX_SAMPLES, sizeof(*take_ms));
        sent_ms = calloc(MAX_SAMPLES, sizeof(*sent_ms));
        if (!take_ms || !sent_ms)
                die("out of memory");

        /* 2 s before the hour: the hour before (almost empty) and this one are loaded. */
        clock_wall_start_at(HOUR_US - 2 * USEC_PER_SEC);
        struct sched_task *tasks = calloc(N_TASKS, sizeof(*tasks));
        if (!tasks)
                die("out of memory");
        for (int t = 0; t < N_TASKS; t++) {
                /* Pool p (= t mod 100) has 1,000 slots an hour, one every 3.6 s. */
                int sec = (int)((int64_t)(t / N_POOLS) * 3600 / (N_TASKS / N_POOLS));
                char cron[64];
                struct cron_error err;
                snprintf(cron, sizeof(cron), "%d %d * * * *", sec % 60, sec / 60);
                tasks[t].id = t + 1;
                snprintf(tasks[t].instance_id, sizeof(tasks[t].instance_id), "redis-%05d",
                         t % N_INSTANCES);
                snprintf(tasks[t].pool, sizeof(tasks[t].pool), "pool-%03d",
                         (t % N_INSTANCES) % N_POOLS);
                if (cron_parse(cron, &tasks[t].schedule, &err) < 0)
                        die("cron_parse");
                tasks[t].run_once = true;
                tasks[t].starting_deadline_s = 600;
                tasks[t].created_us = HOUR_US - 2 * USEC_PER_SEC; /* nothing to catch up */
        }

        struct sched_pools *pools = sched_pools_new(limit_of, NULL, 60 * USEC_PER_SEC);
        const struct sched_ops ops = {.run_slot = run_slot,
                                      .recorded_slots = recorded_slots,
                                      .record_missed = record_missed,
                                      .pool_limit = limit_of};
        const struct sched_options so = {.preload_minute = 40,
                                         .max_plan_delay_us = 900 * USEC_PER_SEC};
        if (!pools)
                die("out of memory");
        struct scheduler *s = sched_new(&so, NULL, pools, &ops);
        if (!s || sched_set_tasks(s, tasks, N_TASKS) < 0 || sched_start(s) < 0)
                die("sched_new");
        free(tasks);

        sched_pools_set_generation(pools, 1);
        int64_t t0 = clock_mono_us(), loaded_us = -1;
        sched_start_leading(s, 1);
        while (loaded_us < 0) {
                struct sched_hour_info h[2];
                size_t n = sched_loaded_hours(s, h);
                for (size_t i = 0; i < n; i++)
                        if (h[i].hour_us == HOUR_US && h[i].slots > 0)
                                loaded_us = clock_mono_us() - t0;
                if (clock_mono_us() - t0 > 60 * USEC_PER_SEC)
                        die("the hour was not loaded within 60 s");
                clock_sleep_us(1000);
        }
        long rss_loaded = status_kib("VmRSS");
        clock_sleep_us((int64_t)run_s * USEC_PER_SEC);
        long rss_peak = status_kib("VmHWM");

        sched_stop_leading(s);
        sched_stop(s);
        sched_pools_free(pools);
        sched_free(s);

        pthread_mutex_lock(&lock);
        size_t n = n_samples;
        pthread_mutex_unlock(&lock);
        printf("tasks: %d\n", N_TASKS);
        printf("instances: %d\n", N_INSTANCES);
        printf("redis_servers: %d\n", n_ports);
        printf("hour_load: %.1f ms\n", (double)loaded_us / 1e3);
        printf("rss_after_load: %.1f MiB\n", (double)rss_loaded / 1024);
        printf("rss_peak: %.1f MiB\n", (double)rss_peak / 1024);
        printf("slots_run_pool_free: %zu\n", n);
        printf("slots_pool_busy: %zu\n", n_busy);
        printf("slots_catch_up: %zu\n", n_catch_up);
        printf("bgsave_refused_save_in_progress: %zu\n", n_refused);
        printf("lateness_taken_p50: %.2f ms\n", pct_ms(take_ms, n, 0.50));
        printf("lateness_taken_p99: %.2f ms\n", pct_ms(take_ms, n, 0.99));
        printf("lateness_bgsave_sent_p50: %.2f ms\n", pct_ms(sent_ms, n, 0.50));
        printf("lateness_bgsave_sent_p99: %.2f ms\n", pct_ms(sent_ms, n, 0.99));
        free(take_ms);
        free(sent_ms);
        return 0;
}
