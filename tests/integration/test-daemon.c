/* SPDX-License-Identifier: Apache-2.0 */
/*
 * persistd run end to end: three real persistd processes with short election timings,
 * PostgreSQL, Redis instances in two pools and kube-test-server. Exactly one leads and its pod
 * carries the leader label; a follower answers a mutation with 503 and the leader's identity;
 * SIGKILL of the leader hands over within lease + retry with the labels moved; SIGTERM hands
 * over at once through the release; the probes and /metrics answer.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "core/clock.h"
#include "harness.h"

#define N_REPLICAS 3
#define LEASE_S    2
#define RETRY_S    0.4
#define TOKEN      "test-token-0123456789"
#define LABEL      "persistd.io/leader"

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
        va_list ap;
        char *s;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                abort();
        va_end(ap);
        return s;
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                th_die("cannot write %s", path);
}

static char *slurp(const char *path)
{
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t len = 0, n;
        char chunk[65536];

        if (!f)
                return strdup("");
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
                buf = realloc(buf, len + n + 1);
                memcpy(buf + len, chunk, n);
                len += n;
        }
        fclose(f);
        if (!buf)
                return strdup("");
        buf[len] = '\0';
        return buf;
}

/* ---- HTTP to the replicas ------------------------------------------------------------------ */

struct buf {
        char *data;
        size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
        struct buf *b = userdata;
        b->data = realloc(b->data, b->len + size * n + 1);
        memcpy(b->data + b->len, p, size * n);
        b->len += size * n;
        b->data[b->len] = '\0';
        return size * n;
}

