/* SPDX-License-Identifier: Apache-2.0 */
/* The end-to-end tests' persistd cluster (test-daemon-cluster.h). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "core/clock.h"
#include "test-daemon-cluster.h"

char *xasprintf(const char *fmt, ...)
{
        va_list ap;
        char *s;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                abort();
        va_end(ap);
        return s;
}

void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                th_die("cannot write %s", path);
}

char *slurp(const char *path)
{
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t len = 0, n;
        char chunk[65536];

        if (!f)
                return strdup("");
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
                char *grown = realloc(buf, len + n + 1);
                if (!grown)
                        th_die("out of memory reading %s", path);
                buf = grown;
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
long http(uint16_t port, const char *method, const char *path, const char *body, char **out)
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

void replica_spawn(struct cluster *cl, int i)
{
        struct replica *r = &cl->r[i];
        char *env_pod = xasprintf("POD_NAME=%s", r->pod);
        char *argv[] = {(char *)th_persistd_path(), (char *)"run", (char *)"-c", r->config_path,
                        NULL};
        char *env[] = {env_pod, NULL};

        r->pid = th_spawn(argv, env, r->log_path);
        free(env_pod);
}

void cluster_start(struct cluster *cl, const struct th_kube_options *o, bool as_user)
{
        memset(cl, 0, sizeof(*cl));
        th_kube_start(&cl->kube, o);
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
                    as_user ? cl->kube.user_kubeconfig : cl->kube.admin_kubeconfig, LEASE_S,
                    RETRY_S, cl->dsn, (unsigned)cl->progress.port, (unsigned)r->port, token_file);
                write_file(r->config_path, yaml);
                free(yaml);
        }
        free(token_file);
}

void cluster_stop(struct cluster *cl)
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

void dump_logs(const struct cluster *cl)
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
char *lease_holder(const struct cluster *cl)
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
int holder_index(const struct cluster *cl, const char *holder)
{
        for (int i = 0; i < N_REPLICAS; i++) {
                size_t n = strlen(cl->r[i].pod);
                if (strncmp(holder, cl->r[i].pod, n) == 0 && holder[n] == '_')
                        return i;
        }
        return -1;
}

bool pod_labelled(const struct cluster *cl, const char *pod)
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
bool says_leader(const struct cluster *cl, int i)
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
int wait_settled_leader(struct cluster *cl, int not, int64_t timeout_us, int64_t *ret_lease_us)
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

int count_leaders(const struct cluster *cl)
{
        int n = 0;
        for (int i = 0; i < N_REPLICAS; i++)
                if (cl->r[i].pid > 0 && says_leader(cl, i))
                        n++;
        return n;
}

long long sql_count(struct cluster *cl, const char *sql)
{
        char *v = th_pg_value(cl->sql, sql);
        long long n = v ? atoll(v) : -1;
        free(v);
        return n;
}

/* Wait up to `timeout_us` until `sql` (a count) reaches `min`. */
long long wait_count(struct cluster *cl, const char *sql, long long min, int64_t timeout_us)
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