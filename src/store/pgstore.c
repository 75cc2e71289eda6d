/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PostgreSQL store over libpq: one mutex-guarded connection with reconnection backoff,
 * migrations under an advisory lock, fenced run writes, and the row readers and writers.
 *
 * Why the fencing is race-free under READ COMMITTED. Every fenced write is ONE statement
 * whose first CTE is `SELECT epoch FROM leader_epoch WHERE id = 1 FOR SHARE`, and whose write
 * happens only when that epoch is the caller's. A new leader's bump is an UPDATE of that row,
 * which needs a lock that conflicts with FOR SHARE. So either
 *   - the fenced statement locks the row first: the bump waits until the fenced write has
 *     committed, and the new leader, whose reconciliation queries start after its bump, sees it
 *     (a claim made by the old leader is found and reconciled; nothing is lost); or
 *   - the bump locks it first: the FOR SHARE waits for the bump to commit and then, READ
 *     COMMITTED's rule for locking reads, re-reads the newest row version, sees the new epoch and
 *     writes nothing; the caller gets -ESTALE.
 * There is no interleaving in which an old epoch's write lands after the new leader has looked.
 * A claim is INSERT ... ON CONFLICT (task_id, scheduled_for) DO NOTHING, so concurrent claims of
 * one slot (two leaders, or two threads) insert exactly one row: the loser waits for the
 * winner's transaction and then does nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "persistd-version.h"
#include "store/migrations.h"
#include "store/pgstore-internal.h"
#include "store/pgstore.h"

#define LOG_MODULE "store"

/* 'p','e','r','s','i','s','t','d' as a bigint: the key of the migrations' advisory lock. */
#define MIGRATE_LOCK_KEY "8099572405016016996"

/* timestamptz from parameter $N (int64 microseconds, exact); columns are read back with
 * (extract(epoch from c) * 1000000)::bigint, exact too (extract returns numeric). */
#define TS1  "(timestamptz 'epoch' + $1::bigint * interval '1 microsecond')"
#define TS2  "(timestamptz 'epoch' + $2::bigint * interval '1 microsecond')"
#define TS3  "(timestamptz 'epoch' + $3::bigint * interval '1 microsecond')"
#define TS4  "(timestamptz 'epoch' + $4::bigint * interval '1 microsecond')"
#define TS5  "(timestamptz 'epoch' + $5::bigint * interval '1 microsecond')"
#define TS6  "(timestamptz 'epoch' + $6::bigint * interval '1 microsecond')"
#define TS7  "(timestamptz 'epoch' + $7::bigint * interval '1 microsecond')"
#define TS8  "(timestamptz 'epoch' + $8::bigint * interval '1 microsecond')"
#define TS9  "(timestamptz 'epoch' + $9::bigint * interval '1 microsecond')"
#define TS10 "(timestamptz 'epoch' + $10::bigint * interval '1 microsecond')"

/* The head of every fenced statement: the epoch row, share-locked (see the file comment). */
#define FENCE "WITH e AS (SELECT epoch FROM leader_epoch WHERE id = 1 FOR SHARE) "

struct pgstore {
        pthread_mutex_t lock;
        PGconn *conn; /* NULL while disconnected */
        char *dsn;
        char *dsn_password;
        char *application_name;
        int connect_timeout_s;
        int statement_timeout_ms;
        int lock_timeout_ms;
        int64_t backoff_us;
        int64_t next_attempt_us; /* monotonic; no reconnection attempt before it */
        bool connecting;         /* a thread is connecting, without the lock */
        char last_connect_error[256];
        atomic_bool connected;
};

/* ---- errors (per thread, like errno) ------------------------------------------------------ */

/* initial-exec: the library is linked into executables only, and this keeps __tls_get_addr (and
 * so a direct dependency on the dynamic loader) out of the binaries. */
#define TLS_IE __attribute__((tls_model("initial-exec")))
static _Thread_local char tls_errstr[512] TLS_IE;
static _Thread_local char tls_sqlstate[6] TLS_IE;

const char *pgstore_errstr(void)
{
        return tls_errstr;
}

const char *pgstore_sqlstate(void)
{
        return tls_sqlstate;
}

static void clear_error(void)
{
        tls_errstr[0] = '\0';
        tls_sqlstate[0] = '\0';
}

