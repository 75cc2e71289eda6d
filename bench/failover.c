/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark: leader election and failover (SPEC 1, 2, 15) against kube-test-server (TLS, as a real
 * apiserver): three replicas compete for one Lease. A replica is either a real `persistd run`
 * (PERSISTD_BIN set: with its own PostgreSQL database and progress Redis, an empty fleet) or a
 * bench/election-replica process (persistd's elector, Lease adapter and label machine on the
 * real Kubernetes client, nothing else). Measured from the server's side, polling the pods that
 * carry the leader label:
 *  - graceful hand-over: SIGTERM the leader -> the Lease names another replica and that
 *    replica's pod is the only one labelled;
 *  - crash failover: the same after SIGKILL;
 *  - Lease API requests per second in steady state (the server's request statistics).
 * A stopped replica is started again (same pod name, new identity) after each round, as a pod's
 * container restarts. Run by bench/failover (once per timing set); prints `metric: value unit`
 * lines, each metric name starting with FAILOVER_PREFIX (e.g. "default_").
 *
 * usage: failover REPLICA-BINARY  (environment: PERSISTD_BIN, FAILOVER_PREFIX, ELECTION_ROUNDS,
 * ELECTION_CRASH_ROUNDS, ELECTION_STEADY_S, ELECTION_LEASE_S; renew deadline and retry period keep
 * the default ratios 10/15 and 2/15 of the lease)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/clock.h"
#include "fleet-sampler.h"
#include "harness.h"

#define N          3
#define LEASE_NAME "persistd-leader"
#define LABEL_KEY  "persistd.io/leader"
#define POLL_US    (10 * USEC_PER_MSEC)

static struct th_kube kube;
static bool kube_up;
static pid_t pids[N];
static const char *replica_bin;
static const char *persistd_bin; /* NULL: bench/election-replica */
static struct th_redis progress;
static char *config_path[N], *log_path[N];
static bool finished; /* the run completed: no logs to show */
static int lease_s;
static int64_t renew_ms, retry_ms;

static int env_int(const char *name, int def, int min, int max)
{
        const char *e = getenv(name);
        int v = e && *e ? atoi(e) : def;
        return v < min ? min : v > max ? max : v;
}

static void show_logs(void)
{
        for (int i = 0; i < N; i++) {
                char buf[3000];
                FILE *f = log_path[i] ? fopen(log_path[i], "re") : NULL;
                if (!f)
                        continue;
                if (fseek(f, -(long)sizeof(buf) + 1, SEEK_END) < 0)
                        rewind(f);
                size_t n = fread(buf, 1, sizeof(buf) - 1, f);
                buf[n] = '\0';
                fclose(f);
                fprintf(stderr, "---- persistd-%d (the end of its log) ----\n%s\n", i, buf);
        }
}

static void cleanup(void)
{
        if (!finished)
                show_logs();
        for (int i = 0; i < N; i++)
                if (pids[i] > 0) {
                        kill(pids[i], SIGKILL);
                        waitpid(pids[i], NULL, 0);
                        pids[i] = 0;
                }
        if (kube_up) {
                kube_up = false;
                th_kube_stop(&kube);
        }
        th_redis_stop(&progress);
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                th_die("cannot write %s", path);
}

/* One configuration file per persistd replica: the SPEC 10 defaults but for the timings. */
static void persistd_setup(void)
{
        char *dir = th_tmpdir("bench-election");
        char *db = th_pg_create_db("bench_election");
        char *dsn = th_pg_dsn(db);
        char token[512], *yaml = NULL;
        th_redis_start(&progress, NULL);
        snprintf(token, sizeof(token), "%s/token", dir);
        write_file(token, "bench-token-0123456789abcdef\n");
        for (int i = 0; i < N; i++) {
                if (asprintf(&config_path[i], "%s/persistd-%d.yaml", dir, i) < 0 ||
                    asprintf(&log_path[i], "%s/persistd-%d.log", dir, i) < 0 ||
                    asprintf(&yaml,
                             "kubernetes:\n  kubeconfig: \"%s\"\n  request_timeout_ms: %lld\n"
                             "election:\n  lease_duration_s: %d\n  renew_deadline_s: %g\n"
                             "  retry_period_s: %g\n"
                             "postgres:\n  dsn: \"%s\"\n"
                             "progress:\n  address: \"127.0.0.1:%u\"\n"
                             "nightly:\n  enabled: false\n"
                             "http:\n  listen: \"127.0.0.1:%u\"\n  token_file: \"%s\"\n"
                             "log:\n  level: info\n  format: text\n",
                             kube.admin_kubeconfig, (long long)(renew_ms / 2), lease_s,
                             (double)renew_ms / 1e3, (double)retry_ms / 1e3, dsn,
                             (unsigned)progress.port, (unsigned)th_free_port(), token) < 0)
                        th_die("out of memory");
                write_file(config_path[i], yaml);
                free(yaml);
        }
        free(dsn);
        free(db);
        free(dir);
}

static void spawn(int i)
{
        char pod[32], lease[16], renew[32], retry[32];
        snprintf(pod, sizeof(pod), "persistd-%d", i);
        snprintf(lease, sizeof(lease), "%d", lease_s);
        snprintf(renew, sizeof(renew), "%lld", (long long)renew_ms);
        snprintf(retry, sizeof(retry), "%lld", (long long)retry_ms);
        /* The request timeout stays below the renew deadline (kubernetes.request_timeout_ms
         * is 5000 by default, against a 10 s deadline). */
        char timeout[32];
        snprintf(timeout, sizeof(timeout), "%lld", (long long)(renew_ms / 2));
        if (persistd_bin) {
                char env_pod[64];
                snprintf(env_pod, sizeof(env_pod), "POD_NAME=%s", pod);
                char *argv[] = {(char *)persistd_bin, (char *)"run", (char *)"-c", config_path[i],
                                NULL};
                char *env[] = {env_pod, NULL};
                pids[i] = th_spawn(argv, env, log_path[i]);
                return;
        }
        pid_t pid = fork();
        if (pid < 0)
                th_die("fork: %s", strerror(errno));
        if (pid == 0) {
                execl(replica_bin, replica_bin, kube.admin_kubeconfig, pod, LEASE_NAME, LABEL_KEY,
                      lease, renew, retry, timeout, (char *)NULL);
                _exit(127);
        }
        pids[i] = pid;
}

/* The pods carrying the leader label: a bit per replica index; -1 on an unreadable answer. */
static int labelled(void)
{
        char path[256], *body = NULL;
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?labelSelector=%s%%3Dtrue",
                 kube.namespace, "persistd.io%2Fleader");
        long st = th_kube_request(&kube, kube.admin_token, "GET", path, NULL, NULL, &body);
        int bits = -1;
        cJSON *doc = st == 200 ? cJSON_Parse(body) : NULL;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(doc, "items"), *it;
        if (cJSON_IsArray(items)) {
                bits = 0;
                cJSON_ArrayForEach(it, items)
                {
                        const cJSON *name = cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(it, "metadata"), "name");
                        int i;
                        if (cJSON_IsString(name) &&
                            sscanf(name->valuestring, "persistd-%d", &i) == 1 && i >= 0 && i < N)
                                bits |= 1 << i;
                }
        }
        cJSON_Delete(doc);
        free(body);
        return bits;
}

