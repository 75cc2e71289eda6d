/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark: 100,000 tasks over 10,000 instances; how long loading every enabled task (the
 * master controller's query, joined with the instance's pool) takes, and the process's peak RSS
 * while it keeps a compact copy of each task, as a controller would. Run by bench/store-load,
 * inside a throw-away PostgreSQL cluster; prints `metric: value unit` lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/clock.h"
#include "store/pgstore.h"

struct loaded_task {
        int64_t id;
        char schedule[40];
        char pool[16];
        char instance_id[24];
};

struct loaded {
        struct loaded_task *tasks;
        size_t n, alloc;
};

static int keep(const struct pgstore_task *t, void *userdata)
{
        struct loaded *l = userdata;
        if (l->n == l->alloc) {
                size_t alloc = l->alloc ? l->alloc * 2 : 1024;
                struct loaded_task *p = realloc(l->tasks, alloc * sizeof(*p));
                if (!p)
                        return ENOMEM;
                l->tasks = p;
                l->alloc = alloc;
        }
        struct loaded_task *k = &l->tasks[l->n++];
        k->id = t->id;
        snprintf(k->schedule, sizeof(k->schedule), "%s", t->schedule);
        snprintf(k->pool, sizeof(k->pool), "%s", t->pool);
        snprintf(k->instance_id, sizeof(k->instance_id), "%s", t->instance_id);
        return 0;
}

static long peak_rss_kib(void)
{
        char line[256];
        long kib = -1;
        FILE *f = fopen("/proc/self/status", "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

static void exec_or_die(PGconn *c, const char *sql)
{
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
                fprintf(stderr, "store-load: %s: %s", sql, PQresultErrorMessage(res));
                exit(1);
        }
        PQclear(res);
}

int main(int argc, char *argv[])
{
        const char *dsn = argc > 1 ? argv[1] : "";
        const struct pgstore_options o = {
            .dsn = dsn, .connect_timeout_s = 10, .statement_timeout_ms = 120000};
        struct pgstore *s = pgstore_new(&o);
        struct loaded l = {0};
        int r;

        if (!s || (r = pgstore_migrate(s, NULL, NULL)) < 0) {
                fprintf(stderr, "store-load: migrate: %s\n", pgstore_errstr());
                return 1;
        }
        PGconn *c = PQconnectdb(dsn);
        if (PQstatus(c) != CONNECTION_OK) {
                fprintf(stderr, "store-load: %s", PQerrorMessage(c));
                return 1;
        }
        exec_or_die(c, "TRUNCATE instances, tasks, runs");
        exec_or_die(c, "INSERT INTO instances (id, host, port, pool)"
                       " SELECT 'redis-' || i, '10.0.' || (i / 250) || '.' || (i % 250),"
                       "   6379, 'pool-' || (i % 40) FROM generate_series(1, 10000) i");
        /* Ten tasks per instance, one in twenty disabled, a few instances disabled. */
        exec_or_die(c, "INSERT INTO tasks (instance_id, schedule, enabled, description)"
                       " SELECT 'redis-' || (1 + (n - 1) / 10), (n % 60) || ' */2 * * *',"
                       "   n % 20 <> 0, 'bench task ' || n FROM generate_series(1, 100000) n");
        exec_or_die(c, "UPDATE instances SET enabled = false WHERE id LIKE 'redis-%7'");
        exec_or_die(c, "ANALYZE");
        PQfinish(c);

        long rss_before = peak_rss_kib();
        const struct pgstore_task_filter enabled = {.enabled_only = true};
        /* Warm the connection and the server's caches once, as a running leader would be. */
        if (pgstore_ping(s) < 0) {
                fprintf(stderr, "store-load: %s\n", pgstore_errstr());
                return 1;
        }
        int64_t t0 = clock_mono_us();
        r = pgstore_tasks_foreach(s, &enabled, keep, &l);
        int64_t t1 = clock_mono_us();
        if (r < 0) {
                fprintf(stderr, "store-load: loading tasks: %s\n", pgstore_errstr());
                return 1;
        }
        long rss_after = peak_rss_kib();
        printf("hour_load_tasks: %zu tasks\n", l.n);
        printf("hour_load_ms: %lld ms\n", (long long)((t1 - t0) / 1000));
        printf("hour_load_rss_mib: %.1f MiB\n", rss_after / 1024.0);
        printf("hour_load_rss_growth_mib: %.1f MiB\n", (rss_after - rss_before) / 1024.0);
        free(l.tasks);
        pgstore_free(s);
        return 0;
}
