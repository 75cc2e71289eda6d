/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A PostgreSQL server of the test's own, run as the `postgres` user (root cannot run postgres),
 * for tests that stop and restart PostgreSQL under the store.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "test-store-restart-util.h"

#define PGBIN "/usr/lib/postgresql/15/bin"

static struct ownpg *current; /* stopped at exit */

/* Run argv as the postgres user (runuser when root), waiting up to 60 s; the exit status. */
static int run_as_postgres(const char *log, char *const argv[])
{
        char *full[24];
        int n = 0;

        if (geteuid() == 0) {
                full[n++] = (char *)"runuser";
                full[n++] = (char *)"-u";
                full[n++] = (char *)"postgres";
                full[n++] = (char *)"--";
        }
        for (int i = 0; argv[i] && n < 23; i++)
                full[n++] = argv[i];
        full[n] = NULL;
        pid_t pid = th_spawn(full, NULL, log);
        int status;
        if (!th_wait_exit(pid, 60000, &status)) {
                th_stop(pid, SIGKILL, 1000);
                return -1;
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void stop_at_exit(void)
{
        if (current && current->running) {
                char *argv[] = {(char *)PGBIN "/pg_ctl", (char *)"-D", current->data,  (char *)"-m",
                                (char *)"immediate",     (char *)"-w", (char *)"stop", NULL};
                run_as_postgres(NULL, argv);
                current->running = false;
        }
}

static void pg_ctl(struct ownpg *pg, const char *what)
{
        char *log, *opts;
        if (asprintf(&log, "%s/server.log", pg->dir) < 0 ||
            asprintf(&opts, "-p %u -k %s -c listen_addresses=127.0.0.1 -c fsync=off", pg->port,
                     pg->dir) < 0)
                th_die("out of memory");
        int r;
        if (strcmp(what, "start") == 0) {
                char *argv[] = {(char *)PGBIN "/pg_ctl",
                                (char *)"-D",
                                pg->data,
                                (char *)"-l",
                                log,
                                (char *)"-o",
                                opts,
                                (char *)"-w",
                                (char *)"-t",
                                (char *)"30",
                                (char *)"start",
                                NULL};
                r = run_as_postgres(NULL, argv);
        } else {
                char *argv[] = {(char *)PGBIN "/pg_ctl", (char *)"-D", pg->data,     (char *)"-m",
                                (char *)"fast",          (char *)"-w", (char *)"-t", (char *)"30",
                                (char *)"stop",          NULL};
                r = run_as_postgres(NULL, argv);
        }
        if (r != 0)
                th_die("pg_ctl %s failed (%d); see %s", what, r, log);
        free(log);
        free(opts);
}

void ownpg_init(struct ownpg *pg)
{
        struct passwd *pw = getpwnam("postgres");

        memset(pg, 0, sizeof(*pg));
        if (geteuid() == 0 && !pw)
                th_die("running as root and there is no postgres user");
        pg->dir = th_tmpdir("ownpg");
        if (asprintf(&pg->data, "%s/data", pg->dir) < 0)
                th_die("out of memory");
        /* The path up to here must be traversable by postgres, the directory its own. */
        if (chmod(pg->dir, 0755) < 0 || (pw && chown(pg->dir, pw->pw_uid, pw->pw_gid) < 0))
                th_die("cannot prepare %s: %s", pg->dir, strerror(errno));
        pg->port = th_free_port();
        if (asprintf(&pg->dsn,
                     "host=127.0.0.1 port=%u dbname=postgres user=postgres connect_timeout=2",
                     pg->port) < 0)
                th_die("out of memory");

        char *log;
        if (asprintf(&log, "%s/initdb.log", pg->dir) < 0)
                th_die("out of memory");
        char *argv[] = {(char *)PGBIN "/initdb",
                        (char *)"-D",
                        pg->data,
                        (char *)"-U",
                        (char *)"postgres",
                        (char *)"-A",
                        (char *)"reject",
                        (char *)"--no-sync",
                        NULL};
        if (run_as_postgres(log, argv) != 0)
                th_die("initdb failed; see %s", log);
        free(log);

        /* Trust on the loopback address only; nothing else may connect. */
        char *hba;
        if (asprintf(&hba, "%s/pg_hba.conf", pg->data) < 0)
                th_die("out of memory");
        FILE *f = fopen(hba, "we");
        if (!f)
                th_die("cannot write %s: %s", hba, strerror(errno));
        fputs("host all all 127.0.0.1/32 trust\n", f);
        fclose(f);
        free(hba);

        current = pg;
        static bool registered;
        if (!registered) {
                atexit(stop_at_exit);
                registered = true;
        }
        ownpg_start(pg);
}

void ownpg_start(struct ownpg *pg)
{
        pg_ctl(pg, "start");
        pg->running = true;
}

void ownpg_stop(struct ownpg *pg)
{
        pg_ctl(pg, "stop");
        pg->running = false;
}

void ownpg_destroy(struct ownpg *pg)
{
        if (!pg->dir)
                return;
        if (pg->running)
                stop_at_exit();
        if (current == pg)
                current = NULL;
        th_rmtree(pg->dir);
        free(pg->dir);
        free(pg->data);
        free(pg->dsn);
        memset(pg, 0, sizeof(*pg));
}
