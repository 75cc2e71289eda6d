/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PostgreSQL store: schema migrations, the fencing epoch, the run ledger (claims, starts,
 * finishes, reconciliation), tasks and instances as platform teams define them in SQL, nightly
 * passes, and the LISTEN/NOTIFY listener that tells the leader when tasks or instances change.
 * docs/schema.md documents the tables; the fencing argument is in pgstore.c's header comment.
 *
 * Threads: a `struct pgstore` is one connection guarded by one mutex; any thread may call any
 * function, and calls are serialized (each is one short statement bounded by statement_timeout).
 * A reconnection happens outside the mutex: while one thread connects (up to
 * connect_timeout_s), the others fail at once with -ENOTCONN instead of queueing behind it.
 * A listener (pgstore_listener_*) has its own connection and its own thread.
 *
 * Errors: functions return 0 or a negative errno. The detail of the calling thread's last failed
 * call (message and SQLSTATE) is kept per thread, like errno, and read with pgstore_errstr() and
 * pgstore_sqlstate(). Messages never contain the DSN's password. Mapping from SQLSTATE:
 *   -ENOTCONN   not connected (PostgreSQL unreachable, or the connection broke during the call:
 *               the outcome of a write is then unknown) — retried with backoff by later calls
 *   -ETIMEDOUT  statement_timeout or lock timeout (57014, 55P03)
 *   -EEXIST     unique violation (23505)
 *   -EINVAL     other integrity or data errors (23xxx, 22xxx): the message names the field
 *   -ENOENT     no such row
 *   -ESTALE     deposed: the stored epoch is no longer the caller's (fenced writes only)
 *   -ENOTSUP    the database schema is newer than this binary (pgstore_migrate)
 *   -EAGAIN     serialization failure or deadlock (40xxx); -EIO anything else.
 *
 * Times are UTC microseconds since the Unix epoch (int64_t); 0 means NULL/unknown. Counters
 * (rdb_saves, lastsave, used_memory, durations) use -1 for NULL/unknown.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/macro.h"

/* ---- enums and their SQL spellings ------------------------------------------------------ */

enum pgstore_action { PGSTORE_ACTION_BGSAVE, PGSTORE_ACTION_BGREWRITEAOF };
enum pgstore_misfire { PGSTORE_MISFIRE_RUN_ONCE, PGSTORE_MISFIRE_SKIP };
enum pgstore_run_kind {
        PGSTORE_RUN_SCHEDULED,
        PGSTORE_RUN_NIGHTLY,
        PGSTORE_RUN_MANUAL,
        PGSTORE_RUN_PERSIST,
        PGSTORE_RUN_KIND_COUNT,
};
enum pgstore_run_state {
        PGSTORE_RUN_CLAIMED,
        PGSTORE_RUN_RUNNING,
        PGSTORE_RUN_SUCCEEDED,
        PGSTORE_RUN_FAILED,
        PGSTORE_RUN_SKIPPED,
        PGSTORE_RUN_MISSED,
        PGSTORE_RUN_TIMED_OUT,
        PGSTORE_RUN_STATE_COUNT,
};
enum pgstore_pass_state {
        PGSTORE_PASS_RUNNING,
        PGSTORE_PASS_PAUSED,
        PGSTORE_PASS_FINISHED,
        PGSTORE_PASS_ABORTED,
};

/* The SQL spelling ("bgsave", "run_once", "scheduled", "timed_out", ...); "?" when out of range. */
const char *pgstore_action_to_string(enum pgstore_action v);
const char *pgstore_misfire_to_string(enum pgstore_misfire v);
const char *pgstore_run_kind_to_string(enum pgstore_run_kind v);
const char *pgstore_run_state_to_string(enum pgstore_run_state v);
const char *pgstore_pass_state_to_string(enum pgstore_pass_state v);
/* Parse the SQL spelling. 0 and *ret, or -EINVAL (nothing written). */
int pgstore_action_from_string(const char *s, enum pgstore_action *ret);
int pgstore_misfire_from_string(const char *s, enum pgstore_misfire *ret);
int pgstore_run_kind_from_string(const char *s, enum pgstore_run_kind *ret);
int pgstore_run_state_from_string(const char *s, enum pgstore_run_state *ret);
int pgstore_pass_state_from_string(const char *s, enum pgstore_pass_state *ret);
/* True for the states a run ends in (everything but claimed and running). */
bool pgstore_run_state_is_final(enum pgstore_run_state s);