/* The replica index named by the Lease's holder ("persistd-<i>_<suffix>"), -1 for none. */
static int holder(void)
{
        char path[256], *body = NULL;
        snprintf(path, sizeof(path), "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s",
                 kube.namespace, LEASE_NAME);
        long st = th_kube_request(&kube, kube.admin_token, "GET", path, NULL, NULL, &body);
        int h = -1;
        cJSON *doc = st == 200 ? cJSON_Parse(body) : NULL;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(doc, "spec"), "holderIdentity");
        int i;
        char sep;
        if (cJSON_IsString(id) && sscanf(id->valuestring, "persistd-%d%c", &i, &sep) == 2 &&
            sep == '_' && i >= 0 && i < N)
                h = i;
        cJSON_Delete(doc);
        free(body);
        return h;
}

/*
 * Wait until one replica other than `not` holds the Lease and its pod alone is labelled;
 * return it. Polls every POLL_US once `quiet_us` has passed, every 50 ms before.
 */
static int wait_leader(int not, int64_t t0, int64_t quiet_us, int64_t timeout_us)
{
        for (;;) {
                int bits = labelled();
                for (int i = 0; i < N; i++)
                        if (bits == 1 << i && i != not &&holder() == i)
                                return i;
                int64_t el = clock_mono_us() - t0;
                if (el > timeout_us)
                        th_die("no new labelled leader within %.1f s", (double)timeout_us / 1e6);
                clock_sleep_us(el < quiet_us ? 50 * USEC_PER_MSEC : POLL_US);
        }
}

