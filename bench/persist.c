/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark: persist-now (SPEC 7, 15) against one real `persistd run` leader (kube-test-server,
 * a PostgreSQL database from pg_virtualenv, a progress Redis, three redis-server instances in
 * one pool of limit 1):
 *  - latency from POST /v1/instances/{id}/persist to the save running in Redis while the pool
 *    is free (a thread polling INFO persistence sees rdb_bgsave_in_progress:1; each save is
 *    slowed to about 100 ms), and to the answer with "wait":true;
 *  - how many BGSAVEs 100 concurrent requests for one instance cause, with the pool free and
 *    with the pool busy (another instance's slow save holds the only place).
 * Run by bench/persist; prints `metric: value unit` lines.
 *
 * usage: persist  (environment: PERSISTD_BIN, KUBE_TEST_SERVER_BIN, PERSIST_ROUNDS (50))
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "core/clock.h"
#include "harness.h"

#define TOKEN        "bench-token-0123456789abcdef"
#define N_INSTANCES  3
#define N_CONCURRENT 100

static struct th_kube kube;
static bool kube_up;
static struct th_redis progress, redis[N_INSTANCES];
static pid_t pid;
static uint16_t port;
static char *log_path;

static void show_log(void)
{
        if (log_path) {
                char buf[3000];
                FILE *f = fopen(log_path, "re");
                if (f) {
                        if (fseek(f, -(long)sizeof(buf) + 1, SEEK_END) < 0)
                                rewind(f);
                        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
                        buf[n] = '\0';
                        fclose(f);
                        fprintf(stderr, "---- persistd (the end of its log) ----\n%s\n", buf);
                }
        }
}

/* Stop everything started (atexit: th_die's exit too). */
static void cleanup(void)
{
        if (pid > 0) {
                th_stop(pid, SIGTERM, 10000);
                pid = 0;
        }
        for (int i = 0; i < N_INSTANCES; i++)
                th_redis_stop(&redis[i]);
        th_redis_stop(&progress);
        if (kube_up) {
                kube_up = false;
                th_kube_stop(&kube);
        }
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                th_die("cannot write %s", path);
}

struct buf {
        char *data;
        size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
        struct buf *b = userdata;
        b->data = realloc(b->data, b->len + size * n + 1);
        if (!b->data)
                abort();
        memcpy(b->data + b->len, p, size * n);
        b->len += size * n;
        b->data[b->len] = '\0';
        return size * n;
}

/* One request to persistd; the status, the body in *out (caller frees; may be NULL). */
static long http(const char *method, const char *path, const char *body, char **out)
{
        CURL *c = curl_easy_init();
        struct curl_slist *h = NULL;
        struct buf b = {0};
        long status = 0;
        char url[256];

        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port, path);
        h = curl_slist_append(h, "Authorization: Bearer " TOKEN);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (curl_easy_perform(c) == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        if (out)
                *out = b.data ? b.data : strdup("");
        else
                free(b.data);
        return status;
}

static long long info(int i, const char *field)
{
        redisContext *c = th_redis_connect(&redis[i]);
        long long v = th_redis_info_int(c, field);
        redisFree(c);
        return v;
}

static void wait_info(int i, const char *field, long long want)
{
        int64_t deadline = clock_mono_us() + 60 * USEC_PER_SEC;
        while (info(i, field) != want) {
                if (clock_mono_us() > deadline)
                        th_die("%s of instance %d never became %lld", field, i, want);
                clock_sleep_us(2 * 1000);
        }
}

/* Make every save of instance i take about `ms`: 100 keys, each delayed. */
static void slow_saves(int i, int ms)
{
        redisContext *c = th_redis_connect(&redis[i]);
        for (int k = 0; k < 100; k++)
                freeReplyObject(redisCommand(c, "SET key:%d value", k));
        freeReplyObject(redisCommand(c, "CONFIG SET rdb-key-save-delay %d", ms * 10));
        redisFree(c);
}

/* ---- when the BGSAVE reaches instance 0 ----------------------------------------------------- */

/*
 * MONITOR does not show administrative commands such as BGSAVE, so a thread polls INFO
 * persistence on its own connection: the first rdb_bgsave_in_progress:1 after a reset is when
 * the save had started (the saves are slowed so that none is missed between two polls).
 */
static atomic_llong bgsave_seen_us; /* mono time of the first sample with a save, 0: reset */
static atomic_bool polling = true;

static void *poll_thread(void *userdata)
{
        redisContext *c = th_redis_connect(&redis[0]);
        (void)userdata;
        while (atomic_load(&polling)) {
                redisReply *r = redisCommand(c, "INFO persistence");
                if (!r)
                        break;
                if (r->type == REDIS_REPLY_STRING) {
                        if (strstr(r->str, "rdb_bgsave_in_progress:1") &&
                            atomic_load(&bgsave_seen_us) == 0)
                                atomic_store(&bgsave_seen_us, clock_mono_us());
                }
                freeReplyObject(r);
        }
        redisFree(c);
        return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

static double pct(int64_t *v, int n, double p)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_i64);
        int i = (int)(p * (n - 1) + 0.5);
        return (double)v[i] / 1e3;
}