/* ---- rows (plain data; buffer sizes are the schema's CHECK limits + 1) -------------------- */

#define PGSTORE_ID_MAX          129 /* instances.id: 1..128 */
#define PGSTORE_HOST_MAX        254 /* host, pod and secret names: 253 */
#define PGSTORE_LABEL_MAX       64  /* namespaces, pool: 63 */
#define PGSTORE_SCHEDULE_MAX    129
#define PGSTORE_DESCRIPTION_MAX 1025
#define PGSTORE_REASON_MAX      513 /* invalid_reason */
#define PGSTORE_PASSWORD_MAX    513
#define PGSTORE_ERROR_MAX       1025 /* runs.error */
#define PGSTORE_IDENTITY_MAX    254

struct pgstore_instance {
        char id[PGSTORE_ID_MAX];
        char host[PGSTORE_HOST_MAX]; /* "" when addressed by a pod reference */
        int port;
        char pod_namespace[PGSTORE_LABEL_MAX]; /* "" when addressed by host */
        char pod_name[PGSTORE_HOST_MAX];
        char username[PGSTORE_ID_MAX];            /* "" = default user */
        char password[PGSTORE_PASSWORD_MAX];      /* inline (development); "" = none */
        char secret_namespace[PGSTORE_LABEL_MAX]; /* password from a Secret; "" = none */
        char secret_name[PGSTORE_HOST_MAX];
        char secret_key[PGSTORE_HOST_MAX];
        char pool[PGSTORE_LABEL_MAX];
        bool enabled;
        double write_rate_bytes_s; /* learned; 0 = not learned yet */
        double fork_ms_per_gb;     /* learned; -1 = not learned yet */
        int estimate_samples;
        /* Detected capabilities; capabilities_at == 0: never detected (the bools are then false).
         */
        char redis_version[65];
        bool can_bgsave, can_bgrewriteaof, can_config, save_disabled;
        int64_t capabilities_at;
        char invalid_reason[PGSTORE_REASON_MAX]; /* "" = usable */
        int64_t created_at, updated_at;
        /* Read only: used_memory of its last successful run (-1 none), so that a new leader
         * sizes its plans before it has read the instance's INFO. */
        int64_t last_used_memory;
};

struct pgstore_task {
        int64_t id; /* 0 on create: the database assigns it */
        char instance_id[PGSTORE_ID_MAX];
        enum pgstore_action action;
        char schedule[PGSTORE_SCHEDULE_MAX];
        bool enabled;
        enum pgstore_misfire misfire;
        int starting_deadline_s;
        char description[PGSTORE_DESCRIPTION_MAX];
        char invalid_reason[PGSTORE_REASON_MAX]; /* read only: set by pgstore_task_set_invalid */
        int64_t created_at, updated_at;          /* read only */
        char pool[PGSTORE_LABEL_MAX];            /* read only: the instance's pool */
        bool instance_enabled;                   /* read only */
};

struct pgstore_run {
        int64_t id;
        int64_t task_id; /* 0 = none */
        char instance_id[PGSTORE_ID_MAX];
        int64_t pass_id; /* 0 = none */
        enum pgstore_run_kind kind;
        enum pgstore_action action;
        int64_t scheduled_for;
        enum pgstore_run_state state;
        int64_t epoch;
        char leader_identity[PGSTORE_IDENTITY_MAX];
        char request_id[PGSTORE_ID_MAX]; /* "" = none */
        int64_t claimed_at, planned_start, started_at, finished_at;
        int64_t used_memory, estimated_duration_ms, actual_duration_ms;             /* -1 unknown */
        int64_t rdb_saves_before, rdb_saves_after, lastsave_before, lastsave_after; /* -1 unknown */
        char error[PGSTORE_ERROR_MAX];
};

struct pgstore_pass {
        int64_t id;
        char pass_date[11]; /* YYYY-MM-DD in the schedule time zone */
        enum pgstore_pass_state state;
        int total, done, failed, skipped;
        int64_t epoch;
        char leader_identity[PGSTORE_IDENTITY_MAX];
        int64_t started_at, updated_at, finished_at, eta;
};

