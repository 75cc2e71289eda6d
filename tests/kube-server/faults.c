/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault injection (latency, injected error answers, dropped connections, partitioned users),
 * request statistics per verb and resource, and the plain-HTTP control endpoint through which
 * tests set faults, compact the history and read the statistics.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ks.h"

#define MAX_PARTITIONS 16
#define MAX_STATS      256

struct error_fault {
        int status;
        int count;       /* next `count` matching requests; with fraction 0 */
        double fraction; /* or this share of them (count then limits, 0: unlimited) */
        int retry_after;
        char prefix[256];
        char method[16];
};

struct drop_fault {
        int count;
        double fraction;
        char prefix[256];
        char method[16];
};

struct partition {
        char user[128];
        bool drop;   /* drop at once instead of hanging first */
        int hang_ms; /* how long a request hangs before its connection is dropped */
};

struct stat_row {
        char key[192]; /* "user\tverb resource" or "\tverb resource" for the total */
        uint64_t count;
};

#define LOG_CAP 4096

struct log_row {
        uint64_t seq;
        char user[64];
        char method[12];
        char path[256];
        char verb[24];
        char res[48];
        int status;
        int64_t start_us, end_us;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_row request_log[LOG_CAP];
static uint64_t log_seq; /* rows 1..log_seq were written; the last LOG_CAP are kept */
static int64_t started_us;
static uint64_t generation;
static int64_t latency_ms;
static char latency_prefix[256];
static struct error_fault err;
static struct drop_fault drop;
static struct partition partitions[MAX_PARTITIONS];
static struct stat_row stats[MAX_STATS];
static size_t n_stats;
static uint64_t total_requests;
static unsigned int seed = 12345;

static bool matches(const char *prefix, const char *m, const char *method, const char *path)
{
        return strncmp(path, prefix, strlen(prefix)) == 0 && (!*m || strcasecmp(m, method) == 0);
}

static void count(const char *user, const char *verb, const char *res)
{
        char key[192];

        for (int pass = 0; pass < 2; pass++) {
                snprintf(key, sizeof(key), "%s\t%s %s", pass ? user : "", verb, res);
                size_t i;
                for (i = 0; i < n_stats; i++)
                        if (streq(stats[i].key, key))
                                break;
                if (i == n_stats) {
                        if (n_stats == MAX_STATS)
                                continue;
                        snprintf(stats[n_stats].key, sizeof(stats[0].key), "%s", key);
                        stats[n_stats++].count = 0;
                }
                stats[i].count++;
        }
        total_requests++;
}

static struct partition *find_partition(const char *user)
{
        for (size_t i = 0; i < MAX_PARTITIONS; i++)
                if (partitions[i].user[0] && streq(partitions[i].user, user))
                        return &partitions[i];
        return NULL;
}

bool ks_faults_partitioned(const char *user)
{
        pthread_mutex_lock(&lock);
        bool p = find_partition(user) != NULL;
        pthread_mutex_unlock(&lock);
        return p;
}

/* Whether this matching request gets the fault: count 0 with a fraction means no limit; a
 * count used up with a fraction is -1. */
static bool take(int *n, double fraction)
{
        if (fraction > 0) {
                if (*n < 0 || (double)rand_r(&seed) / RAND_MAX >= fraction)
                        return false;
                if (*n > 0 && --*n == 0)
                        *n = -1;
                return true;
        }
        if (*n > 0) {
                --*n;
                return true;
        }
        return false;
}

void ks_faults_on_request(const char *user, const char *method, const char *path, const char *verb,
                          const char *res, struct ks_fault_decision *d)
{
        int64_t delay;
        struct partition *p;

        *d = (struct ks_fault_decision){KS_FAULT_NONE, 0, 0};
        pthread_mutex_lock(&lock);
        count(user, verb, res);
        delay = matches(latency_prefix, "", method, path) ? latency_ms : 0;
        p = find_partition(user);
        bool part_drop = p && p->drop;
        int hang_ms = p ? p->hang_ms : 0;
        pthread_mutex_unlock(&lock);

        if (p) {
                /* A partitioned replica's packets go nowhere: hang, then lose the connection. */
                int64_t until = ks_now_us() + (int64_t)hang_ms * 1000;
                while (!part_drop && !ks_stopping() && ks_now_us() < until &&
                       ks_faults_partitioned(user))
                        ks_sleep_ms(20);
                d->action = KS_FAULT_DROP;
                return;
        }
        if (delay > 0)
                ks_sleep_ms(delay);

        pthread_mutex_lock(&lock);
        if (drop.count != 0 || drop.fraction > 0) {
                if (matches(drop.prefix, drop.method, method, path) &&
                    take(&drop.count, drop.fraction))
                        d->action = KS_FAULT_DROP;
        }
        if (d->action == KS_FAULT_NONE && err.status && (err.count != 0 || err.fraction > 0) &&
            matches(err.prefix, err.method, method, path) && take(&err.count, err.fraction)) {
                d->action = KS_FAULT_ERROR;
                d->status = err.status;
                d->retry_after = err.retry_after;
        }
        pthread_mutex_unlock(&lock);
}

void ks_faults_log_request(const char *user, const char *method, const char *path, const char *verb,
                           const char *res, int status, int64_t start_us, int64_t end_us)
{
        pthread_mutex_lock(&lock);
        struct log_row *row = &request_log[log_seq % LOG_CAP];
        row->seq = ++log_seq;
        snprintf(row->user, sizeof(row->user), "%s", user);
        snprintf(row->method, sizeof(row->method), "%s", method);
        snprintf(row->path, sizeof(row->path), "%s", path);
        snprintf(row->verb, sizeof(row->verb), "%s", verb);
        snprintf(row->res, sizeof(row->res), "%s", res);
        row->status = status;
        row->start_us = start_us;
        row->end_us = end_us;
        pthread_mutex_unlock(&lock);
}

uint64_t ks_faults_generation(void)
{
        pthread_mutex_lock(&lock);
        uint64_t g = generation;
        pthread_mutex_unlock(&lock);
        return g;
}

/* The log rows after `since`, oldest first, as JSON (caller frees). */
static char *log_json(uint64_t since)
{
        cJSON *root = cJSON_CreateObject();
        cJSON *rows = cJSON_AddArrayToObject(root, "requests");

        pthread_mutex_lock(&lock);
        uint64_t first = log_seq > LOG_CAP ? log_seq - LOG_CAP + 1 : 1;
        if (since + 1 > first)
                first = since + 1;
        for (uint64_t seq = first; seq <= log_seq; seq++) {
                const struct log_row *row = &request_log[(seq - 1) % LOG_CAP];
                cJSON *o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "seq", (double)row->seq);
                cJSON_AddNumberToObject(o, "start_ms", (double)(row->start_us - started_us) / 1000);
                cJSON_AddNumberToObject(o, "end_ms", (double)(row->end_us - started_us) / 1000);
                cJSON_AddStringToObject(o, "user", row->user);
                cJSON_AddStringToObject(o, "method", row->method);
                cJSON_AddStringToObject(o, "path", row->path);
                cJSON_AddStringToObject(o, "verb", row->verb);
                cJSON_AddStringToObject(o, "resource", row->res);
                cJSON_AddNumberToObject(o, "status", row->status);
                cJSON_AddItemToArray(rows, o);
        }
        cJSON_AddNumberToObject(root, "last", (double)log_seq);
        pthread_mutex_unlock(&lock);
        char *s = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        return s;
}