/* Returns the HTTP status (0: no answer); the body in *out (caller frees; may be NULL). */
static long http(uint16_t port, const char *method, const char *path, const char *body, char **out)
{
        CURL *c = curl_easy_init();
        struct curl_slist *h = NULL;
        struct buf b = {0};
        long status = 0;
        char *url = xasprintf("http://127.0.0.1:%u%s", (unsigned)port, path);

        h = curl_slist_append(h, "Authorization: Bearer " TOKEN);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (curl_easy_perform(c) == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        free(url);
        if (out)
                *out = b.data ? b.data : strdup("");
        else
                free(b.data);
        return status;
}

/* ---- the cluster --------------------------------------------------------------------------- */

struct replica {
        pid_t pid;
        uint16_t port;
        char pod[32];
        char *config_path;
        char *log_path;
};

struct cluster {
        struct th_kube kube;
        char *dir;
        char *db;
        char *dsn;
        struct th_redis progress;
        struct th_redis redis[3];
        struct replica r[N_REPLICAS];
        PGconn *sql;
};

static void replica_spawn(struct cluster *cl, int i)
{
        struct replica *r = &cl->r[i];
        char *env_pod = xasprintf("POD_NAME=%s", r->pod);
        char *argv[] = {(char *)th_persistd_path(), (char *)"run", (char *)"-c", r->config_path,
                        NULL};
        char *env[] = {env_pod, NULL};

        r->pid = th_spawn(argv, env, r->log_path);
        free(env_pod);
}

static void cluster_start(struct cluster *cl, const char *kubeconfig_override)
{
        memset(cl, 0, sizeof(*cl));
        th_kube_start(&cl->kube, NULL);
        cl->dir = th_tmpdir("daemon");
        cl->db = th_pg_create_db("daemon");
        cl->dsn = th_pg_dsn(cl->db);
        cl->sql = th_pg_connect(cl->db);
        th_redis_start(&cl->progress, NULL);
        for (int i = 0; i < 3; i++)
                th_redis_start(&cl->redis[i], NULL);

        char *token_file = xasprintf("%s/token", cl->dir);
        write_file(token_file, TOKEN "\n");
        for (int i = 0; i < N_REPLICAS; i++) {
                struct replica *r = &cl->r[i];
                snprintf(r->pod, sizeof(r->pod), "persistd-%d", i);
                th_kube_create_pod(&cl->kube, r->pod, "{\"app\":\"persistd\"}");
                r->port = th_free_port();
                r->config_path = xasprintf("%s/persistd-%d.yaml", cl->dir, i);
                r->log_path = xasprintf("%s/persistd-%d.log", cl->dir, i);
                char *yaml = xasprintf(
                    "kubernetes:\n  kubeconfig: \"%s\"\n  request_timeout_ms: 1000\n"
                    "election:\n  lease_duration_s: %d\n  renew_deadline_s: 1.5\n"
                    "  retry_period_s: %g\n  shutdown_grace_s: 2\n"
                    "postgres:\n  dsn: \"%s\"\n  resync_interval_s: 5\n"
                    "progress:\n  address: \"127.0.0.1:%u\"\n"
                    "pools:\n  default_limit: 1\n"
                    "nightly:\n  enabled: false\n"
                    "driver:\n  min_timeout_s: 10\n"
                    "http:\n  listen: \"127.0.0.1:%u\"\n  token_file: \"%s\"\n"
                    "log:\n  level: debug\n  format: text\n",
                    kubeconfig_override ? kubeconfig_override : cl->kube.admin_kubeconfig, LEASE_S,
                    RETRY_S, cl->dsn, (unsigned)cl->progress.port, (unsigned)r->port, token_file);
                write_file(r->config_path, yaml);
                free(yaml);
        }
        free(token_file);
}

static void cluster_stop(struct cluster *cl)
{
        for (int i = 0; i < N_REPLICAS; i++) {
                if (cl->r[i].pid > 0)
                        th_stop(cl->r[i].pid, SIGTERM, 10000);
                free(cl->r[i].config_path);
                free(cl->r[i].log_path);
        }
        for (int i = 0; i < 3; i++)
                th_redis_stop(&cl->redis[i]);
        th_redis_stop(&cl->progress);
        PQfinish(cl->sql);
        free(cl->dsn);
        free(cl->db);
        free(cl->dir);
        th_kube_stop(&cl->kube);
}

static void dump_logs(const struct cluster *cl)
{
        for (int i = 0; i < N_REPLICAS; i++) {
                char *log = slurp(cl->r[i].log_path);
                size_t n = strlen(log);
                fprintf(stderr, "---- %s (last 4000 bytes) ----\n%s\n", cl->r[i].pod,
                        n > 4000 ? log + n - 4000 : log);
                free(log);
        }
}

/* The Lease's holder ("" when none or no Lease); caller frees. */
static char *lease_holder(const struct cluster *cl)
{
        char *body = NULL;
        char *path = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases/persistd-leader",
                               cl->kube.namespace);
        long st = th_kube_request(&cl->kube, cl->kube.admin_token, "GET", path, NULL, NULL, &body);
        free(path);
        char *holder = strdup("");
        if (st == 200) {
                cJSON *o = cJSON_Parse(body);
                cJSON *h = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "spec"), "holderIdentity");
                if (cJSON_IsString(h)) {
                        free(holder);
                        holder = strdup(h->valuestring);
                }
                cJSON_Delete(o);
        }
        free(body);
        return holder;
}

/* The replica whose pod the holder names, -1 when none. */
static int holder_index(const struct cluster *cl, const char *holder)
{
        for (int i = 0; i < N_REPLICAS; i++) {
                size_t n = strlen(cl->r[i].pod);
                if (strncmp(holder, cl->r[i].pod, n) == 0 && holder[n] == '_')
                        return i;
        }
        return -1;
}

static bool pod_labelled(const struct cluster *cl, const char *pod)
{
        char *body = NULL;
        char *path = xasprintf("/api/v1/namespaces/%s/pods/%s", cl->kube.namespace, pod);
        long st = th_kube_request(&cl->kube, cl->kube.admin_token, "GET", path, NULL, NULL, &body);
        free(path);
        bool yes = false;
        if (st == 200) {
                cJSON *o = cJSON_Parse(body);
                cJSON *l = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "metadata"), "labels");
                cJSON *v = cJSON_GetObjectItem(l, LABEL);
                yes = cJSON_IsString(v) && strcmp(v->valuestring, "true") == 0;
                cJSON_Delete(o);
        }
        free(body);
        return yes;
}