/* ---- the store ---------------------------------------------------------------------------- */

struct pgstore_options {
        const char *dsn; /* libpq conninfo or URI (borrowed during pgstore_new); "" = PG* env */
        int connect_timeout_s;        /* > 0 */
        int statement_timeout_ms;     /* > 0; every statement */
        int lock_timeout_ms;          /* migrations' advisory lock wait; 0 = 60000 */
        const char *application_name; /* NULL = "persistd" */
};

struct pgstore;

/*
 * A store for `opts` (copied). Does not connect: the first call (or pgstore_connect) does, and a
 * broken connection is re-established by later calls with exponential backoff (0.25 s to 10 s);
 * while it is down every call fails at once with -ENOTCONN, so nothing is claimed unrecorded.
 * NULL on OOM. Caller frees with pgstore_free (NULL is a no-op).
 */
struct pgstore *pgstore_new(const struct pgstore_options *opts);
void pgstore_free(struct pgstore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct pgstore *, pgstore_free);

/* Connect now (ignoring the backoff). 0, or -ENOTCONN with the reason in pgstore_errstr(). */
int pgstore_connect(struct pgstore *s);

/*
 * True when the last call found the connection usable (readiness). pgstore_ping() runs a trivial
 * statement (reconnecting if the backoff allows) and returns 0 or -ENOTCONN. Any thread.
 */
bool pgstore_is_connected(struct pgstore *s);
int pgstore_ping(struct pgstore *s);

/* The calling thread's last failure from any pgstore call: a message ("" if none; borrowed,
 * valid until the thread's next pgstore call) and its SQLSTATE ("" if none). */
const char *pgstore_errstr(void);
const char *pgstore_sqlstate(void);

/* Map a five-character SQLSTATE to the negative errno listed above. Pure. */
int pgstore_errno_from_sqlstate(const char *sqlstate);

/*
 * Replace every occurrence of `password` (if non-empty) in `msg` by "***", then redact anything
 * that looks like a secret (redact_secrets()). Caller frees; NULL on OOM. Pure.
 */
char *pgstore_scrub(const char *msg, const char *password);

/* ---- migrations ---------------------------------------------------------------------------- */

/*
 * Bring the schema to this binary's version, holding a session-level PostgreSQL advisory lock
 * so that replicas starting together apply each migration once (the others wait, then find
 * nothing to do). Each migration runs in its own transaction with its schema_migrations row.
 * *ret_from / *ret_to (may be NULL) get the version found and the version reached. Returns 0;
 * -ENOTSUP when the database is at a newer version than this binary (the message names both);
 * -ETIMEDOUT when the lock was not obtained within lock_timeout_ms; other negative errno.
 */
int pgstore_migrate(struct pgstore *s, int *ret_from, int *ret_to);

/* The schema version recorded in the database (0 for an empty database). */
int pgstore_schema_current(struct pgstore *s, int *ret_version);

/* ---- fencing -------------------------------------------------------------------------------- */

/*
 * Become the epoch holder: increment leader_epoch.epoch, record `identity` (borrowed) and the
 * time, and return the new epoch in *ret_epoch. Call on becoming leader, before any fenced
 * write; pass the result to every fenced call. Any thread.
 */
int pgstore_epoch_bump(struct pgstore *s, const char *identity, int64_t *ret_epoch);

/* Read the current epoch and its holder (identity may be NULL; else PGSTORE_IDENTITY_MAX bytes). */
int pgstore_epoch_get(struct pgstore *s, int64_t *ret_epoch, char *identity);

/*
 * Fenced writes. Each is one statement that takes a share lock on the epoch row and writes only
 * if the stored epoch equals `epoch`. They return 0 on success; -ESTALE when the stored epoch is
 * another (the caller has been deposed and must step down at once); -ENOENT / -EALREADY as
 * stated; other negative errno (nothing was written, except for -ENOTCONN: unknown).
 */

enum pgstore_claim_result {
        PGSTORE_CLAIMED,      /* this call inserted the run */
        PGSTORE_CLAIM_EXISTS, /* the slot already has a run (by anyone, this epoch included) */
};