/* ---- control endpoint ------------------------------------------------------------------- */

static void copy_str(char *dst, size_t size, const cJSON *obj, const char *key)
{
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
        snprintf(dst, size, "%s", v ? v : "");
}

static int num_or(const cJSON *obj, const char *key, int dflt)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        return cJSON_IsNumber(v) ? (int)v->valuedouble : dflt;
}

static double dbl_or(const cJSON *obj, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void clear_faults(void)
{
        latency_ms = 0;
        latency_prefix[0] = '\0';
        err = (struct error_fault){0};
        drop = (struct drop_fault){0};
        memset(partitions, 0, sizeof(partitions));
}

/* Apply a POST /faults document; returns NULL or an error message (static). */
static const char *apply_faults(const cJSON *doc)
{
        const cJSON *v;

        if (!cJSON_IsObject(doc))
                return "the body must be a JSON object";
        pthread_mutex_lock(&lock);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "clear")))
                clear_faults();
        if ((v = cJSON_GetObjectItemCaseSensitive(doc, "latency_ms"))) {
                latency_ms = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
                copy_str(latency_prefix, sizeof(latency_prefix), doc, "latency_prefix");
        }
        if ((v = cJSON_GetObjectItemCaseSensitive(doc, "error"))) {
                err = (struct error_fault){0};
                if (cJSON_IsObject(v)) {
                        err.status = num_or(v, "status", 500);
                        err.count = num_or(v, "count", 0);
                        err.fraction = dbl_or(v, "fraction");
                        err.retry_after = num_or(v, "retry_after", err.status == 429 ? 1 : 0);
                        copy_str(err.prefix, sizeof(err.prefix), v, "prefix");
                        copy_str(err.method, sizeof(err.method), v, "method");
                        if (err.count == 0 && err.fraction <= 0)
                                err.count = 1;
                }
        }
        if ((v = cJSON_GetObjectItemCaseSensitive(doc, "drop"))) {
                drop = (struct drop_fault){0};
                if (cJSON_IsObject(v)) {
                        drop.count = num_or(v, "count", 0);
                        drop.fraction = dbl_or(v, "fraction");
                        copy_str(drop.prefix, sizeof(drop.prefix), v, "prefix");
                        copy_str(drop.method, sizeof(drop.method), v, "method");
                        if (drop.count == 0 && drop.fraction <= 0)
                                drop.count = 1;
                }
        }
        if ((v = cJSON_GetObjectItemCaseSensitive(doc, "partition"))) {
                char user[128];
                copy_str(user, sizeof(user), v, "user");
                const char *token =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "token"));
                if (!*user && token) {
                        /* the user a token authenticates as (never logged) */
                        char auth[512];
                        snprintf(auth, sizeof(auth), "Bearer %s", token);
                        const struct ks_user *u = ks_auth_user(auth);
                        if (u && u->name)
                                snprintf(user, sizeof(user), "%s", u->name);
                }
                const char *mode =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "mode"));
                struct partition *p = find_partition(user);
                if (!*user) {
                        pthread_mutex_unlock(&lock);
                        return "partition needs a user or a known token";
                }
                if (mode && streq(mode, "off")) {
                        if (p)
                                *p = (struct partition){0};
                } else {
                        for (size_t i = 0; !p && i < MAX_PARTITIONS; i++)
                                if (!partitions[i].user[0])
                                        p = &partitions[i];
                        if (!p) {
                                pthread_mutex_unlock(&lock);
                                return "too many partitions";
                        }
                        snprintf(p->user, sizeof(p->user), "%s", user);
                        p->drop = mode && streq(mode, "drop");
                        p->hang_ms = num_or(v, "hang_ms", 30000);
                }
        }
        pthread_mutex_unlock(&lock);
        ks_store_broadcast(); /* watches of a partitioned user notice at once */
        return NULL;
}