static void *persist_thread(void *userdata)
{
        long *status = userdata;
        *status = http("POST", "/v1/instances/redis-0/persist", "{\"wait\":true,\"timeout_s\":120}",
                       NULL);
        return NULL;
}

/* 100 concurrent waiting requests for redis-0; the number of BGSAVEs they caused. */
static long long burst(void)
{
        pthread_t t[N_CONCURRENT];
        long st[N_CONCURRENT];
        long long s0 = info(0, "rdb_saves");
        for (int i = 0; i < N_CONCURRENT; i++)
                if (pthread_create(&t[i], NULL, persist_thread, &st[i]) != 0)
                        th_die("pthread_create failed");
        for (int i = 0; i < N_CONCURRENT; i++) {
                pthread_join(t[i], NULL);
                if (st[i] != 200)
                        th_die("a concurrent persist answered %ld", st[i]);
        }
        return info(0, "rdb_saves") - s0;
}

int main(void)
{
        const char *persistd = getenv("PERSISTD_BIN");
        const char *r = getenv("PERSIST_ROUNDS");
        int rounds = r && atoi(r) > 1 ? atoi(r) : 50;
        char *dir, *db, *dsn, token[512], config[512], logp[512], *yaml = NULL, *sql = NULL;

        if (!persistd || !*persistd)
                th_die("persist: PERSISTD_BIN is not set");
        curl_global_init(CURL_GLOBAL_DEFAULT);
        atexit(cleanup);
        th_kube_start(&kube, NULL);
        kube_up = true;
        dir = th_tmpdir("bench-persist");
        db = th_pg_create_db("bench_persist");
        dsn = th_pg_dsn(db);
        th_redis_start(&progress, NULL);
        for (int i = 0; i < N_INSTANCES; i++)
                th_redis_start(&redis[i], NULL);
        snprintf(token, sizeof(token), "%s/token", dir);
        snprintf(config, sizeof(config), "%s/persistd.yaml", dir);
        snprintf(logp, sizeof(logp), "%s/persistd.log", dir);
        log_path = logp;
        write_file(token, TOKEN "\n");
        port = th_free_port();
        th_kube_create_pod(&kube, "persistd-0", "{\"app\":\"persistd\"}");
        if (asprintf(&yaml,
                     "kubernetes:\n  kubeconfig: \"%s\"\n  request_timeout_ms: 1000\n"
                     "election:\n  lease_duration_s: 4\n  renew_deadline_s: 3\n"
                     "  retry_period_s: 0.5\n"
                     "postgres:\n  dsn: \"%s\"\n"
                     "progress:\n  address: \"127.0.0.1:%u\"\n"
                     "pools:\n  default_limit: 1\n"
                     "nightly:\n  enabled: false\n"
                     "http:\n  listen: \"127.0.0.1:%u\"\n  token_file: \"%s\"\n"
                     "log:\n  level: info\n  format: text\n",
                     kube.admin_kubeconfig, dsn, (unsigned)progress.port, (unsigned)port,
                     token) < 0)
                abort();
        write_file(config, yaml);
        free(yaml);
        char *argv[] = {(char *)persistd, (char *)"run", (char *)"-c", config, NULL};
        char *env[] = {(char *)"POD_NAME=persistd-0", NULL};
        pid = th_spawn(argv, env, logp);

        /* Leading (the schema is there), then the instances, known to the leader. */
        int64_t deadline = clock_mono_us() + 60 * USEC_PER_SEC;
        for (;;) {
                char *body = NULL;
                bool leads = http("GET", "/v1/status", NULL, &body) == 200 &&
                             strstr(body, "\"is_leader\":true");
                free(body);
                if (leads)
                        break;
                if (clock_mono_us() > deadline) {
                        show_log();
                        th_die("persistd did not lead within 60 s");
                }
                clock_sleep_us(50 * 1000);
        }
        PGconn *pg = th_pg_connect(db);
        for (int i = 0; i < N_INSTANCES; i++) {
                if (asprintf(&sql,
                             "INSERT INTO instances (id, host, port, pool) VALUES "
                             "('redis-%d', '127.0.0.1', %u, 'ssd')",
                             i, (unsigned)redis[i].port) < 0)
                        abort();
                th_pg_exec(pg, sql);
                free(sql);
        }
        PQfinish(pg);
        while (http("GET", "/v1/instances/redis-2", NULL, NULL) != 200) {
                if (clock_mono_us() > deadline) {
                        show_log();
                        th_die("persistd never saw the instances");
                }
                clock_sleep_us(50 * 1000);
        }
        printf("replicas: 1 persistd run, pool limit 1, %d instances\n", N_INSTANCES);

        /* Latency with the pool free: request -> BGSAVE at Redis, and -> the waited answer. */
        pthread_t mon;
        slow_saves(0, 100);
        if (pthread_create(&mon, NULL, poll_thread, NULL) != 0)
                th_die("pthread_create failed");
        clock_sleep_us(200 * 1000);
        int64_t *to_bgsave = calloc((size_t)rounds, sizeof(int64_t));
        int64_t *to_answer = calloc((size_t)rounds, sizeof(int64_t));
        for (int i = 0; i < rounds; i++) {
                atomic_store(&bgsave_seen_us, 0);
                int64_t t0 = clock_mono_us();
                char *body = NULL;
                long st = http("POST", "/v1/instances/redis-0/persist",
                               "{\"wait\":true,\"timeout_s\":60}", &body);
                int64_t t1 = clock_mono_us();
                if (st != 200 || !strstr(body, "\"success\":true"))
                        th_die("persist answered %ld: %s", st, body);
                free(body);
                int64_t seen;
                while ((seen = atomic_load(&bgsave_seen_us)) == 0 && clock_mono_us() < t1 + 5e6)
                        clock_sleep_us(1000);
                if (!seen)
                        th_die("no save seen in INFO");
                to_bgsave[i] = seen - t0;
                to_answer[i] = t1 - t0;
                wait_info(0, "rdb_bgsave_in_progress", 0);
        }
        atomic_store(&polling, false);
        pthread_join(mon, NULL);
        printf("persist_latency_p50_ms: %.2f ms\n", pct(to_bgsave, rounds, 0.50));
        printf("persist_latency_p99_ms: %.2f ms\n", pct(to_bgsave, rounds, 0.99));
        printf("persist_wait_answer_p50_ms: %.2f ms\n", pct(to_answer, rounds, 0.50));
        printf("persist_wait_answer_p99_ms: %.2f ms\n", pct(to_answer, rounds, 0.99));
        printf("persist_latency_rounds: %d requests\n", rounds);
        free(to_bgsave);
        free(to_answer);

        /* Coalescing: 100 concurrent requests for one instance, pool free, then pool busy. */
        slow_saves(0, 500);
        printf("bgsave_count_for_100_requests: %lld saves\n", burst());
        slow_saves(1, 3000);
        if (http("POST", "/v1/instances/redis-1/persist", "{}", NULL) != 202)
                th_die("persist of redis-1 refused");
        wait_info(1, "rdb_bgsave_in_progress", 1);
        printf("bgsave_count_for_100_requests_pool_busy: %lld saves\n", burst());
        wait_info(1, "rdb_bgsave_in_progress", 0);

        cleanup();
        free(dsn);
        free(db);
        free(dir);
        curl_global_cleanup();
        return 0;
}