/* Whether replica i says it leads (GET /v1/status). */
static bool says_leader(const struct cluster *cl, int i)
{
        char *body = NULL;
        bool yes = false;
        if (http(cl->r[i].port, "GET", "/v1/status", NULL, &body) == 200) {
                cJSON *o = cJSON_Parse(body);
                yes = cJSON_IsTrue(cJSON_GetObjectItem(o, "is_leader"));
                cJSON_Delete(o);
        }
        free(body);
        return yes;
}

/*
 * Wait up to `timeout_us` for a leader other than `not` that holds the Lease, says so itself,
 * and whose pod alone carries the label. Returns its index.
 */
static int wait_settled_leader(struct cluster *cl, int not, int64_t timeout_us,
                               int64_t *ret_lease_us)
{
        int64_t t0 = clock_mono_us(), deadline = t0 + timeout_us;
        int64_t lease_at = 0;
        for (;;) {
                char *holder = lease_holder(cl);
                int l = holder_index(cl, holder);
                free(holder);
                if (l >= 0 && l != not &&cl->r[l].pid > 0) {
                        if (!lease_at)
                                lease_at = clock_mono_us();
                        bool ok = says_leader(cl, l) && pod_labelled(cl, cl->r[l].pod);
                        for (int i = 0; ok && i < N_REPLICAS; i++)
                                if (i != l && pod_labelled(cl, cl->r[i].pod))
                                        ok = false;
                        if (ok) {
                                if (ret_lease_us)
                                        *ret_lease_us = lease_at - t0;
                                return l;
                        }
                }
                if (clock_mono_us() > deadline) {
                        dump_logs(cl);
                        fail_msg("no settled leader within %.1f s", (double)timeout_us / 1e6);
                }
                clock_sleep_us(20 * 1000);
        }
}

static int count_leaders(const struct cluster *cl)
{
        int n = 0;
        for (int i = 0; i < N_REPLICAS; i++)
                if (cl->r[i].pid > 0 && says_leader(cl, i))
                        n++;
        return n;
}

static void test_failover_labels_and_probes(void **state)
{
        struct cluster cl;
        char *body = NULL;
        (void)state;

        cluster_start(&cl, NULL);
        for (int i = 0; i < N_REPLICAS; i++)
                replica_spawn(&cl, i);
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);
        clock_sleep_us(1500 * 1000); /* a few renewals */
        assert_int_equal(count_leaders(&cl), 1);
        assert_true(says_leader(&cl, l));

        /* Probes and metrics on every replica, leader or not. */
        for (int i = 0; i < N_REPLICAS; i++) {
                assert_int_equal(http(cl.r[i].port, "GET", "/healthz", NULL, NULL), 200);
                assert_int_equal(http(cl.r[i].port, "GET", "/readyz", NULL, NULL), 200);
                assert_int_equal(http(cl.r[i].port, "GET", "/metrics", NULL, &body), 200);
                assert_non_null(
                    strstr(body, i == l ? "persistd_is_leader 1" : "persistd_is_leader 0"));
                free(body);
        }

        /* A follower refuses a mutation and names the leader. */
        int f = (l + 1) % N_REPLICAS;
        char *holder = lease_holder(&cl);
        long st =
            http(cl.r[f].port, "POST", "/v1/tasks",
                 "{\"instance_id\":\"redis-a\",\"action\":\"bgsave\",\"schedule\":\"* * * * *\"}",
                 &body);
        assert_int_equal(st, 503);
        assert_non_null(strstr(body, holder));
        free(body);
        free(holder);

        /* SIGKILL: another replica leads within lease + retry (plus the polling slack), with the
         * label moved off the dead leader's pod. */
        kill(cl.r[l].pid, SIGKILL);
        th_wait_exit(cl.r[l].pid, 5000, NULL);
        cl.r[l].pid = -1;
        int64_t lease_us = 0;
        int l2 =
            wait_settled_leader(&cl, l, (int64_t)(LEASE_S + RETRY_S + 6) * USEC_PER_SEC, &lease_us);
        printf("crash failover: new holder after %.0f ms\n", (double)lease_us / 1e3);
        assert_true(lease_us < (int64_t)((LEASE_S + 3 * RETRY_S) * 1e6) + 1500 * 1000);
        assert_false(pod_labelled(&cl, cl.r[l].pod));

        /* Restart the killed one: it joins as a follower (a new process never leads at start). */
        replica_spawn(&cl, l);
        clock_sleep_us(1000 * 1000);
        assert_false(says_leader(&cl, l));

        /* SIGTERM: the release hands over through the watch, long before the lease would expire. */
        int64_t t0 = clock_mono_us();
        kill(cl.r[l2].pid, SIGTERM);
        int l3 = wait_settled_leader(&cl, l2, 10 * USEC_PER_SEC, &lease_us);
        printf("graceful hand-over: new holder after %.0f ms\n", (double)lease_us / 1e3);
        assert_true(lease_us < LEASE_S * USEC_PER_SEC);
        int status = 0;
        assert_true(th_wait_exit(cl.r[l2].pid, 10000, &status));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        cl.r[l2].pid = -1;
        (void)t0;
        assert_int_equal(count_leaders(&cl), 1);
        assert_true(says_leader(&cl, l3));

        /* No secret in any log. */
        for (int i = 0; i < N_REPLICAS; i++) {
                char *log = slurp(cl.r[i].log_path);
                assert_null(strstr(log, TOKEN));
                assert_null(strstr(log, cl.kube.admin_token));
                free(log);
        }
        cluster_stop(&cl);
}