/*
 * Claim the slot (task_id, scheduled_for): insert a `claimed` run of kind scheduled for the
 * task's instance and action, or do nothing if the slot has a run already. `planned_start` and
 * `estimated_duration_ms` may be 0 / -1. On success *ret_result says which, and *ret_run_id
 * (may be NULL) is the new run's id (0 on PGSTORE_CLAIM_EXISTS). -ENOENT: no such task. When the
 * outcome is unknown (-ENOTCONN), pgstore_runs_slots() shows whether the run is this epoch's.
 */
int pgstore_run_claim(struct pgstore *s, int64_t epoch, const char *identity, int64_t task_id,
                      int64_t scheduled_for, int64_t planned_start, int64_t estimated_duration_ms,
                      enum pgstore_claim_result *ret_result, int64_t *ret_run_id);

struct pgstore_run_new {
        enum pgstore_run_kind kind; /* nightly, manual or persist */
        const char *instance_id;    /* borrowed */
        enum pgstore_action action;
        int64_t task_id;        /* manual runs of a task; else 0 */
        int64_t pass_id;        /* nightly; else 0 */
        const char *request_id; /* persist / manual; NULL or "" = none */
        int64_t planned_start;
        int64_t estimated_duration_ms; /* -1 unknown */
};

/*
 * Record a new `claimed` run of a non-scheduled kind. On success *ret holds the row and
 * *ret_existed (may be NULL) says whether a run with the same (request_id, instance_id) existed
 * already, in which case *ret is that run, unchanged, whatever its epoch. -EINVAL for a bad
 * kind or field, or an instance/task/pass that does not exist (the message names the field).
 */
int pgstore_run_create(struct pgstore *s, int64_t epoch, const char *identity,
                       const struct pgstore_run_new *run, struct pgstore_run *ret,
                       bool *ret_existed);

struct pgstore_run_start {
        int64_t started_at;    /* actual start; required */
        int64_t planned_start; /* 0 = keep the claimed value */
        int64_t rdb_saves_before, lastsave_before, used_memory, estimated_duration_ms; /* -1 */
};

/*
 * claimed -> running, recording what was read from the instance before anything was sent.
 * Call before sending the command. A run already `running` under `epoch` (adopted from an
 * earlier leader whose command never reached the instance) is started again: the row then
 * holds the start and before-values of the save that really ran. -ENOENT no such run;
 * -EALREADY the run is final, or another epoch's (adopt it first).
 */
int pgstore_run_start(struct pgstore *s, int64_t epoch, int64_t run_id,
                      const struct pgstore_run_start *start);

struct pgstore_run_finish {
        enum pgstore_run_state state; /* a final state */
        const char *error;            /* borrowed; NULL or "" = none; truncated to 1024 bytes */
        int64_t finished_at;          /* required */
        int64_t rdb_saves_after, lastsave_after, used_memory, actual_duration_ms; /* -1 */
};

/*
 * claimed|running -> a final state (finished_at is stored no earlier than started_at).
 * -EINVAL for a non-final state; -ENOENT; -EALREADY (already final, or another epoch's run).
 */
int pgstore_run_finish(struct pgstore *s, int64_t epoch, int64_t run_id,
                       const struct pgstore_run_finish *finish);

/*
 * Reconciliation: take a run left `claimed` or `running` by an older epoch under `epoch` (its
 * epoch and leader identity become the caller's; its state is kept), so that start/finish then
 * apply. -EALREADY when the run is final or already this epoch's; -ENOENT.
 */
int pgstore_run_adopt(struct pgstore *s, int64_t epoch, const char *identity, int64_t run_id);

/* ---- run queries (unfenced reads) --------------------------------------------------------- */

int pgstore_run_get(struct pgstore *s, int64_t run_id, struct pgstore_run *ret);

struct pgstore_slot {
        int64_t task_id;
        int64_t scheduled_for;
        int64_t run_id;
        int64_t epoch;
        enum pgstore_run_state state;
};

/*
 * Slots of scheduled runs with scheduled_for in [from, to), ordered by (scheduled_for,
 * task_id). *ret (caller frees; NULL when none) and *ret_n.
 */