static int set_error(struct pgstore *s, int r, const char *fmt, ...) _printf_(3, 4);
static int set_error(struct pgstore *s, int r, const char *fmt, ...)
{
        char buf[sizeof(tls_errstr)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        _cleanup_free_ char *clean = pgstore_scrub(buf, s ? s->dsn_password : NULL);
        pgstore_copy_utf8(tls_errstr, sizeof(tls_errstr), clean ? clean : "(out of memory)");
        return r;
}

int pgstore_errno_from_sqlstate(const char *sqlstate)
{
        const char *st = sqlstate;
        if (!st || strlen(st) != 5)
                return -EIO;
        if (streq(st, "23505"))
                return -EEXIST;
        if (strncmp(st, "23", 2) == 0 || strncmp(st, "22", 2) == 0)
                return -EINVAL;
        if (streq(st, "57014") || streq(st, "55P03"))
                return -ETIMEDOUT;
        if (strncmp(st, "08", 2) == 0 || streq(st, "57P01") || streq(st, "57P02") ||
            streq(st, "57P03"))
                return -ENOTCONN;
        if (strncmp(st, "40", 2) == 0)
                return -EAGAIN;
        return -EIO;
}

char *pgstore_scrub(const char *msg, const char *password)
{
        struct strbuf sb = STRBUF_INIT;
        size_t n = password ? strlen(password) : 0;

        if (!msg)
                return NULL;
        for (const char *p = msg; *p;) {
                const char *hit = n > 0 ? strstr(p, password) : NULL;
                if (!hit) {
                        strbuf_adds(&sb, p);
                        break;
                }
                strbuf_add(&sb, p, (size_t)(hit - p));
                strbuf_adds(&sb, "***");
                p = hit + n;
        }
        _cleanup_free_ char *joined = strbuf_detach(&sb);
        return joined ? redact_secrets(joined) : NULL;
}

void pgstore_copy_utf8(char *dst, size_t size, const char *src)
{
        size_t n = src ? strlen(src) : 0;

        if (size == 0)
                return;
        if (n >= size) {
                n = size - 1;
                /* Never cut a multi-byte character in two: PostgreSQL refuses broken UTF-8. */
                while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
                        n--;
        }
        if (n > 0)
                memcpy(dst, src, n);
        dst[n] = '\0';
}

/* A field of the constraint the database refused, and what the field must be. */
static const struct {
        const char *constraint;
        const char *field;
        const char *reason;
} constraint_fields[] = {
    {"instances_pkey", "id", "an instance with this id exists"},
    {"instances_id_check", "id",
     "must be 1 to 128 letters, digits or ._:/@- starting with a letter or digit"},
    {"instances_host_check", "host", "must be 1 to 253 characters without spaces"},
    {"instances_port_check", "port", "must be between 1 and 65535"},
    {"instances_pool_check", "pool",
     "must be 1 to 63 letters, digits or ._- starting with a letter or digit"},
    {"instances_address_check", "host", "set either host or pod_namespace + pod_name"},
    {"tasks_pkey", "id", "a task with this id exists"},
    {"tasks_id_check", "id", "must be positive"},
    {"tasks_instance_id_fkey", "instance_id", "no such instance"},
    {"tasks_action_check", "action", "must be \"bgsave\" or \"bgrewriteaof\""},
    {"tasks_schedule_check", "schedule",
     "must be a cron expression of 5 fields (or 6, seconds first), at most 128 characters"},
    {"tasks_misfire_policy_check", "misfire_policy", "must be \"run_once\" or \"skip\""},
    {"tasks_starting_deadline_check", "starting_deadline_s", "must be between 0 and 86400"},
    {"tasks_description_check", "description", "must be at most 1024 characters"},
    {"runs_instance_id_fkey", "instance_id", "no such instance"},
    {"runs_task_id_fkey", "task_id", "no such task"},
    {"runs_pass_id_fkey", "pass_id", "no such pass"},
    {"runs_request_id_check", "request_id", "must be 1 to 128 characters"},
    {"runs_error_check", "error", "must be at most 1024 characters"},
    {"passes_totals_check", "done", "done + failed + skipped must not exceed total"},
};

static int result_error(struct pgstore *s, const PGresult *res, const char *what)
{
        const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        const char *constraint = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
        const char *column = res ? PQresultErrorField(res, PG_DIAG_COLUMN_NAME) : NULL;
        const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        int r = pgstore_errno_from_sqlstate(st);

        if (constraint)
                for (size_t i = 0; i < ELEMENTSOF(constraint_fields); i++)
                        if (streq(constraint, constraint_fields[i].constraint)) {
                                set_error(s, r, "%s: %s", constraint_fields[i].field,
                                          constraint_fields[i].reason);
                                goto out;
                        }
        if (st && streq(st, "23502") && column)
                set_error(s, r, "%s: must not be null", column);
        else
                set_error(s, r, "%s: %s", what,
                          primary ? primary
                                  : (s && s->conn ? PQerrorMessage(s->conn) : "unknown error"));
out:
        snprintf(tls_sqlstate, sizeof(tls_sqlstate), "%s", st ? st : "");
        return r;
}

/* ---- connections ------------------------------------------------------------------------ */

char *pgstore_dsn_password(const char *dsn)
{
        char *found = NULL;
        PQconninfoOption *opts;

        if (strempty(dsn))
                return NULL;
        opts = PQconninfoParse(dsn, NULL);
        if (!opts)
                return NULL;
        for (PQconninfoOption *o = opts; o->keyword; o++)
                if (streq(o->keyword, "password") && !strempty(o->val)) {
                        found = strdup(o->val);
                        break;
                }
        PQconninfoFree(opts);
        return found;
}

static void ignore_notice(void *arg, const char *message)
{
}

PGconn *pgstore_open_conn(const char *dsn, int connect_timeout_s, const char *application_name,
                          char **ret_error)
{
        const char *keys[12], *vals[12];
        char timeout[16], user_timeout[24];
        size_t n = 0;

        snprintf(timeout, sizeof(timeout), "%d", connect_timeout_s);
        snprintf(user_timeout, sizeof(user_timeout), "%d", connect_timeout_s * 1000);
        /* Before the DSN: defaults it may override. After it: what the configuration decides. */
        keys[n] = "application_name", vals[n++] = application_name;
        if (!strempty(dsn))
                keys[n] = "dbname", vals[n++] = dsn;
        keys[n] = "connect_timeout", vals[n++] = timeout;
        keys[n] = "keepalives", vals[n++] = "1";
        keys[n] = "keepalives_idle", vals[n++] = "10";
        keys[n] = "keepalives_interval", vals[n++] = "5";
        keys[n] = "keepalives_count", vals[n++] = "3";
        keys[n] = "tcp_user_timeout", vals[n++] = user_timeout;
        keys[n] = NULL, vals[n] = NULL;

        PGconn *c = PQconnectdbParams(keys, vals, 1);
        if (c && PQstatus(c) == CONNECTION_OK) {
                PQsetNoticeProcessor(c, ignore_notice, NULL);
                return c;
        }
        /* libpq messages may echo connection details: take out both passwords it may know. */
        _cleanup_free_ char *dsn_pw = pgstore_dsn_password(dsn);
        const char *used_pw = c ? PQpass(c) : NULL;
        _cleanup_free_ char *msg = NULL, *once = NULL;
        if (c) {
                msg = strdup(PQerrorMessage(c));
                if (msg) {
                        size_t len = strlen(msg);
                        while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
                                msg[--len] = '\0';
                }
        }
        once = pgstore_scrub(msg ? msg : "out of memory", used_pw);
        *ret_error = once ? pgstore_scrub(once, dsn_pw) : NULL;
        PQfinish(c);
        return NULL;
}

struct pgstore *pgstore_new(const struct pgstore_options *opts)
{
        struct pgstore *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        pthread_mutex_init(&s->lock, NULL);
        s->dsn = strdup(opts->dsn ? opts->dsn : "");
        s->application_name = strdup(opts->application_name ? opts->application_name : "persistd");
        s->dsn_password = pgstore_dsn_password(s->dsn);
        s->connect_timeout_s = opts->connect_timeout_s > 0 ? opts->connect_timeout_s : 5;
        s->statement_timeout_ms = opts->statement_timeout_ms > 0 ? opts->statement_timeout_ms
                                                                 : s->connect_timeout_s * 1000;
        s->lock_timeout_ms = opts->lock_timeout_ms > 0 ? opts->lock_timeout_ms : 60000;
        if (!s->dsn || !s->application_name) {
                pgstore_free(s);
                return NULL;
        }
        return s;
}

void pgstore_free(struct pgstore *s)
{
        if (!s)
                return;
        PQfinish(s->conn);
        if (s->dsn)
                secret_free(s->dsn);
        if (s->dsn_password)
                secret_free(s->dsn_password);
        free(s->application_name);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

static void drop_conn(struct pgstore *s)
{
        PQfinish(s->conn);
        s->conn = NULL;
        atomic_store(&s->connected, false);
}

/* Run a parameterless statement on a fresh connection; no error detail (the caller reports). */
static int exec_simple(PGconn *c, const char *sql)
{
        PGresult *res = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -EIO;
}

static int session_timeouts(PGconn *c, int statement_timeout_ms)
{
        char sql[128];
        snprintf(sql, sizeof(sql), "SET statement_timeout = %d; SET lock_timeout = %d",
                 statement_timeout_ms, statement_timeout_ms);
        return exec_simple(c, sql);
}

/* With the lock held: a usable connection, or -ENOTCONN. `force` ignores the backoff. */
static int ensure_conn(struct pgstore *s, bool force)
{
        int64_t now = clock_mono_us();

        if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
                return 0;
        if (s->conn)
                drop_conn(s);
        if (!force && now < s->next_attempt_us)
                return set_error(s, -ENOTCONN,
                                 "PostgreSQL unreachable (%s); next attempt in %" PRId64 " ms",
                                 s->last_connect_error, (s->next_attempt_us - now) / 1000);

        if (s->connecting)
                return set_error(s, -ENOTCONN, "reconnecting to PostgreSQL");

        /*
         * Connect without the lock: against an unreachable host this takes connect_timeout_s,
         * and the other threads should fail fast meanwhile rather than queue behind it.
         */
        _cleanup_free_ char *err = NULL;
        s->connecting = true;
        pthread_mutex_unlock(&s->lock);
        PGconn *c = pgstore_open_conn(s->dsn, s->connect_timeout_s, s->application_name, &err);
        if (c && session_timeouts(c, s->statement_timeout_ms) < 0) {
                free(err);
                err = strdup("cannot set statement_timeout");
                PQfinish(c);
                c = NULL;
        }
        pthread_mutex_lock(&s->lock);
        s->connecting = false;
        if (!c) {
                s->backoff_us = s->backoff_us == 0 ? PGSTORE_BACKOFF_MIN_US
                                                   : MIN(s->backoff_us * 2, PGSTORE_BACKOFF_MAX_US);
                s->next_attempt_us = clock_mono_us() + s->backoff_us;
                pgstore_copy_utf8(s->last_connect_error, sizeof(s->last_connect_error),
                                  err ? err : "out of memory");
                atomic_store(&s->connected, false);
                return set_error(s, -ENOTCONN, "cannot connect to PostgreSQL: %s",
                                 s->last_connect_error);
        }
        s->conn = c;
        s->backoff_us = 0;
        s->next_attempt_us = 0;
        atomic_store(&s->connected, true);
        log_debug("connected to PostgreSQL");
        return 0;
}

int pgstore_connect(struct pgstore *s)
{
        clear_error();
        pthread_mutex_lock(&s->lock);
        int r = ensure_conn(s, true);
        pthread_mutex_unlock(&s->lock);
        return r;
}

bool pgstore_is_connected(struct pgstore *s)
{
        return atomic_load(&s->connected);
}

/* The statement failed with the connection gone: drop it so the next call reconnects. */
static int lost_conn(struct pgstore *s, const char *what)
{
        _cleanup_free_ char *msg = strdup(PQerrorMessage(s->conn));
        drop_conn(s);
        s->next_attempt_us = 0; /* the first reconnection is immediate; backoff after a failure */
        if (msg) {
                size_t len = strlen(msg);
                while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
                        msg[--len] = '\0';
        }
        return set_error(s, -ENOTCONN, "%s: connection to PostgreSQL lost: %s", what,
                         msg ? msg : "");
}

/*
 * With the lock held: run `sql` with `n` text parameters (NULL entries are SQL NULL). On success
 * *ret is the result (caller PQclears). `what` names the operation in error messages.
 */
static int query(struct pgstore *s, const char *what, const char *sql, int n,
                 const char *const *vals, PGresult **ret)
{
        int r = ensure_conn(s, false);
        if (r < 0)
                return r;
        PGresult *res = PQexecParams(s->conn, sql, n, NULL, vals, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
                *ret = res;
                return 0;
        }
        if (PQstatus(s->conn) != CONNECTION_OK) {
                PQclear(res);
                return lost_conn(s, what);
        }
        r = result_error(s, res, what);
        PQclear(res);
        if (r == -ENOTCONN) /* the server is shutting the session down (57P0x, 08xxx) */
                drop_conn(s);
        return r;
}

/* Parameters as text: up to 16 per statement, NULL for SQL NULL. */
struct params {
        const char *v[16];
        char buf[16][32];
        int n;
};

static void p_str(struct params *p, const char *s)
{
        p->v[p->n++] = s;
}

static void p_str_or_null(struct params *p, const char *s)
{
        p->v[p->n++] = strempty(s) ? NULL : s;
}

static void p_i64(struct params *p, int64_t v)
{
        snprintf(p->buf[p->n], sizeof(p->buf[p->n]), "%" PRId64, v);
        p->v[p->n] = p->buf[p->n];
        p->n++;
}

/* `v`, or NULL when it equals `null_value`. */
static void p_i64_or_null(struct params *p, int64_t v, int64_t null_value)
{
        if (v == null_value)
                p->v[p->n++] = NULL;
        else
                p_i64(p, v);
}

static void p_bool(struct params *p, bool b)
{
        p->v[p->n++] = b ? "t" : "f";
}

static void p_double(struct params *p, double d)
{
        snprintf(p->buf[p->n], sizeof(p->buf[p->n]), "%.17g", d);
        p->v[p->n] = p->buf[p->n];
        p->n++;
}

/* Lock, run, unlock; for the many one-statement functions. */
static int query_locked(struct pgstore *s, const char *what, const char *sql,
                        const struct params *p, PGresult **ret)
{
        clear_error();
        pthread_mutex_lock(&s->lock);
        int r = query(s, what, sql, p ? p->n : 0, p ? p->v : NULL, ret);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int pgstore_ping(struct pgstore *s)
{
        PGresult *res = NULL;
        int r = query_locked(s, "ping", "SELECT 1", NULL, &res);
        if (r < 0)
                return r;
        PQclear(res);
        return 0;
}

/* ---- reading result columns --------------------------------------------------------------- */

static int64_t col_i64(const PGresult *res, int row, int col, int64_t null_value)
{
        if (PQgetisnull(res, row, col))
                return null_value;
        return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static double col_double(const PGresult *res, int row, int col, double null_value)
{
        if (PQgetisnull(res, row, col))
                return null_value;
        return strtod(PQgetvalue(res, row, col), NULL);
}

static bool col_bool(const PGresult *res, int row, int col)
{
        return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

static void col_str(const PGresult *res, int row, int col, char *dst, size_t size)
{
        pgstore_copy_utf8(dst, size, PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

/* ---- enums -------------------------------------------------------------------------------- */

static const char *const action_names[] = {
    [PGSTORE_ACTION_BGSAVE] = "bgsave",
    [PGSTORE_ACTION_BGREWRITEAOF] = "bgrewriteaof",
};
static const char *const misfire_names[] = {
    [PGSTORE_MISFIRE_RUN_ONCE] = "run_once",
    [PGSTORE_MISFIRE_SKIP] = "skip",
};
static const char *const kind_names[] = {
    [PGSTORE_RUN_SCHEDULED] = "scheduled",
    [PGSTORE_RUN_NIGHTLY] = "nightly",
    [PGSTORE_RUN_MANUAL] = "manual",
    [PGSTORE_RUN_PERSIST] = "persist",
};
static const char *const state_names[] = {
    [PGSTORE_RUN_CLAIMED] = "claimed",     [PGSTORE_RUN_RUNNING] = "running",
    [PGSTORE_RUN_SUCCEEDED] = "succeeded", [PGSTORE_RUN_FAILED] = "failed",
    [PGSTORE_RUN_SKIPPED] = "skipped",     [PGSTORE_RUN_MISSED] = "missed",
    [PGSTORE_RUN_TIMED_OUT] = "timed_out",
};
static const char *const pass_state_names[] = {
    [PGSTORE_PASS_RUNNING] = "running",
    [PGSTORE_PASS_PAUSED] = "paused",
    [PGSTORE_PASS_FINISHED] = "finished",
    [PGSTORE_PASS_ABORTED] = "aborted",
};

static const char *name_of(const char *const *names, size_t n, int v)
{
        return v >= 0 && (size_t)v < n ? names[v] : "?";
}

static int parse_name(const char *const *names, size_t n, const char *s, int *ret)
{
        for (size_t i = 0; s && i < n; i++)
                if (streq(s, names[i])) {
                        *ret = (int)i;
                        return 0;
                }
        return -EINVAL;
}

/* NOLINTBEGIN(bugprone-macro-parentheses): `type` is a type name, it cannot be parenthesized */
#define DEFINE_ENUM_STRINGS(type, prefix, names)                                                   \
        const char *prefix##_to_string(type v)                                                     \
        {                                                                                          \
                return name_of(names, ELEMENTSOF(names), (int)v);                                  \
        }                                                                                          \
        int prefix##_from_string(const char *s, type *ret)                                         \
        {                                                                                          \
                int v, r = parse_name(names, ELEMENTSOF(names), s, &v);                            \
                if (r == 0)                                                                        \
                        *ret = (type)v;                                                            \
                return r;                                                                          \
        }                                                                                          \
        _Static_assert(1, "allows the trailing semicolon")
/* NOLINTEND(bugprone-macro-parentheses) */

DEFINE_ENUM_STRINGS(enum pgstore_action, pgstore_action, action_names);
DEFINE_ENUM_STRINGS(enum pgstore_misfire, pgstore_misfire, misfire_names);
DEFINE_ENUM_STRINGS(enum pgstore_run_kind, pgstore_run_kind, kind_names);
DEFINE_ENUM_STRINGS(enum pgstore_run_state, pgstore_run_state, state_names);
DEFINE_ENUM_STRINGS(enum pgstore_pass_state, pgstore_pass_state, pass_state_names);

bool pgstore_run_state_is_final(enum pgstore_run_state s)
{
        return s != PGSTORE_RUN_CLAIMED && s != PGSTORE_RUN_RUNNING;
}

/* ---- migrations --------------------------------------------------------------------------- */

static int current_version(struct pgstore *s, int *ret)
{
        PGresult *res = NULL;
        int r = query(s, "reading the schema version",
                      "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &res);
        if (r < 0)
                return r;
        bool exists = col_bool(res, 0, 0);
        PQclear(res);
        if (!exists) {
                *ret = 0;
                return 0;
        }
        r = query(s, "reading the schema version",
                  "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, &res);
        if (r < 0)
                return r;
        *ret = (int)col_i64(res, 0, 0, 0);
        PQclear(res);
        return 0;
}

int pgstore_schema_current(struct pgstore *s, int *ret_version)
{
        clear_error();
        pthread_mutex_lock(&s->lock);
        int r = current_version(s, ret_version);
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int simple(struct pgstore *s, const char *what, const char *sql)
{
        PGresult *res = NULL;
        int r = query(s, what, sql, 0, NULL, &res);
        if (r == 0)
                PQclear(res);
        return r;
}

/* With the lock held and the advisory lock taken: apply what is missing. */
static int apply_migrations(struct pgstore *s, int *ret_from, int *ret_to)
{
        int version, r;

        r = simple(s, "creating schema_migrations",
                   "CREATE TABLE IF NOT EXISTS schema_migrations (\n"
                   "  version integer PRIMARY KEY,\n"
                   "  name text NOT NULL,\n"
                   "  applied_at timestamptz NOT NULL DEFAULT now())");
        if (r < 0)
                return r;
        r = current_version(s, &version);
        if (r < 0)
                return r;
        *ret_from = version;
        if (version > pgstore_schema_version())
                return set_error(s, -ENOTSUP,
                                 "the database schema is at version %d, newer than this persistd "
                                 "(%s) knows (version %d): upgrade persistd",
                                 version, PERSISTD_VERSION, pgstore_schema_version());

        for (size_t i = 0; i < pgstore_migrations_count; i++) {
                const struct pgstore_migration *m = &pgstore_migrations[i];
                PGresult *res = NULL;
                struct params p = {0};
                char what[96];

                if (m->version <= version)
                        continue;
                snprintf(what, sizeof(what), "applying migration %d (%s)", m->version, m->name);
                r = simple(s, what, "BEGIN");
                if (r < 0)
                        return r;
                struct strbuf sb = STRBUF_INIT;
                for (size_t k = 0; m->sql[k]; k++)
                        strbuf_adds(&sb, m->sql[k]);
                _cleanup_free_ char *sql = strbuf_detach(&sb);
                if (!sql) {
                        (void)simple(s, what, "ROLLBACK");
                        return set_error(s, -ENOMEM, "out of memory");
                }
                /* No parameters and several statements: the simple query protocol. */
                res = PQexec(s->conn, sql);
                if (PQresultStatus(res) != PGRES_COMMAND_OK &&
                    PQresultStatus(res) != PGRES_TUPLES_OK) {
                        if (PQstatus(s->conn) != CONNECTION_OK) {
                                PQclear(res);
                                return lost_conn(s, what);
                        }
                        r = result_error(s, res, what);
                        PQclear(res);
                        (void)simple(s, what, "ROLLBACK");
                        return r;
                }
                PQclear(res);
                p_i64(&p, m->version);
                p_str(&p, m->name);
                r = query(s, what, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                          p.n, p.v, &res);
                if (r == 0) {
                        PQclear(res);
                        r = simple(s, what, "COMMIT");
                }
                if (r < 0) {
                        if (s->conn)
                                (void)simple(s, what, "ROLLBACK");
                        return r;
                }
                log_debug("applied migration %d (%s)", m->version, m->name);
                version = m->version;
        }
        *ret_to = version;
        return 0;
}

int pgstore_migrate(struct pgstore *s, int *ret_from, int *ret_to)
{
        char sql[128];
        int from = 0, to = 0, r;

        clear_error();
        pthread_mutex_lock(&s->lock);
        r = ensure_conn(s, true);
        if (r < 0)
                goto out;
        /* Waiting for the lock and running a migration may take longer than one statement. */
        if (session_timeouts(s->conn, s->lock_timeout_ms) < 0) {
                r = set_error(s, -EIO, "cannot set the migration timeouts");
                goto out;
        }
        r = simple(s, "taking the migration lock", "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")");
        if (r == 0) {
                r = apply_migrations(s, &from, &to);
                if (s->conn) {
                        /* Keep the first error; a failed unlock dies with the session anyway. */
                        char saved[sizeof(tls_errstr)], saved_state[sizeof(tls_sqlstate)];
                        memcpy(saved, tls_errstr, sizeof(saved));
                        memcpy(saved_state, tls_sqlstate, sizeof(saved_state));
                        (void)simple(s, "releasing the migration lock",
                                     "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")");
                        memcpy(tls_errstr, saved, sizeof(saved));
                        memcpy(tls_sqlstate, saved_state, sizeof(saved_state));
                }
        } else if (r == -ETIMEDOUT) {
                set_error(s, r, "timed out after %d ms waiting for another replica's migration",
                          s->lock_timeout_ms);
        }
        if (s->conn) {
                snprintf(sql, sizeof(sql), "SET statement_timeout = %d; SET lock_timeout = %d",
                         s->statement_timeout_ms, s->statement_timeout_ms);
                if (exec_simple(s->conn, sql) < 0)
                        drop_conn(s);
        }
out:
        pthread_mutex_unlock(&s->lock);
        if (r == 0) {
                if (ret_from)
                        *ret_from = from;
                if (ret_to)
                        *ret_to = to;
        }
        return r;
}

/* ---- fencing ---------------------------------------------------------------------------- */

int pgstore_epoch_bump(struct pgstore *s, const char *identity, int64_t *ret_epoch)
{
        struct params p = {0};
        PGresult *res = NULL;

        p_str(&p, identity);
        int r =
            query_locked(s, "bumping the leader epoch",
                         "INSERT INTO leader_epoch AS l (id, epoch, leader_identity, acquired_at)"
                         " VALUES (1, 1, $1, now())"
                         " ON CONFLICT (id) DO UPDATE SET epoch = l.epoch + 1,"
                         "   leader_identity = excluded.leader_identity, acquired_at = now()"
                         " RETURNING epoch",
                         &p, &res);
        if (r < 0)
                return r;
        *ret_epoch = col_i64(res, 0, 0, 0);
        PQclear(res);
        return 0;
}

int pgstore_epoch_get(struct pgstore *s, int64_t *ret_epoch, char *identity)
{
        PGresult *res = NULL;
        int r = query_locked(s, "reading the leader epoch",
                             "SELECT epoch, leader_identity FROM leader_epoch WHERE id = 1", NULL,
                             &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return set_error(s, -ENOENT, "leader_epoch has no row (run persistd migrate)");
        }
        *ret_epoch = col_i64(res, 0, 0, 0);
        if (identity)
                col_str(res, 0, 1, identity, PGSTORE_IDENTITY_MAX);
        PQclear(res);
        return 0;
}

static int deposed(struct pgstore *s, int64_t epoch, int64_t current)
{
        return set_error(s, -ESTALE,
                         "deposed: the leader epoch is %" PRId64 ", this replica's is %" PRId64,
                         current, epoch);
}

/* ---- runs ------------------------------------------------------------------------------- */

#define RUN_COLS                                                                                   \
        "r.id, r.task_id, r.instance_id, r.pass_id, r.kind, r.action, "                            \
        "(extract(epoch from r.scheduled_for) * 1000000)::bigint, "                                \
        "r.state, r.epoch, r.leader_identity, r.request_id, "                                      \
        "(extract(epoch from r.claimed_at) * 1000000)::bigint, "                                   \
        "(extract(epoch from r.planned_start) * 1000000)::bigint, "                                \
        "(extract(epoch from r.started_at) * 1000000)::bigint, "                                   \
        "(extract(epoch from r.finished_at) * 1000000)::bigint, "                                  \
        "r.used_memory, r.estimated_duration_ms, r.actual_duration_ms, r.rdb_saves_before, "       \
        "r.rdb_saves_after, r.lastsave_before, r.lastsave_after, r.error"
#define RUN_NCOLS 23

static void decode_run(const PGresult *res, int row, struct pgstore_run *run)
{
        int v;

        memset(run, 0, sizeof(*run));
        run->id = col_i64(res, row, 0, 0);
        run->task_id = col_i64(res, row, 1, 0);
        col_str(res, row, 2, run->instance_id, sizeof(run->instance_id));
        run->pass_id = col_i64(res, row, 3, 0);
        if (parse_name(kind_names, ELEMENTSOF(kind_names), PQgetvalue(res, row, 4), &v) == 0)
                run->kind = (enum pgstore_run_kind)v;
        if (parse_name(action_names, ELEMENTSOF(action_names), PQgetvalue(res, row, 5), &v) == 0)
                run->action = (enum pgstore_action)v;
        run->scheduled_for = col_i64(res, row, 6, 0);
        if (parse_name(state_names, ELEMENTSOF(state_names), PQgetvalue(res, row, 7), &v) == 0)
                run->state = (enum pgstore_run_state)v;
        run->epoch = col_i64(res, row, 8, 0);
        col_str(res, row, 9, run->leader_identity, sizeof(run->leader_identity));
        col_str(res, row, 10, run->request_id, sizeof(run->request_id));
        run->claimed_at = col_i64(res, row, 11, 0);
        run->planned_start = col_i64(res, row, 12, 0);
        run->started_at = col_i64(res, row, 13, 0);
        run->finished_at = col_i64(res, row, 14, 0);
        run->used_memory = col_i64(res, row, 15, -1);
        run->estimated_duration_ms = col_i64(res, row, 16, -1);
        run->actual_duration_ms = col_i64(res, row, 17, -1);
        run->rdb_saves_before = col_i64(res, row, 18, -1);
        run->rdb_saves_after = col_i64(res, row, 19, -1);
        run->lastsave_before = col_i64(res, row, 20, -1);
        run->lastsave_after = col_i64(res, row, 21, -1);
        col_str(res, row, 22, run->error, sizeof(run->error));
}

/* Every row of `res` as runs: *ret caller frees. */
static int decode_runs(struct pgstore *s, PGresult *res, struct pgstore_run **ret, size_t *ret_n)
{
        size_t n = (size_t)PQntuples(res);
        struct pgstore_run *runs = NULL;

        if (n > 0) {
                runs = calloc(n, sizeof(*runs));
                if (!runs) {
                        PQclear(res);
                        return set_error(s, -ENOMEM, "out of memory");
                }
        }
        for (size_t i = 0; i < n; i++)
                decode_run(res, (int)i, &runs[i]);
        PQclear(res);
        *ret = runs;
        *ret_n = n;
        return 0;
}

int pgstore_run_claim(struct pgstore *s, int64_t epoch, const char *identity, int64_t task_id,
                      int64_t scheduled_for, int64_t planned_start, int64_t estimated_duration_ms,
                      enum pgstore_claim_result *ret_result, int64_t *ret_run_id)
{
        struct params p = {0};
        PGresult *res = NULL;

        p_i64(&p, epoch);
        p_str(&p, identity);
        p_i64(&p, task_id);
        p_i64(&p, scheduled_for);
        p_i64_or_null(&p, planned_start, 0);
        p_i64_or_null(&p, estimated_duration_ms, -1);
        int r = query_locked(
            s, "claiming a slot",
            FENCE ", ins AS ("
                  "INSERT INTO runs (task_id, instance_id, kind, action, scheduled_for, state,"
                  "  epoch, leader_identity, planned_start, estimated_duration_ms)"
                  " SELECT t.id, t.instance_id, 'scheduled', t.action, " TS4 ", 'claimed',"
                  "  $1::bigint, $2::text, " TS5 ", $6::bigint"
                  " FROM tasks t, e WHERE t.id = $3::bigint AND e.epoch = $1::bigint"
                  " ON CONFLICT (task_id, scheduled_for) DO NOTHING RETURNING id)"
                  " SELECT (SELECT epoch FROM e), (SELECT id FROM ins),"
                  "  EXISTS (SELECT 1 FROM tasks WHERE id = $3::bigint)",
            &p, &res);
        if (r < 0)
                return r;
        int64_t current = col_i64(res, 0, 0, -1), run_id = col_i64(res, 0, 1, 0);
        bool task_exists = col_bool(res, 0, 2);
        PQclear(res);
        if (current != epoch)
                return deposed(s, epoch, current);
        if (run_id == 0 && !task_exists)
                return set_error(s, -ENOENT, "task %" PRId64 ": no such task", task_id);
        *ret_result = run_id != 0 ? PGSTORE_CLAIMED : PGSTORE_CLAIM_EXISTS;
        if (ret_run_id)
                *ret_run_id = run_id;
        return 0;
}

/* With the lock held. */
static int run_get_unlocked(struct pgstore *s, int64_t run_id, struct pgstore_run *ret)
{
        struct params p = {0};
        PGresult *res = NULL;

        p_i64(&p, run_id);
        int r = query(s, "reading a run", "SELECT " RUN_COLS " FROM runs r WHERE r.id = $1", p.n,
                      p.v, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return set_error(s, -ENOENT, "run %" PRId64 ": no such run", run_id);
        }
        decode_run(res, 0, ret);
        PQclear(res);
        return 0;
}

int pgstore_run_get(struct pgstore *s, int64_t run_id, struct pgstore_run *ret)
{
        clear_error();
        pthread_mutex_lock(&s->lock);
        int r = run_get_unlocked(s, run_id, ret);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int pgstore_run_create(struct pgstore *s, int64_t epoch, const char *identity,
                       const struct pgstore_run_new *run, struct pgstore_run *ret,
                       bool *ret_existed)
{
        struct params p = {0};
        PGresult *res = NULL;
        int r;

        clear_error();
        if (run->kind == PGSTORE_RUN_SCHEDULED || (unsigned)run->kind >= PGSTORE_RUN_KIND_COUNT)
                return set_error(s, -EINVAL, "kind: must be nightly, manual or persist");
        if ((unsigned)run->action >= ELEMENTSOF(action_names))
                return set_error(s, -EINVAL, "action: must be \"bgsave\" or \"bgrewriteaof\"");
        if (strempty(run->instance_id))
                return set_error(s, -EINVAL, "instance_id: must not be empty");

        p_i64(&p, epoch);
        p_str(&p, identity);
        p_i64_or_null(&p, run->task_id, 0);
        p_str(&p, run->instance_id);
        p_i64_or_null(&p, run->pass_id, 0);
        p_str(&p, kind_names[run->kind]);
        p_str(&p, action_names[run->action]);
        p_str_or_null(&p, run->request_id);
        p_i64_or_null(&p, run->planned_start, 0);
        p_i64_or_null(&p, run->estimated_duration_ms, -1);

        pthread_mutex_lock(&s->lock);
        r = query(s, "recording a run",
                  FENCE
                  ", ins AS ("
                  "INSERT INTO runs (task_id, instance_id, pass_id, kind, action, state, epoch,"
                  "  leader_identity, request_id, planned_start, estimated_duration_ms)"
                  " SELECT $3::bigint, $4::text, $5::bigint, $6::text, $7::text, 'claimed',"
                  "  $1::bigint, $2::text, $8::text, " TS9 ", $10::bigint"
                  " FROM e WHERE e.epoch = $1::bigint"
                  " ON CONFLICT DO NOTHING RETURNING id)"
                  " SELECT (SELECT epoch FROM e), (SELECT id FROM ins)",
                  p.n, p.v, &res);
        if (r < 0)
                goto out;
        int64_t current = col_i64(res, 0, 0, -1), run_id = col_i64(res, 0, 1, 0);
        PQclear(res);
        if (current != epoch) {
                r = deposed(s, epoch, current);
                goto out;
        }
        if (run_id != 0) {
                r = run_get_unlocked(s, run_id, ret);
                if (r == 0 && ret_existed)
                        *ret_existed = false;
                goto out;
        }
        if (strempty(run->request_id)) {
                r = set_error(s, -EEXIST, "the run conflicts with an existing one");
                goto out;
        }
        struct params q = {0};
        p_str(&q, run->request_id);
        p_str(&q, run->instance_id);
        r = query(s, "reading a run by request id",
                  "SELECT " RUN_COLS " FROM runs r WHERE r.request_id = $1 AND r.instance_id = $2",
                  q.n, q.v, &res);
        if (r < 0)
                goto out;
        if (PQntuples(res) != 1) {
                PQclear(res);
                r = set_error(s, -EEXIST, "request_id: conflicts with a run that is gone");
                goto out;
        }
        decode_run(res, 0, ret);
        PQclear(res);
        if (ret_existed)
                *ret_existed = true;
out:
        pthread_mutex_unlock(&s->lock);
        return r;
}

/*
 * A fenced UPDATE of one row of `table`: `update` is an UPDATE ... RETURNING id that uses $1 as
 * the epoch and $2 as the row id, and must include "AND (SELECT epoch FROM e) = $1::bigint".
 * Tells apart deposed (-ESTALE), no such row (-ENOENT) and a row in another state (-EALREADY).
 */
static int fenced_update(struct pgstore *s, const char *what, const char *sql,
                         const struct params *p, int64_t epoch, int64_t id)
{
        PGresult *res = NULL;
        int r = query_locked(s, what, sql, p, &res);
        if (r < 0)
                return r;
        int64_t current = col_i64(res, 0, 0, -1), updated = col_i64(res, 0, 1, 0);
        bool exists = !PQgetisnull(res, 0, 2);
        _cleanup_free_ char *state = exists ? strdup(PQgetvalue(res, 0, 2)) : NULL;
        int64_t row_epoch = col_i64(res, 0, 3, 0);
        PQclear(res);
        if (current != epoch)
                return deposed(s, epoch, current);
        if (updated > 0)
                return 0;
        if (!exists)
                return set_error(s, -ENOENT, "%s: %" PRId64 " does not exist", what, id);
        return set_error(s, -EALREADY, "%s: %" PRId64 " is %s under epoch %" PRId64, what, id,
                         state ? state : "?", row_epoch);
}

#define FENCED_RUN_TAIL                                                                            \
        " SELECT (SELECT epoch FROM e), (SELECT count(*) FROM u),"                                 \
        "  (SELECT state FROM runs WHERE id = $2::bigint),"                                        \
        "  (SELECT epoch FROM runs WHERE id = $2::bigint)"

int pgstore_run_start(struct pgstore *s, int64_t epoch, int64_t run_id,
                      const struct pgstore_run_start *start)
{
        struct params p = {0};

        p_i64(&p, epoch);
        p_i64(&p, run_id);
        p_i64(&p, start->started_at);
        p_i64_or_null(&p, start->planned_start, 0);
        p_i64_or_null(&p, start->rdb_saves_before, -1);
        p_i64_or_null(&p, start->lastsave_before, -1);
        p_i64_or_null(&p, start->used_memory, -1);
        p_i64_or_null(&p, start->estimated_duration_ms, -1);
        return fenced_update(s, "starting run",
                             FENCE ", u AS (UPDATE runs SET state = 'running', started_at = " TS3
                                   ","
                                   "  planned_start = coalesce(" TS4 ", planned_start),"
                                   "  rdb_saves_before = $5::bigint, lastsave_before = $6::bigint,"
                                   "  used_memory = $7::bigint,"
                                   "  estimated_duration_ms = coalesce($8::bigint, "
                                   "estimated_duration_ms)"
                                   " WHERE id = $2::bigint AND epoch = $1::bigint"
                                   "  AND state IN ('claimed', 'running')"
                                   "  AND (SELECT epoch FROM e) = $1::bigint RETURNING "
                                   "id)" FENCED_RUN_TAIL,
                             &p, epoch, run_id);
}

int pgstore_run_finish(struct pgstore *s, int64_t epoch, int64_t run_id,
                       const struct pgstore_run_finish *finish)
{
        struct params p = {0};
        char error[PGSTORE_ERROR_MAX];

        clear_error();
        if ((unsigned)finish->state >= PGSTORE_RUN_STATE_COUNT ||
            !pgstore_run_state_is_final(finish->state))
                return set_error(s, -EINVAL, "state: \"%s\" is not a final state",
                                 pgstore_run_state_to_string(finish->state));
        pgstore_copy_utf8(error, sizeof(error), finish->error ? finish->error : "");
        p_i64(&p, epoch);
        p_i64(&p, run_id);
        p_str(&p, state_names[finish->state]);
        p_str_or_null(&p, error);
        p_i64(&p, finish->finished_at);
        p_i64_or_null(&p, finish->rdb_saves_after, -1);
        p_i64_or_null(&p, finish->lastsave_after, -1);
        p_i64_or_null(&p, finish->used_memory, -1);
        p_i64_or_null(&p, finish->actual_duration_ms, -1);
        return fenced_update(
            s, "finishing run",
            FENCE ", u AS (UPDATE runs SET state = $3::text, error = $4::text,"
                  "  finished_at = greatest(" TS5 ", started_at),"
                  "  rdb_saves_after = $6::bigint, lastsave_after = $7::bigint,"
                  "  used_memory = coalesce($8::bigint, used_memory),"
                  "  actual_duration_ms = $9::bigint"
                  " WHERE id = $2::bigint AND epoch = $1::bigint"
                  "  AND state IN ('claimed', 'running')"
                  "  AND (SELECT epoch FROM e) = $1::bigint RETURNING id)" FENCED_RUN_TAIL,
            &p, epoch, run_id);
}

int pgstore_run_adopt(struct pgstore *s, int64_t epoch, const char *identity, int64_t run_id)
{
        struct params p = {0};

        p_i64(&p, epoch);
        p_i64(&p, run_id);
        p_str(&p, identity);
        return fenced_update(
            s, "adopting run",
            FENCE ", u AS (UPDATE runs SET epoch = $1::bigint,"
                  "  leader_identity = $3::text"
                  " WHERE id = $2::bigint AND epoch < $1::bigint"
                  "  AND state IN ('claimed', 'running')"
                  "  AND (SELECT epoch FROM e) = $1::bigint RETURNING id)" FENCED_RUN_TAIL,
            &p, epoch, run_id);
}

int pgstore_runs_slots(struct pgstore *s, int64_t from, int64_t to, struct pgstore_slot **ret,
                       size_t *ret_n)
{
        struct params p = {0};
        PGresult *res = NULL;
        int v;

        p_i64(&p, from);
        p_i64(&p, to);
        int r = query_locked(s, "reading recorded slots",
                             "SELECT task_id, "
                             "(extract(epoch from scheduled_for) * 1000000)::bigint"
                             ", id, epoch, state FROM runs"
                             " WHERE kind = 'scheduled' AND task_id IS NOT NULL"
                             "  AND scheduled_for >= " TS1 " AND scheduled_for < " TS2
                             " ORDER BY scheduled_for, task_id",
                             &p, &res);
        if (r < 0)
                return r;
        size_t n = (size_t)PQntuples(res);
        struct pgstore_slot *slots = n > 0 ? calloc(n, sizeof(*slots)) : NULL;
        if (n > 0 && !slots) {
                PQclear(res);
                return set_error(s, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                slots[i].task_id = col_i64(res, (int)i, 0, 0);
                slots[i].scheduled_for = col_i64(res, (int)i, 1, 0);
                slots[i].run_id = col_i64(res, (int)i, 2, 0);
                slots[i].epoch = col_i64(res, (int)i, 3, 0);
                if (parse_name(state_names, ELEMENTSOF(state_names), PQgetvalue(res, (int)i, 4),
                               &v) == 0)
                        slots[i].state = (enum pgstore_run_state)v;
        }
        PQclear(res);
        *ret = slots;
        *ret_n = n;
        return 0;
}

int pgstore_runs_stale(struct pgstore *s, int64_t epoch, struct pgstore_run **ret, size_t *ret_n)
{
        struct params p = {0};
        PGresult *res = NULL;

        p_i64(&p, epoch);
        int r = query_locked(s, "reading runs of older epochs",
                             "SELECT " RUN_COLS " FROM runs r"
                             " WHERE r.state IN ('claimed', 'running') AND r.epoch < $1::bigint"
                             " ORDER BY r.id",
                             &p, &res);
        return r < 0 ? r : decode_runs(s, res, ret, ret_n);
}

int pgstore_last_success(struct pgstore *s, const char *instance_id, struct pgstore_run *ret)
{
        struct params p = {0};
        PGresult *res = NULL;

        p_str(&p, instance_id);
        int r = query_locked(s, "reading the last successful save",
                             "SELECT " RUN_COLS " FROM runs r"
                             " WHERE r.instance_id = $1 AND r.state = 'succeeded'"
                             " ORDER BY r.finished_at DESC LIMIT 1",
                             &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return set_error(s, -ENOENT, "instance \"%s\" has no successful save", instance_id);
        }
        decode_run(res, 0, ret);
        PQclear(res);
        return 0;
}

int pgstore_runs_query(struct pgstore *s, const struct pgstore_run_filter *f,
                       struct pgstore_run **ret, size_t *ret_n)
{
        struct params p = {0};
        PGresult *res = NULL;
        size_t limit = f->limit == 0 ? 100 : f->limit;

        clear_error();
        if (limit > 1000)
                return set_error(s, -EINVAL, "limit: must be between 1 and 1000");
        if (f->kind >= PGSTORE_RUN_KIND_COUNT || f->kind < -1)
                return set_error(s, -EINVAL, "kind: unknown run kind");
        if (f->state >= PGSTORE_RUN_STATE_COUNT || f->state < -1)
                return set_error(s, -EINVAL, "state: unknown run state");
        p_i64_or_null(&p, f->task_id, 0);
        p_str_or_null(&p, f->instance_id);
        p_str(&p, f->kind >= 0 ? kind_names[f->kind] : NULL);
        p_str(&p, f->state >= 0 ? state_names[f->state] : NULL);
        p_i64_or_null(&p, f->from, 0);
        p_i64_or_null(&p, f->to, 0);
        p_i64_or_null(&p, f->before_id, 0);
        p_i64(&p, (int64_t)limit);
        int r = query_locked(s, "querying runs",
                             "SELECT " RUN_COLS " FROM runs r"
                             " WHERE ($1::bigint IS NULL OR r.task_id = $1::bigint)"
                             "  AND ($2::text IS NULL OR r.instance_id = $2::text)"
                             "  AND ($3::text IS NULL OR r.kind = $3::text)"
                             "  AND ($4::text IS NULL OR r.state = $4::text)"
                             "  AND ($5::bigint IS NULL OR r.claimed_at >= " TS5 ")"
                             "  AND ($6::bigint IS NULL OR r.claimed_at < " TS6 ")"
                             "  AND ($7::bigint IS NULL OR r.id < $7::bigint)"
                             " ORDER BY r.id DESC LIMIT $8::bigint",
                             &p, &res);
        return r < 0 ? r : decode_runs(s, res, ret, ret_n);
}

int pgstore_runs_delete_older(struct pgstore *s, int64_t max_age_s, int batch, int *ret_deleted)
{
        struct params p = {0};
        PGresult *res = NULL;

        clear_error();
        if (batch < 1 || batch > 100000 || max_age_s < 0)
                return set_error(s, -EINVAL, "retention: batch must be 1..100000, age >= 0");
        p_i64(&p, max_age_s);
        p_i64(&p, batch);
        int r = query_locked(s, "deleting old runs",
                             "WITH d AS (DELETE FROM runs WHERE id IN ("
                             "  SELECT id FROM runs"
                             "   WHERE claimed_at < now() - $1::bigint * interval '1 second'"
                             "     AND state NOT IN ('claimed', 'running')"
                             "   ORDER BY claimed_at LIMIT $2::bigint) RETURNING 1)"
                             " SELECT count(*) FROM d",
                             &p, &res);
        if (r < 0)
                return r;
        *ret_deleted = (int)col_i64(res, 0, 0, 0);
        PQclear(res);
        return 0;
}

/* ---- streaming rows --------------------------------------------------------------------- */

typedef int (*row_fn)(const PGresult *res, int row, void *userdata);

/*
 * With the lock held: run `sql` in single-row mode, calling `fn` per row. A non-zero return of
 * `fn` stops the callbacks; the remaining rows are still read (the protocol needs it).
 */
static int stream(struct pgstore *s, const char *what, const char *sql, const struct params *p,
                  row_fn fn, void *userdata)
{
        int r = ensure_conn(s, false), stop = 0, failed = 0;
        PGresult *res = NULL;

        if (r < 0)
                return r;
        if (!PQsendQueryParams(s->conn, sql, p->n, NULL, p->v, NULL, NULL, 0))
                return lost_conn(s, what);
        if (!PQsetSingleRowMode(s->conn))
                log_debug("single-row mode refused for %s", what);
        while ((res = PQgetResult(s->conn))) {
                ExecStatusType st = PQresultStatus(res);
                if (st == PGRES_SINGLE_TUPLE) {
                        if (stop == 0 && failed == 0)
                                stop = fn(res, 0, userdata);
                } else if (st == PGRES_TUPLES_OK) {
                        for (int i = 0; i < PQntuples(res) && stop == 0 && failed == 0; i++)
                                stop = fn(res, i, userdata); /* without single-row mode */
                } else if (failed == 0) {
                        failed = PQstatus(s->conn) != CONNECTION_OK ? -ENOTCONN
                                                                    : result_error(s, res, what);
                }
                PQclear(res);
        }
        if (PQstatus(s->conn) != CONNECTION_OK)
                return lost_conn(s, what);
        if (failed < 0)
                return failed;
        return stop > 0 ? -stop : stop;
}

#define TASK_COLS                                                                                  \
        "t.id, t.instance_id, t.action, t.schedule, t.enabled, t.misfire_policy, "                 \
        "t.starting_deadline_s, t.description, t.invalid_reason, "                                 \
        "(extract(epoch from t.created_at) * 1000000)::bigint, "                                   \
        "(extract(epoch from t.updated_at) * 1000000)::bigint, i.pool, i.enabled"

static void decode_task(const PGresult *res, int row, struct pgstore_task *t)
{
        int v;

        memset(t, 0, sizeof(*t));
        t->id = col_i64(res, row, 0, 0);
        col_str(res, row, 1, t->instance_id, sizeof(t->instance_id));
        if (parse_name(action_names, ELEMENTSOF(action_names), PQgetvalue(res, row, 2), &v) == 0)
                t->action = (enum pgstore_action)v;
        col_str(res, row, 3, t->schedule, sizeof(t->schedule));
        t->enabled = col_bool(res, row, 4);
        if (parse_name(misfire_names, ELEMENTSOF(misfire_names), PQgetvalue(res, row, 5), &v) == 0)
                t->misfire = (enum pgstore_misfire)v;
        t->starting_deadline_s = (int)col_i64(res, row, 6, 0);
        col_str(res, row, 7, t->description, sizeof(t->description));
        col_str(res, row, 8, t->invalid_reason, sizeof(t->invalid_reason));
        t->created_at = col_i64(res, row, 9, 0);
        t->updated_at = col_i64(res, row, 10, 0);
        col_str(res, row, 11, t->pool, sizeof(t->pool));
        t->instance_enabled = col_bool(res, row, 12);
}

struct task_stream {
        pgstore_task_fn fn;
        void *userdata;
        struct pgstore_task task;
};

static int task_row(const PGresult *res, int row, void *userdata)
{
        struct task_stream *ts = userdata;
        decode_task(res, row, &ts->task);
        return ts->fn(&ts->task, ts->userdata);
}

int pgstore_tasks_foreach(struct pgstore *s, const struct pgstore_task_filter *filter,
                          pgstore_task_fn fn, void *userdata)
{
        struct params p = {0};
        struct task_stream *ts = calloc(1, sizeof(*ts));

        clear_error();
        if (!ts)
                return set_error(s, -ENOMEM, "out of memory");
        ts->fn = fn;
        ts->userdata = userdata;
        p_bool(&p, filter && filter->enabled_only);
        p_str(&p, filter ? filter->instance_id : NULL);
        pthread_mutex_lock(&s->lock);
        int r = stream(s, "loading tasks",
                       "SELECT " TASK_COLS " FROM tasks t JOIN instances i ON i.id = t.instance_id"
                       " WHERE (NOT $1::bool OR (t.enabled AND i.enabled))"
                       "  AND ($2::text IS NULL OR t.instance_id = $2::text)"
                       " ORDER BY t.id",
                       &p, task_row, ts);
        pthread_mutex_unlock(&s->lock);
        free(ts);
        return r;
}

int pgstore_task_get(struct pgstore *s, int64_t id, struct pgstore_task *ret)
{
        struct params p = {0};
        PGresult *res = NULL;

        p_i64(&p, id);
        int r = query_locked(s, "reading a task",
                             "SELECT " TASK_COLS " FROM tasks t JOIN instances i"
                             " ON i.id = t.instance_id WHERE t.id = $1::bigint",
                             &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return set_error(s, -ENOENT, "task %" PRId64 ": no such task", id);
        }
        decode_task(res, 0, ret);
        PQclear(res);
        return 0;
}

/* The writable fields of a task as parameters $2.. ($1 is the id). -EINVAL on bad enums. */
static int task_params(struct pgstore *s, const struct pgstore_task *t, struct params *p)
{
        if ((unsigned)t->action >= ELEMENTSOF(action_names))
                return set_error(s, -EINVAL, "action: must be \"bgsave\" or \"bgrewriteaof\"");
        if ((unsigned)t->misfire >= ELEMENTSOF(misfire_names))
                return set_error(s, -EINVAL, "misfire_policy: must be \"run_once\" or \"skip\"");
        if (strempty(t->instance_id))
                return set_error(s, -EINVAL, "instance_id: must not be empty");
        p_i64_or_null(p, t->id, 0);
        p_str(p, t->instance_id);
        p_str(p, action_names[t->action]);
        p_str(p, t->schedule);
        p_bool(p, t->enabled);
        p_str(p, misfire_names[t->misfire]);
        p_i64(p, t->starting_deadline_s);
        p_str(p, t->description);
        return 0;
}

int pgstore_task_create(struct pgstore *s, const struct pgstore_task *task, int64_t *ret_id)
{
        struct params p = {0};
        PGresult *res = NULL;

        clear_error();
        int r = task_params(s, task, &p);
        if (r < 0)
                return r;
        r = query_locked(s, "creating a task",
                         task->id != 0
                             ? "INSERT INTO tasks (id, instance_id, action, schedule, enabled,"
                               " misfire_policy, starting_deadline_s, description)"
                               " OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                               " RETURNING id"
                             : "INSERT INTO tasks (instance_id, action, schedule, enabled,"
                               " misfire_policy, starting_deadline_s, description)"
                               " SELECT $2, $3, $4, $5, $6, $7, $8 WHERE $1::bigint IS NULL"
                               " RETURNING id",
                         &p, &res);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = col_i64(res, 0, 0, 0);
        PQclear(res);
        return 0;
}

int pgstore_task_update(struct pgstore *s, const struct pgstore_task *task)
{
        struct params p = {0};
        PGresult *res = NULL;

        clear_error();
        int r = task_params(s, task, &p);
        if (r < 0)
                return r;
        r = query_locked(s, "updating a task",
                         "UPDATE tasks SET instance_id = $2, action = $3, schedule = $4,"
                         " enabled = $5, misfire_policy = $6, starting_deadline_s = $7,"
                         " description = $8 WHERE id = $1::bigint",
                         &p, &res);
        if (r < 0)
                return r;
        bool found = strcmp(PQcmdTuples(res), "0") != 0;
        PQclear(res);
        return found ? 0 : set_error(s, -ENOENT, "task %" PRId64 ": no such task", task->id);
}

int pgstore_task_delete(struct pgstore *s, int64_t id)
{
        struct params p = {0};
        PGresult *res = NULL;

        p_i64(&p, id);
        int r =
            query_locked(s, "deleting a task", "DELETE FROM tasks WHERE id = $1::bigint", &p, &res);
        if (r < 0)
                return r;
        bool found = strcmp(PQcmdTuples(res), "0") != 0;
        PQclear(res);
        return found ? 0 : set_error(s, -ENOENT, "task %" PRId64 ": no such task", id);
}

static int set_invalid(struct pgstore *s, const char *what, const char *sql, const char *id,
                       const char *reason)
{
        struct params p = {0};
        char buf[PGSTORE_REASON_MAX];
        PGresult *res = NULL;

        pgstore_copy_utf8(buf, sizeof(buf), reason ? reason : "");
        p_str(&p, id);
        p_str_or_null(&p, reason ? buf : NULL);
        int r = query_locked(s, what, sql, &p, &res);
        if (r < 0)
                return r;
        bool exists = col_bool(res, 0, 0);
        PQclear(res);
        return exists ? 0 : set_error(s, -ENOENT, "%s: \"%s\" does not exist", what, id);
}

int pgstore_task_set_invalid(struct pgstore *s, int64_t id, const char *reason)
{
        char buf[24];
        snprintf(buf, sizeof(buf), "%" PRId64, id);
        return set_invalid(s, "flagging a task",
                           "WITH u AS (UPDATE tasks SET invalid_reason = $2::text,"
                           "  invalid_since = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END"
                           " WHERE id = $1::bigint AND invalid_reason IS DISTINCT FROM $2::text"
                           " RETURNING 1)"
                           " SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1::bigint)",
                           buf, reason);
}

int pgstore_instance_set_invalid(struct pgstore *s, const char *id, const char *reason)
{
        return set_invalid(s, "flagging an instance",
                           "WITH u AS (UPDATE instances SET invalid_reason = $2::text,"
                           "  invalid_since = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END"
                           " WHERE id = $1::text AND invalid_reason IS DISTINCT FROM $2::text"
                           " RETURNING 1)"
                           " SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1::text)",
                           id, reason);
}

int pgstore_unusable_count(struct pgstore *s, int *ret_tasks, int *ret_instances)
{
        PGresult *res = NULL;
        int r = query_locked(s, "counting unusable rows",
                             "SELECT count(*) FILTER (WHERE kind = 'task'),"
                             " count(*) FILTER (WHERE kind = 'instance') FROM unusable_rows",
                             NULL, &res);
        if (r < 0)
                return r;
        *ret_tasks = (int)col_i64(res, 0, 0, 0);
        *ret_instances = (int)col_i64(res, 0, 1, 0);
        PQclear(res);
        return 0;
}

/* ---- instances -------------------------------------------------------------------------- */

#define INSTANCE_COLS                                                                              \
        "id, host, port, pod_namespace, pod_name, username, password, "                            \
        "password_secret_namespace, password_secret_name, password_secret_key, pool, enabled, "    \
        "write_rate_bytes_s, fork_ms_per_gb, estimate_samples, redis_version, can_bgsave, "        \
        "can_bgrewriteaof, can_config, save_disabled, "                                            \
        "(extract(epoch from capabilities_at) * 1000000)::bigint, invalid_reason, "                \
        "(extract(epoch from created_at) * 1000000)::bigint, "                                     \
        "(extract(epoch from updated_at) * 1000000)::bigint, "                                     \
        "(SELECT r.used_memory FROM runs r WHERE r.instance_id = instances.id"                     \
        "  AND r.state = 'succeeded' AND r.used_memory IS NOT NULL"                                \
        "  ORDER BY r.finished_at DESC LIMIT 1)"

static void decode_instance(const PGresult *res, int row, struct pgstore_instance *in)
{
        memset(in, 0, sizeof(*in));
        col_str(res, row, 0, in->id, sizeof(in->id));
        col_str(res, row, 1, in->host, sizeof(in->host));
        in->port = (int)col_i64(res, row, 2, 0);
        col_str(res, row, 3, in->pod_namespace, sizeof(in->pod_namespace));
        col_str(res, row, 4, in->pod_name, sizeof(in->pod_name));
        col_str(res, row, 5, in->username, sizeof(in->username));
        col_str(res, row, 6, in->password, sizeof(in->password));
        col_str(res, row, 7, in->secret_namespace, sizeof(in->secret_namespace));
        col_str(res, row, 8, in->secret_name, sizeof(in->secret_name));
        col_str(res, row, 9, in->secret_key, sizeof(in->secret_key));
        col_str(res, row, 10, in->pool, sizeof(in->pool));
        in->enabled = col_bool(res, row, 11);
        in->write_rate_bytes_s = col_double(res, row, 12, 0);
        in->fork_ms_per_gb = col_double(res, row, 13, -1);
        in->estimate_samples = (int)col_i64(res, row, 14, 0);
        col_str(res, row, 15, in->redis_version, sizeof(in->redis_version));
        in->can_bgsave = col_bool(res, row, 16);
        in->can_bgrewriteaof = col_bool(res, row, 17);
        in->can_config = col_bool(res, row, 18);
        in->save_disabled = col_bool(res, row, 19);
        in->capabilities_at = col_i64(res, row, 20, 0);
        col_str(res, row, 21, in->invalid_reason, sizeof(in->invalid_reason));
        in->created_at = col_i64(res, row, 22, 0);
        in->updated_at = col_i64(res, row, 23, 0);
        in->last_used_memory = col_i64(res, row, 24, -1);
}

struct instance_stream {
        pgstore_instance_fn fn;
        void *userdata;
        struct pgstore_instance instance;
};

static int instance_row(const PGresult *res, int row, void *userdata)
{
        struct instance_stream *is = userdata;
        decode_instance(res, row, &is->instance);
        int r = is->fn(&is->instance, is->userdata);
        explicit_bzero(is->instance.password, sizeof(is->instance.password));
        return r;
}

int pgstore_instances_foreach(struct pgstore *s, bool enabled_only, pgstore_instance_fn fn,
                              void *userdata)
{
        struct params p = {0};
        struct instance_stream *is = calloc(1, sizeof(*is));

        clear_error();
        if (!is)
                return set_error(s, -ENOMEM, "out of memory");
        is->fn = fn;
        is->userdata = userdata;
        p_bool(&p, enabled_only);
        pthread_mutex_lock(&s->lock);
        int r = stream(s, "loading instances",
                       "SELECT " INSTANCE_COLS " FROM instances WHERE NOT $1::bool OR enabled"
                       " ORDER BY id",
                       &p, instance_row, is);
        pthread_mutex_unlock(&s->lock);
        free(is);
        return r;
}

int pgstore_instance_get(struct pgstore *s, const char *id, struct pgstore_instance *ret)
{
        struct params p = {0};
        PGresult *res = NULL;

        p_str(&p, id);
        int r = query_locked(s, "reading an instance",
                             "SELECT " INSTANCE_COLS " FROM instances WHERE id = $1", &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return set_error(s, -ENOENT, "instance \"%s\": no such instance", id);
        }
        decode_instance(res, 0, ret);
        PQclear(res);
        return 0;
}

static int update_one(struct pgstore *s, const char *what, const char *sql, const struct params *p,
                      const char *id)
{
        PGresult *res = NULL;
        int r = query_locked(s, what, sql, p, &res);
        if (r < 0)
                return r;
        bool found = strcmp(PQcmdTuples(res), "0") != 0;
        PQclear(res);
        return found ? 0 : set_error(s, -ENOENT, "instance \"%s\": no such instance", id);
}

int pgstore_instance_set_estimates(struct pgstore *s, const char *id, double write_rate_bytes_s,
                                   double fork_ms_per_gb, int samples)
{
        struct params p = {0};

        clear_error();
        if (!(write_rate_bytes_s > 0) || !(fork_ms_per_gb >= 0) || samples < 0)
                return set_error(s, -EINVAL, "estimates: rate must be > 0, fork cost >= 0");
        p_str(&p, id);
        p_double(&p, write_rate_bytes_s);
        p_double(&p, fork_ms_per_gb);
        p_i64(&p, samples);
        return update_one(s, "storing estimates",
                          "UPDATE instances SET write_rate_bytes_s = $2::float8,"
                          " fork_ms_per_gb = $3::float8, estimate_samples = $4::int WHERE id = $1",
                          &p, id);
}

int pgstore_instance_set_capabilities(struct pgstore *s, const char *id,
                                      const struct pgstore_capabilities *caps)
{
        struct params p = {0};
        char version[65];

        pgstore_copy_utf8(version, sizeof(version), caps->redis_version ? caps->redis_version : "");
        p_str(&p, id);
        p_str_or_null(&p, version);
        p_bool(&p, caps->can_bgsave);
        p_bool(&p, caps->can_bgrewriteaof);
        p_bool(&p, caps->can_config);
        p_bool(&p, caps->save_disabled);
        p_i64_or_null(&p, caps->detected_at, 0);
        return update_one(s, "storing capabilities",
                          "UPDATE instances SET redis_version = $2, can_bgsave = $3,"
                          " can_bgrewriteaof = $4, can_config = $5, save_disabled = $6,"
                          " capabilities_at = coalesce(" TS7 ", now()) WHERE id = $1",
                          &p, id);
}

/* ---- passes ------------------------------------------------------------------------------ */

#define PASS_COLS                                                                                  \
        "id, to_char(pass_date, 'YYYY-MM-DD'), state, total, done, failed, skipped, epoch, "       \
        "leader_identity, (extract(epoch from started_at) * 1000000)::bigint, "                    \
        "(extract(epoch from updated_at) * 1000000)::bigint, "                                     \
        "(extract(epoch from finished_at) * 1000000)::bigint, "                                    \
        "(extract(epoch from eta) * 1000000)::bigint"

int pgstore_pass_create(struct pgstore *s, int64_t epoch, const char *identity,
                        const char *pass_date, int total, int64_t started_at, int64_t *ret_id)
{
        struct params p = {0};
        PGresult *res = NULL;

        p_i64(&p, epoch);
        p_str(&p, identity);
        p_str(&p, pass_date);
        p_i64(&p, total);
        p_i64(&p, started_at);
        int r = query_locked(s, "recording a pass",
                             FENCE ", ins AS (INSERT INTO passes (pass_date, total, epoch,"
                                   "  leader_identity, started_at, updated_at)"
                                   " SELECT $3::date, $4::int, $1::bigint, $2::text, " TS5 ", " TS5
                                   " FROM e"
                                   " WHERE e.epoch = $1::bigint RETURNING id)"
                                   " SELECT (SELECT epoch FROM e), (SELECT id FROM ins)",
                             &p, &res);
        if (r < 0)
                return r;
        int64_t current = col_i64(res, 0, 0, -1), id = col_i64(res, 0, 1, 0);
        PQclear(res);
        if (current != epoch)
                return deposed(s, epoch, current);
        *ret_id = id;
        return 0;
}

int pgstore_pass_update(struct pgstore *s, int64_t epoch, const char *identity, int64_t id,
                        enum pgstore_pass_state state, int total, int done, int failed, int skipped,
                        int64_t eta, int64_t now)
{
        struct params p = {0};

        clear_error();
        if ((unsigned)state >= ELEMENTSOF(pass_state_names))
                return set_error(s, -EINVAL, "state: unknown pass state");
        p_i64(&p, epoch);
        p_i64(&p, id);
        p_str(&p, identity);
        p_str(&p, pass_state_names[state]);
        p_i64(&p, total);
        p_i64(&p, done);
        p_i64(&p, failed);
        p_i64(&p, skipped);
        p_i64_or_null(&p, eta, 0);
        p_i64(&p, now);
        return fenced_update(
            s, "updating pass",
            FENCE ", u AS (UPDATE passes SET state = $4::text, total = $5::int,"
                  "  done = $6::int, failed = $7::int, skipped = $8::int, eta = " TS9 ","
                  "  epoch = $1::bigint, leader_identity = $3::text, updated_at = " TS10 ","
                  "  finished_at = CASE WHEN $4::text IN ('finished', 'aborted')"
                  "    THEN coalesce(finished_at, " TS10 ") END"
                  " WHERE id = $2::bigint AND (SELECT epoch FROM e) = $1::bigint RETURNING id)"
                  " SELECT (SELECT epoch FROM e), (SELECT count(*) FROM u),"
                  "  (SELECT state FROM passes WHERE id = $2::bigint),"
                  "  (SELECT epoch FROM passes WHERE id = $2::bigint)",
            &p, epoch, id);
}

static int pass_one(struct pgstore *s, const char *sql, const struct params *p,
                    struct pgstore_pass *ret)
{
        PGresult *res = NULL;
        int v;
        int r = query_locked(s, "reading a pass", sql, p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return set_error(s, -ENOENT, "no such pass");
        }
        memset(ret, 0, sizeof(*ret));
        ret->id = col_i64(res, 0, 0, 0);
        col_str(res, 0, 1, ret->pass_date, sizeof(ret->pass_date));
        if (parse_name(pass_state_names, ELEMENTSOF(pass_state_names), PQgetvalue(res, 0, 2), &v) ==
            0)
                ret->state = (enum pgstore_pass_state)v;
        ret->total = (int)col_i64(res, 0, 3, 0);
        ret->done = (int)col_i64(res, 0, 4, 0);
        ret->failed = (int)col_i64(res, 0, 5, 0);
        ret->skipped = (int)col_i64(res, 0, 6, 0);
        ret->epoch = col_i64(res, 0, 7, 0);
        col_str(res, 0, 8, ret->leader_identity, sizeof(ret->leader_identity));
        ret->started_at = col_i64(res, 0, 9, 0);
        ret->updated_at = col_i64(res, 0, 10, 0);
        ret->finished_at = col_i64(res, 0, 11, 0);
        ret->eta = col_i64(res, 0, 12, 0);
        PQclear(res);
        return 0;
}

int pgstore_pass_latest(struct pgstore *s, struct pgstore_pass *ret)
{
        return pass_one(s, "SELECT " PASS_COLS " FROM passes ORDER BY id DESC LIMIT 1", NULL, ret);
}

int pgstore_pass_by_date(struct pgstore *s, const char *pass_date, struct pgstore_pass *ret)
{
        struct params p = {0};
        p_str(&p, pass_date);
        return pass_one(s,
                        "SELECT " PASS_COLS " FROM passes WHERE pass_date = $1::date"
                        " ORDER BY id DESC LIMIT 1",
                        &p, ret);
}