static void round_trip(int sig, double *ms, int *leader)
{
        int l = *leader;
        /* A random phase against the leader's renewals (every retry period), so the rounds do
         * not all kill it the same time after a renewal. */
        clock_sleep_us((int64_t)(drand48() * (double)retry_ms) * USEC_PER_MSEC);
        int64_t t0 = clock_mono_us();
        kill(pids[l], sig);
        int64_t quiet = sig == SIGKILL ? (lease_s - 2) * USEC_PER_SEC : 0;
        int nl = wait_leader(l, t0, quiet, (lease_s * 3 + 10) * USEC_PER_SEC);
        *ms = (double)(clock_mono_us() - t0) / 1e3;
        int status;
        waitpid(pids[l], &status, 0);
        if (sig == SIGTERM && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                th_die("replica %d did not exit cleanly after SIGTERM", l);
        pids[l] = 0;
        spawn(l);
        *leader = nl;
        clock_sleep_us(USEC_PER_SEC); /* the new process removes its label and starts watching */
}

/* The Lease requests counted since the last reset; each verb's count into verbs (JSON). */
static double lease_requests(cJSON **ret_verbs)
{
        char *out = NULL;
        double n = 0;
        if (th_kube_control(&kube, "GET", "/stats", NULL, &out) != 200)
                th_die("cannot read the server's statistics");
        cJSON *doc = cJSON_Parse(out);
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(doc, "requests"), *it;
        cJSON_ArrayForEach(it, req)
        {
                size_t len = strlen(it->string);
                if (len > 7 && strcmp(it->string + len - 7, " leases") == 0 && cJSON_IsNumber(it))
                        n += it->valuedouble;
        }
        *ret_verbs = cJSON_DetachItemFromObjectCaseSensitive(doc, "requests");
        cJSON_Delete(doc);
        free(out);
        return n;
}

/* Print `<pfx><name>_rounds`, _min_ms, _p50_ms (the median) and _p99_ms; returns the p99. */
static double print_handover(const char *pfx, const char *name, double *ms, size_t n)
{
        double min = ms[0];
        for (size_t i = 1; i < n; i++)
                min = ms[i] < min ? ms[i] : min;
        double p99 = fleet_quantile(ms, n, 0.99);
        printf("%s%s_rounds: %zu rounds\n", pfx, name, n);
        printf("%s%s_min_ms: %.0f ms\n", pfx, name, min);
        printf("%s%s_p50_ms: %.0f ms\n", pfx, name, fleet_quantile(ms, n, 0.5));
        printf("%s%s_p99_ms: %.0f ms\n", pfx, name, p99);
        return p99;
}

int main(int argc, char *argv[])
{
        if (argc != 2)
                th_die("usage: failover REPLICA-BINARY");
        replica_bin = argv[1];
        int rounds = env_int("ELECTION_ROUNDS", 10, 1, 1000);
        lease_s = env_int("ELECTION_LEASE_S", 15, 2, 3600);
        /* A crash round waits out the lease: fewer of them with long leases. */
        int crash_rounds = env_int("ELECTION_CRASH_ROUNDS", lease_s >= 10 ? 3 : 10, 1, 100);
        int steady_s = env_int("ELECTION_STEADY_S", 60, 5, 3600);
        const char *pfx = getenv("FAILOVER_PREFIX");
        if (!pfx)
                pfx = "";
        renew_ms = lease_s * 1000LL * 10 / 15;
        retry_ms = lease_s * 1000LL * 2 / 15;

        persistd_bin = getenv("PERSISTD_BIN");
        if (persistd_bin && !*persistd_bin)
                persistd_bin = NULL;
        srand48((long)clock_mono_us() ^ (long)getpid());
        th_kube_start(&kube, NULL);
        kube_up = true;
        atexit(cleanup);
        if (persistd_bin)
                persistd_setup();
        for (int i = 0; i < N; i++) {
                char pod[32];
                snprintf(pod, sizeof(pod), "persistd-%d", i);
                th_kube_create_pod(&kube, pod, "{\"app\":\"persistd\"}");
        }
        for (int i = 0; i < N; i++)
                spawn(i);
        int leader = wait_leader(-1, clock_mono_us(), 0, (lease_s * 3 + 10) * USEC_PER_SEC);
        clock_sleep_us(USEC_PER_SEC);

        double *g = calloc((size_t)rounds, sizeof(*g)),
               *c = calloc((size_t)crash_rounds, sizeof(*c));
        if (!g || !c)
                th_die("out of memory");
        for (int r = 0; r < rounds; r++)
                round_trip(SIGTERM, &g[r], &leader);
        for (int r = 0; r < crash_rounds; r++)
                round_trip(SIGKILL, &c[r], &leader);

        /* Steady state: three replicas, one leader, nobody else talking to the server. */
        clock_sleep_us(2 * USEC_PER_SEC);
        th_kube_reset_stats(&kube);
        int64_t t0 = clock_mono_us();
        clock_sleep_us(steady_s * USEC_PER_SEC);
        cJSON *verbs = NULL, *it;
        double reqs = lease_requests(&verbs);
        double secs = (double)(clock_mono_us() - t0) / 1e6;

        printf("%sreplicas: %d %s\n", pfx, N, persistd_bin ? "persistd" : "election-replica");
        printf("%slease_duration_s: %d s\n", pfx, lease_s);
        printf("%srenew_deadline_ms: %lld ms\n", pfx, (long long)renew_ms);
        printf("%sretry_period_ms: %lld ms\n", pfx, (long long)retry_ms);
        print_handover(pfx, "graceful_handover", g, (size_t)rounds);
        double c99 = print_handover(pfx, "crash_failover", c, (size_t)crash_rounds);
        printf("%scrash_failover_p99_over_lease: %.3f ratio\n", pfx, c99 / (lease_s * 1000.0));
        printf("%slease_requests_per_s: %.3f req/s\n", pfx, reqs / secs);
        cJSON_ArrayForEach(it, verbs)
        {
                char verb[32];
                if (cJSON_IsNumber(it) && sscanf(it->string, "%31s leases", verb) == 1 &&
                    strstr(it->string, " leases"))
                        printf("%slease_%s_per_s: %.3f req/s\n", pfx, verb, it->valuedouble / secs);
        }
        cJSON_Delete(verbs);
        free(g);
        free(c);
        finished = true;
        cleanup();
        for (int i = 0; i < N; i++) {
                free(config_path[i]);
                free(log_path[i]);
        }
        return 0;
}