int pgstore_runs_slots(struct pgstore *s, int64_t from, int64_t to, struct pgstore_slot **ret,
                       size_t *ret_n);

/* Runs in claimed or running whose epoch is older than `epoch`, by id. *ret caller frees. */
int pgstore_runs_stale(struct pgstore *s, int64_t epoch, struct pgstore_run **ret, size_t *ret_n);

/* The newest succeeded run of `instance_id` (by finished_at). -ENOENT when none. */
int pgstore_last_success(struct pgstore *s, const char *instance_id, struct pgstore_run *ret);

struct pgstore_run_filter {
        int64_t task_id;         /* 0 = any */
        const char *instance_id; /* NULL or "" = any */
        int kind;                /* enum pgstore_run_kind, or -1 = any */
        int state;               /* enum pgstore_run_state, or -1 = any */
        int64_t from, to;        /* claimed_at in [from, to); 0 = unbounded */
        int64_t before_id;       /* keyset cursor: ids below this one; 0 = from the newest */
        size_t limit;            /* 1..1000; 0 = 100 */
};

/*
 * Runs matching `filter`, newest first (id descending). Page on with before_id = the last id
 * returned. *ret caller frees; *ret_n rows.
 */
int pgstore_runs_query(struct pgstore *s, const struct pgstore_run_filter *filter,
                       struct pgstore_run **ret, size_t *ret_n);

/*
 * Retention: delete up to `batch` (1..100000) final runs claimed more than `max_age_s` seconds
 * ago by the database's clock (so a shifted schedule clock cannot wipe history), oldest first.
 * Runs still claimed or running are never deleted. *ret_deleted: how many; call again while it
 * equals `batch`.
 */
int pgstore_runs_delete_older(struct pgstore *s, int64_t max_age_s, int batch, int *ret_deleted);

/* ---- tasks ---------------------------------------------------------------------------------- */

/*
 * Called once per row, on the calling thread, with the store's lock held: it must not call back
 * into the same store. Return 0 to go on, non-zero to stop (that value is returned, negated if
 * positive). `task` is borrowed for the call.
 */
typedef int (*pgstore_task_fn)(const struct pgstore_task *task, void *userdata);
typedef int (*pgstore_instance_fn)(const struct pgstore_instance *instance, void *userdata);

struct pgstore_task_filter {
        bool enabled_only;       /* tasks enabled AND their instance enabled */
        const char *instance_id; /* NULL = all instances */
};

/*
 * Stream tasks joined with their instance's pool, ordered by id, one row in memory at a time
 * (libpq single-row mode), so 100,000 rows cost a few KiB. Returns 0, a callback's stop value,
 * or negative errno (a callback may then have seen some rows).
 */
int pgstore_tasks_foreach(struct pgstore *s, const struct pgstore_task_filter *filter,
                          pgstore_task_fn fn, void *userdata);

int pgstore_task_get(struct pgstore *s, int64_t id, struct pgstore_task *ret);

/*
 * Create / update / delete a task (the API's writes; plain SQL does the same). Validation
 * errors are -EINVAL with a message "FIELD: reason" (e.g. "instance_id: no such instance
 * \"redis-9\""), from the same CHECK constraints the database enforces. create: `task->id` is
 * ignored unless non-zero; *ret_id (may be NULL) gets the id. update: every writable field of
 * `task` (id selects the row); -ENOENT when it does not exist. Unfenced.
 */
int pgstore_task_create(struct pgstore *s, const struct pgstore_task *task, int64_t *ret_id);
int pgstore_task_update(struct pgstore *s, const struct pgstore_task *task);
int pgstore_task_delete(struct pgstore *s, int64_t id);

/*
 * Record why a task (or an instance) cannot be used — e.g. "schedule: bad minute field \"61\""
 * (borrowed, truncated to 512 bytes) — or clear it with reason NULL. The row then appears in (or
 * leaves) the unusable_rows view. Writes only when the reason changes, and never triggers a
 * change notification. -ENOENT when the row does not exist.
 */
int pgstore_task_set_invalid(struct pgstore *s, int64_t id, const char *reason);
int pgstore_instance_set_invalid(struct pgstore *s, const char *id, const char *reason);