static long long sql_count(struct cluster *cl, const char *sql)
{
        char *v = th_pg_value(cl->sql, sql);
        long long n = v ? atoll(v) : -1;
        free(v);
        return n;
}

/* Wait up to `timeout_us` until `sql` (a count) reaches `min`. */
static long long wait_count(struct cluster *cl, const char *sql, long long min, int64_t timeout_us)
{
        int64_t deadline = clock_mono_us() + timeout_us;
        long long n;
        while ((n = sql_count(cl, sql)) < min) {
                if (clock_mono_us() > deadline) {
                        dump_logs(cl);
                        fail_msg("\"%s\" stayed at %lld (< %lld)", sql, n, min);
                }
                clock_sleep_us(100 * 1000);
        }
        return n;
}

static void test_schedule_persist_and_tasks_api(void **state)
{
        struct cluster cl;
        char *body = NULL, *sql = NULL;
        (void)state;

        cluster_start(&cl, NULL);
        for (int i = 0; i < N_REPLICAS; i++)
                replica_spawn(&cl, i);
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);

        /* Platform teams define instances and tasks in SQL: three instances in two pools. */
        sql = xasprintf("INSERT INTO instances (id, host, port, pool) VALUES "
                        "('redis-a', '127.0.0.1', %u, 'ssd'), ('redis-b', '127.0.0.1', %u, 'ssd'), "
                        "('redis-c', '127.0.0.1', %u, 'hdd')",
                        (unsigned)cl.redis[0].port, (unsigned)cl.redis[1].port,
                        (unsigned)cl.redis[2].port);
        th_pg_exec(cl.sql, sql);
        free(sql);
        th_pg_exec(cl.sql, "INSERT INTO tasks (instance_id, action, schedule) VALUES "
                           "('redis-a', 'bgsave', '*/2 * * * * *')");
        /* Within 5 s the leader has it, and a seconds-cron slot runs and succeeds. */
        wait_count(&cl,
                   "SELECT count(*) FROM runs WHERE kind = 'scheduled' AND state = 'succeeded'", 1,
                   20 * USEC_PER_SEC);
        char *holder = lease_holder(&cl);
        sql = xasprintf("SELECT count(*) FROM runs WHERE state = 'succeeded' AND "
                        "leader_identity = '%s'",
                        holder);
        assert_true(sql_count(&cl, sql) >= 1);
        free(sql);

        /* persistctl persist --wait through the leader's port: exit 0, and a save happened. */
        redisContext *rc = th_redis_connect(&cl.redis[2]);
        long long saves0 = th_redis_info_int(rc, "rdb_saves");
        char *server = xasprintf("http://127.0.0.1:%u", (unsigned)cl.r[l].port);
        char *token_file = xasprintf("%s/token", cl.dir);
        char *ctl_log = xasprintf("%s/persistctl.log", cl.dir);
        char *argv[] = {(char *)th_persistctl_path(),
                        (char *)"--server",
                        server,
                        (char *)"--token-file",
                        token_file,
                        (char *)"persist",
                        (char *)"redis-c",
                        (char *)"--wait",
                        NULL};
        pid_t pid = th_spawn(argv, NULL, ctl_log);
        int status = 0;
        assert_true(th_wait_exit(pid, 30000, &status));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                char *log = slurp(ctl_log);
                fprintf(stderr, "persistctl: %s\n", log);
                free(log);
                dump_logs(&cl);
        }
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_true(th_redis_info_int(rc, "rdb_saves") > saves0);
        redisFree(rc);
        free(ctl_log);
        free(token_file);
        free(server);

        /* Tasks through the API: cron checked on "schedule", unknown instance on "instance_id". */
        assert_int_equal(http(cl.r[l].port, "POST", "/v1/tasks",
                              "{\"instance_id\":\"redis-b\",\"action\":\"bgsave\","
                              "\"schedule\":\"61 * * * *\"}",
                              &body),
                         400);
        assert_non_null(strstr(body, "\"schedule\""));
        free(body);
        assert_int_equal(http(cl.r[l].port, "POST", "/v1/tasks",
                              "{\"instance_id\":\"redis-nope\",\"action\":\"bgsave\","
                              "\"schedule\":\"0 * * * *\"}",
                              &body),
                         400);
        assert_non_null(strstr(body, "\"instance_id\""));
        free(body);
        assert_int_equal(http(cl.r[l].port, "POST", "/v1/tasks",
                              "{\"instance_id\":\"redis-b\",\"action\":\"bgsave\","
                              "\"schedule\":\"*/3 * * * * *\"}",
                              &body),
                         201);
        cJSON *o = cJSON_Parse(body);
        cJSON *id = cJSON_GetObjectItem(o, "id");
        assert_true(cJSON_IsString(id));
        char *path = xasprintf("/v1/tasks/%s", id->valuestring);
        free(body);
        assert_int_equal(http(cl.r[l].port, "GET", path, NULL, &body), 200);
        assert_non_null(strstr(body, "redis-b"));
        free(body);
        sql = xasprintf("SELECT count(*) FROM runs WHERE task_id = %s AND state = 'succeeded'",
                        id->valuestring);
        wait_count(&cl, sql, 1, 15 * USEC_PER_SEC);
        free(sql);
        long del = http(cl.r[l].port, "DELETE", path, NULL, NULL);
        assert_true(del == 200 || del == 204);
        assert_int_equal(http(cl.r[l].port, "GET", path, NULL, NULL), 404);
        free(path);
        cJSON_Delete(o);

        /* SIGKILL the leader: the next one goes on with the slots, none runs twice. */
        kill(cl.r[l].pid, SIGKILL);
        th_wait_exit(cl.r[l].pid, 5000, NULL);
        cl.r[l].pid = -1;
        int l2 = wait_settled_leader(&cl, l, (int64_t)(LEASE_S + RETRY_S + 6) * USEC_PER_SEC, NULL);
        free(holder);
        holder = lease_holder(&cl);
        assert_int_equal(holder_index(&cl, holder), l2);
        sql =
            xasprintf("SELECT count(*) FROM runs WHERE kind = 'scheduled' AND state = 'succeeded' "
                      "AND leader_identity = '%s'",
                      holder);
        wait_count(&cl, sql, 1, 20 * USEC_PER_SEC);
        free(sql);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM (SELECT task_id, scheduled_for FROM "
                                        "runs WHERE kind = 'scheduled' GROUP BY 1, 2 "
                                        "HAVING count(*) > 1) d"),
                         0);
        /* The epoch moved on with the leader. */
        assert_true(sql_count(&cl, "SELECT epoch FROM leader_epoch") >= 2);
        free(holder);
        cluster_stop(&cl);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_failover_labels_and_probes),
            cmocka_unit_test(test_schedule_persist_and_tasks_api),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}