static char *stats_json(void)
{
        cJSON *root = cJSON_CreateObject();
        cJSON *req = cJSON_AddObjectToObject(root, "requests");
        cJSON *users = cJSON_AddObjectToObject(root, "users");

        pthread_mutex_lock(&lock);
        cJSON_AddNumberToObject(root, "total", (double)total_requests);
        for (size_t i = 0; i < n_stats; i++) {
                char *tab = strchr(stats[i].key, '\t');
                if (tab == stats[i].key) {
                        cJSON_AddNumberToObject(req, tab + 1, (double)stats[i].count);
                } else {
                        char user[192];
                        snprintf(user, sizeof(user), "%.*s", (int)(tab - stats[i].key),
                                 stats[i].key);
                        cJSON *u = cJSON_GetObjectItemCaseSensitive(users, user);
                        if (!u)
                                u = cJSON_AddObjectToObject(users, user);
                        cJSON_AddNumberToObject(u, tab + 1, (double)stats[i].count);
                }
        }
        pthread_mutex_unlock(&lock);
        char *s = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        return s;
}

struct upload {
        char *data;
        size_t len;
        bool too_big;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, char *body)
{
        struct MHD_Response *r =
            MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", "application/json");
        enum MHD_Result ret = MHD_queue_response(c, code, r);
        MHD_destroy_response(r);
        return ret;
}