/* How many tasks and instances are flagged unusable now (for the metric). */
int pgstore_unusable_count(struct pgstore *s, int *ret_tasks, int *ret_instances);

/* ---- instances ---------------------------------------------------------------------------- */

/* Stream instances (all, or enabled only), ordered by id; like pgstore_tasks_foreach. */
int pgstore_instances_foreach(struct pgstore *s, bool enabled_only, pgstore_instance_fn fn,
                              void *userdata);

int pgstore_instance_get(struct pgstore *s, const char *id, struct pgstore_instance *ret);

/* Store learned estimates (after a completed save). -ENOENT; -EINVAL out of range. */
int pgstore_instance_set_estimates(struct pgstore *s, const char *id, double write_rate_bytes_s,
                                   double fork_ms_per_gb, int samples);

struct pgstore_capabilities {
        const char *redis_version; /* borrowed; NULL = unknown */
        bool can_bgsave, can_bgrewriteaof, can_config, save_disabled;
        int64_t detected_at;
};

int pgstore_instance_set_capabilities(struct pgstore *s, const char *id,
                                      const struct pgstore_capabilities *caps);

/* ---- nightly passes (writes fenced) ----------------------------------------------------- */

/*
 * Record a new `running` pass for `pass_date` ("YYYY-MM-DD") with `total` instances, started at
 * `started_at` (schedule clock, µs: the instant the nightly module compares with the scheduled
 * start, so it must come from the same clock).
 */
int pgstore_pass_create(struct pgstore *s, int64_t epoch, const char *identity,
                        const char *pass_date, int total, int64_t started_at, int64_t *ret_id);

/*
 * Set a pass's state, totals and ETA (0 = none); finished_at is set when the state is finished
 * or aborted. `now` (schedule clock, µs) becomes updated_at, and finished_at the first time the
 * pass ends. Any epoch may continue a pass (a new leader resumes it): the row takes the
 * caller's epoch. -ENOENT; -EINVAL (totals inconsistent).
 */
int pgstore_pass_update(struct pgstore *s, int64_t epoch, const char *identity, int64_t id,
                        enum pgstore_pass_state state, int total, int done, int failed, int skipped,
                        int64_t eta, int64_t now);

/* The newest pass (by id), or the newest of `pass_date`. -ENOENT when none. */
int pgstore_pass_latest(struct pgstore *s, struct pgstore_pass *ret);
int pgstore_pass_by_date(struct pgstore *s, const char *pass_date, struct pgstore_pass *ret);

/* ---- change notifications ------------------------------------------------------------------ */

/*
 * A listener: its own connection that LISTENs on "persistd_changes" and its own thread that
 * calls, in order and never concurrently:
 *   change(table, op, id)  per changed row: table "tasks" or "instances", op "INSERT",
 *                          "UPDATE" or "DELETE", id the row's id (all borrowed for the call).
 *                          An instance change may change its tasks' pool or enabled state:
 *                          re-read them (pgstore_tasks_foreach with filter.instance_id);
 *   resync()               every resync_interval_s, right after every (re)connection (changes may
 *                          have been missed while disconnected), and for a TRUNCATE.
 * A lost connection is re-established with backoff (0.25 s to 10 s).
 */
struct pgstore_listener_callbacks {
        void (*change)(const char *table, const char *op, const char *id, void *userdata);
        void (*resync)(void *userdata);
        void *userdata;
};

struct pgstore_listener;

/*
 * Start the listener thread (uses dsn and connect_timeout_s of `opts`; copied). `cb` is copied.
 * NULL on OOM or when the thread cannot start. Caller stops and frees with
 * pgstore_listener_free() (joins the thread; no callback runs after it returns). Call from one
 * thread; never from a callback.
 */
struct pgstore_listener *pgstore_listener_new(const struct pgstore_options *opts,
                                              int resync_interval_s,
                                              const struct pgstore_listener_callbacks *cb);
void pgstore_listener_free(struct pgstore_listener *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct pgstore_listener *, pgstore_listener_free);

/* True while LISTEN is in effect (readiness). Any thread. */
bool pgstore_listener_is_connected(struct pgstore_listener *l);
/* How many times it has (re)connected; for tests and metrics. Any thread. */
uint64_t pgstore_listener_connects(struct pgstore_listener *l);
