/* SPDX-License-Identifier: Apache-2.0 */
/* Real-server harness for the integration tests. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_CHILDREN 256
#define MAX_DIRS     256
#define MAX_DBS      64

static pid_t children[MAX_CHILDREN];
static char *dirs[MAX_DIRS];
static char *dbs[MAX_DBS];
static bool cleanup_registered;
static pid_t harness_pid;

static void cleanup_at_exit(void);
static void drop_databases(void);

static void register_cleanup(void)
{
        if (cleanup_registered)
                return;
        cleanup_registered = true;
        harness_pid = getpid();
        atexit(cleanup_at_exit);
}

void th_die(const char *fmt, ...)
{
        va_list ap;
        fputs("harness: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(99); /* meson: a hard error, not a test failure */
}

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

uint16_t th_free_port(void)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) < 0)
                th_die("cannot find a free port: %s", strerror(errno));
        close(fd);
        return ntohs(a.sin_port);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        remove(path);
        return 0;
}

void th_rmtree(const char *path)
{
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *th_tmpdir(const char *tag)
{
        const char *base = getenv("TMPDIR");
        char *path;

        register_cleanup();
        if (asprintf(&path, "%s/persistd-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0 ||
            !mkdtemp(path))
                th_die("cannot create a temporary directory: %s", strerror(errno));
        for (size_t i = 0; i < MAX_DIRS; i++)
                if (!dirs[i]) {
                        dirs[i] = strdup(path);
                        break;
                }
        return path;
}

static void forget_child(pid_t pid)
{
        for (size_t i = 0; i < MAX_CHILDREN; i++)
                if (children[i] == pid)
                        children[i] = 0;
}

pid_t th_spawn(char *const argv[], char *const env[], const char *log_path)
{
        pid_t parent = getpid();
        pid_t pid;

        register_cleanup();
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0)
                th_die("fork: %s", strerror(errno));
        if (pid == 0) {
                /* Die with the test, even when it is killed. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                setpgid(0, 0);
                if (log_path) {
                        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
                        if (fd >= 0) {
                                dup2(fd, STDOUT_FILENO);
                                dup2(fd, STDERR_FILENO);
                                close(fd);
                        }
                }
                int devnull = open("/dev/null", O_RDONLY);
                if (devnull >= 0) {
                        dup2(devnull, STDIN_FILENO);
                        close(devnull);
                }
                for (size_t i = 0; env && env[i]; i++)
                        putenv(env[i]);
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                execvp(argv[0], argv);
                fprintf(stderr, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        for (size_t i = 0; i < MAX_CHILDREN; i++)
                if (!children[i]) {
                        children[i] = pid;
                        break;
                }
        return pid;
}

bool th_wait_exit(pid_t pid, int timeout_ms, int *status)
{
        int64_t deadline = now_ms() + timeout_ms;
        int st;

        for (;;) {
                pid_t r = waitpid(pid, &st, WNOHANG);
                if (r == pid || (r < 0 && errno == ECHILD)) {
                        forget_child(pid);
                        if (status)
                                *status = r == pid ? st : 0;
                        return true;
                }
                if (now_ms() >= deadline)
                        return false;
                sleep_ms(10);
        }
}

int th_stop(pid_t pid, int sig, int timeout_ms)
{
        int status = 0;

        if (pid <= 0)
                return 0;
        kill(pid, sig);
        if (!th_wait_exit(pid, timeout_ms, &status)) {
                kill(pid, SIGKILL);
                th_wait_exit(pid, 5000, &status);
        }
        return status;
}

/* ---- Redis ---------------------------------------------------------------------------- */

static bool redis_answers(const struct th_redis *r)
{
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
        bool ok = false;

        if (c && !c->err) {
                redisSetTimeout(c, tv);
                redisReply *rep;
                if (r->password) {
                        rep = redisCommand(c, "AUTH %s", r->password);
                        if (rep)
                                freeReplyObject(rep);
                }
                rep = redisCommand(c, "PING");
                ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
                if (rep)
                        freeReplyObject(rep);
        }
        if (c)
                redisFree(c);
        return ok;
}

static void redis_spawn(struct th_redis *r, const char *const *extra)
{
        char port[16], *log_path;
        char *argv[64];
        size_t n = 0;

        snprintf(port, sizeof(port), "%u", r->port);
        if (asprintf(&log_path, "%s/redis.log", r->dir) < 0)
                th_die("out of memory");
        argv[n++] = (char *)"redis-server";
        argv[n++] = (char *)"--port";
        argv[n++] = port;
        argv[n++] = (char *)"--bind";
        argv[n++] = (char *)"127.0.0.1";
        argv[n++] = (char *)"--dir";
        argv[n++] = r->dir;
        argv[n++] = (char *)"--save";
        argv[n++] = (char *)"";
        argv[n++] = (char *)"--daemonize";
        argv[n++] = (char *)"no";
        argv[n++] = (char *)"--protected-mode";
        argv[n++] = (char *)"no";
        /* DEBUG POPULATE fills test instances with data (Redis 7 refuses DEBUG otherwise). */
        argv[n++] = (char *)"--enable-debug-command";
        argv[n++] = (char *)"local";
        if (r->password) {
                argv[n++] = (char *)"--requirepass";
                argv[n++] = r->password;
        }
        for (size_t i = 0; extra && extra[i] && n < 62; i++)
                argv[n++] = (char *)extra[i];
        argv[n] = NULL;
        r->pid = th_spawn(argv, NULL, log_path);
        free(log_path);
}

static bool redis_wait_ready(struct th_redis *r)
{
        int64_t deadline = now_ms() + 10000;
        while (now_ms() < deadline) {
                if (redis_answers(r))
                        return true;
                int status;
                if (th_wait_exit(r->pid, 0, &status)) {
                        r->pid = 0;
                        return false; /* exited: most likely the port was taken */
                }
                sleep_ms(20);
        }
        return false;
}

void th_redis_start(struct th_redis *r, const char *const *extra)
{
        char *password = NULL;

        /* A --requirepass among the extras is remembered so connections can AUTH. */
        for (size_t i = 0; extra && extra[i]; i++)
                if (strcmp(extra[i], "--requirepass") == 0 && extra[i + 1])
                        password = strdup(extra[i + 1]);
        *r = (struct th_redis){0};
        r->dir = th_tmpdir("redis");
        for (int attempt = 0; attempt < 5; attempt++) {
                r->port = th_free_port();
                redis_spawn(r, extra);
                r->password = password;
                if (redis_wait_ready(r))
                        return;
                if (r->pid)
                        th_stop(r->pid, SIGKILL, 1000);
        }
        th_die("redis-server did not start; see %s/redis.log", r->dir);
}

void th_redis_restart(struct th_redis *r, const char *const *extra)
{
        char *password = r->password;
        if (r->pid)
                th_stop(r->pid, SIGTERM, 5000);
        r->password = NULL;
        redis_spawn(r, extra);
        r->password = password;
        if (!redis_wait_ready(r))
                th_die("redis-server did not restart on port %u; see %s/redis.log", r->port,
                       r->dir);
}

void th_redis_stop(struct th_redis *r)
{
        if (r->pid)
                th_stop(r->pid, SIGTERM, 5000);
        if (r->dir)
                th_rmtree(r->dir);
        free(r->dir);
        free(r->password);
        *r = (struct th_redis){0};
}

redisContext *th_redis_connect(const struct th_redis *r)
{
        struct timeval tv = {2, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
        if (!c || c->err)
                th_die("cannot connect to redis on port %u: %s", r->port,
                       c ? c->errstr : "out of memory");
        redisSetTimeout(c, tv);
        if (r->password) {
                redisReply *rep = th_redis_cmd(c, "AUTH %s", r->password);
                freeReplyObject(rep);
        }
        return c;
}

redisReply *th_redis_cmd(redisContext *c, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        redisReply *rep = redisvCommand(c, fmt, ap);
        va_end(ap);
        if (!rep)
                th_die("redis command \"%s\" failed: %s", fmt, c->errstr);
        return rep;
}

long long th_redis_info_int(redisContext *c, const char *field)
{
        redisReply *rep = th_redis_cmd(c, "INFO");
        long long v = -1;
        size_t n = strlen(field);

        if (rep->type == REDIS_REPLY_STRING)
                for (const char *p = rep->str; p && *p;
                     p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                        if (strncmp(p, field, n) == 0 && p[n] == ':') {
                                v = strtoll(p + n + 1, NULL, 10);
                                break;
                        }
        freeReplyObject(rep);
        return v;
}

/* ---- PostgreSQL ----------------------------------------------------------------------- */

bool th_pg_available(void)
{
        const char *host = getenv("PGHOST"), *port = getenv("PGPORT");
        return host && *host && port && *port;
}

char *th_pg_dsn(const char *dbname)
{
        char *dsn;
        if (asprintf(&dsn, "dbname=%s connect_timeout=5", dbname) < 0)
                th_die("out of memory");
        return dsn;
}

PGconn *th_pg_connect(const char *dbname)
{
        char *dsn = th_pg_dsn(dbname);
        PGconn *c = PQconnectdb(dsn);
        free(dsn);
        if (PQstatus(c) != CONNECTION_OK)
                th_die("cannot connect to PostgreSQL database \"%s\": %s", dbname,
                       PQerrorMessage(c));
        PQsetNoticeProcessor(c, NULL, NULL);
        return c;
}

void th_pg_exec(PGconn *c, const char *sql)
{
        PGresult *res = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                th_die("SQL failed: %s\n  %s", PQresultErrorMessage(res), sql);
        PQclear(res);
}

char *th_pg_value(PGconn *c, const char *sql)
{
        PGresult *res = PQexec(c, sql);
        char *v = NULL;
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
                th_die("SQL did not return one row: %s\n  %s", PQresultErrorMessage(res), sql);
        if (!PQgetisnull(res, 0, 0))
                v = strdup(PQgetvalue(res, 0, 0));
        PQclear(res);
        return v;
}

char *th_pg_create_db(const char *tag)
{
        static unsigned counter;
        char *name, *sql;

        register_cleanup();
        if (!th_pg_available())
                th_die("no PostgreSQL: the PG* variables are not set. Run the integration suite "
                       "through the README's test command (scripts/test), which starts a "
                       "throw-away cluster with pg_virtualenv");
        if (asprintf(&name, "t_%s_%d_%u", tag, (int)getpid(), counter++) < 0)
                th_die("out of memory");
        for (char *p = name; *p; p++)
                if (*p == '-')
                        *p = '_';
        PGconn *admin = th_pg_connect("postgres");
        if (asprintf(&sql, "CREATE DATABASE %s", name) < 0)
                th_die("out of memory");
        th_pg_exec(admin, sql);
        free(sql);
        PQfinish(admin);
        /* Registered after libpq has initialised OpenSSL, whose own atexit handler must run
         * after this one (handlers run in reverse order). */
        static bool drop_registered;
        if (!drop_registered) {
                drop_registered = true;
                atexit(drop_databases);
        }
        for (size_t i = 0; i < MAX_DBS; i++)
                if (!dbs[i]) {
                        dbs[i] = strdup(name);
                        break;
                }
        return name;
}

static void drop_databases(void)
{
        if (getpid() != harness_pid)
                return;
        PGconn *admin = NULL;
        for (size_t i = 0; i < MAX_DBS; i++) {
                if (!dbs[i])
                        continue;
                if (!admin) {
                        char *dsn = th_pg_dsn("postgres");
                        admin = PQconnectdb(dsn);
                        free(dsn);
                }
                if (PQstatus(admin) == CONNECTION_OK) {
                        char *sql;
                        if (asprintf(&sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbs[i]) > 0) {
                                PQclear(PQexec(admin, sql));
                                free(sql);
                        }
                }
                free(dbs[i]);
                dbs[i] = NULL;
        }
        if (admin)
                PQfinish(admin);
}

static void cleanup_at_exit(void)
{
        if (getpid() != harness_pid)
                return; /* a forked child that failed to exec */
        for (size_t i = 0; i < MAX_CHILDREN; i++)
                if (children[i] > 0) {
                        th_stop(children[i], SIGTERM, 3000);
                        children[i] = 0;
                }
        for (size_t i = 0; i < MAX_DIRS; i++)
                if (dirs[i]) {
                        if (!getenv("TH_KEEP_TMP"))
                                th_rmtree(dirs[i]);
                        free(dirs[i]);
                        dirs[i] = NULL;
                }
}

/* ---- Paths ------------------------------------------------------------------------------ */

const char *th_persistd_path(void)
{
        const char *p = getenv("PERSISTD_BIN");
        if (!p || !*p)
                th_die("PERSISTD_BIN is not set (run the tests through meson)");
        return p;
}

const char *th_persistctl_path(void)
{
        const char *p = getenv("PERSISTCTL_BIN");
        if (!p || !*p)
                th_die("PERSISTCTL_BIN is not set (run the tests through meson)");
        return p;
}