static char *msg(const char *fmt, const char *arg)
{
        char *s;
        if (asprintf(&s, fmt, arg) < 0)
                abort();
        return s;
}

static enum MHD_Result control_handler(void *cls, struct MHD_Connection *c, const char *url,
                                       const char *method, const char *version, const char *data,
                                       size_t *data_size, void **ctx)
{
        struct upload *u = *ctx;

        if (!u) {
                u = calloc(1, sizeof(*u));
                if (!u)
                        return MHD_NO;
                *ctx = u;
                return MHD_YES;
        }
        if (*data_size) {
                if (u->len + *data_size > 65536) {
                        u->too_big = true;
                } else {
                        char *n = realloc(u->data, u->len + *data_size + 1);
                        if (!n)
                                return MHD_NO;
                        memcpy(n + u->len, data, *data_size);
                        u->data = n;
                        u->len += *data_size;
                        u->data[u->len] = '\0';
                }
                *data_size = 0;
                return MHD_YES;
        }
        if (u->too_big)
                return reply(c, 413, msg("{\"error\":\"%s\"}", "body too large"));
        if (streq(url, "/healthz"))
                return reply(c, 200, msg("{\"status\":\"%s\"}", "ok"));
        if (streq(url, "/stats") && streq(method, "GET"))
                return reply(c, 200, stats_json());
        if (streq(url, "/stats/reset") && streq(method, "POST")) {
                pthread_mutex_lock(&lock);
                n_stats = 0;
                total_requests = 0;
                pthread_mutex_unlock(&lock);
                return reply(c, 200, msg("{\"status\":\"%s\"}", "ok"));
        }
        if (streq(url, "/requests") && streq(method, "GET")) {
                const char *since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
                return reply(c, 200, log_json(since ? strtoull(since, NULL, 10) : 0));
        }
        if (streq(url, "/restart") && streq(method, "POST")) {
                /* As a kube-apiserver restart: open watches are cut, the new watch cache
                 * starts now, so older resourceVersions are too old. */
                pthread_mutex_lock(&lock);
                generation++;
                pthread_mutex_unlock(&lock);
                ks_store_lock();
                /* The new cache starts after the last write: even the newest object's own
                 * resourceVersion is too old now (as after a real restart), a LIST's is not. */
                ks_store_next_rv();
                ks_store_compact();
                ks_store_unlock();
                return reply(c, 200, msg("{\"status\":\"%s\"}", "ok"));
        }
        if (streq(url, "/compact") && streq(method, "POST")) {
                ks_store_lock();
                ks_store_compact();
                uint64_t rv = ks_store_current_rv();
                ks_store_unlock();
                char *s;
                if (asprintf(&s, "{\"status\":\"ok\",\"compacted\":\"%llu\"}",
                             (unsigned long long)rv) < 0)
                        return MHD_NO;
                return reply(c, 200, s);
        }
        if (streq(url, "/faults") && streq(method, "DELETE")) {
                pthread_mutex_lock(&lock);
                clear_faults();
                pthread_mutex_unlock(&lock);
                ks_store_broadcast();
                return reply(c, 200, msg("{\"status\":\"%s\"}", "ok"));
        }
        if (streq(url, "/faults") && streq(method, "POST")) {
                cJSON *doc = cJSON_Parse(u->data ? u->data : "");
                const char *e = doc ? apply_faults(doc) : "the body is not JSON";
                cJSON_Delete(doc);
                if (e)
                        return reply(c, 400, msg("{\"error\":\"%s\"}", e));
                return reply(c, 200, msg("{\"status\":\"%s\"}", "ok"));
        }
        return reply(c, 404, msg("{\"error\":\"%s\"}", "no such control endpoint"));
}

static void control_done(void *cls, struct MHD_Connection *c, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
        struct upload *u = *ctx;
        if (u) {
                free(u->data);
                free(u);
        }
        *ctx = NULL;
}

struct MHD_Daemon *ks_control_start(uint16_t port)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        started_us = ks_now_us();
        return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, port, NULL,
                                NULL, control_handler, NULL, MHD_OPTION_SOCK_ADDR, &a,
                                MHD_OPTION_NOTIFY_COMPLETED, control_done, NULL,
                                MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
}
