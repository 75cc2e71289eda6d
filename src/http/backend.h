/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the HTTP API needs from the daemon: a struct of function pointers plus userdata, and the
 * plain-data structs they exchange. The HTTP layer validates every request completely before it
 * calls an operation, so an operation receives well-formed values (bounded strings, enums from
 * the allowed set, ranges checked) and only has to check what needs the database or the
 * scheduler (a cron expression, an unknown instance, a duplicate id) and apply it atomically.
 *
 * Threads: operations are called from the HTTP server's connection threads, several at a time;
 * the backend synchronises itself. Each operation returns 0 or a negative errno, and on failure
 * fills `err` (message without secrets or internals, and the field it is about, if any):
 *
 *   -ENOENT        404 not_found     (message names the thing: "task \"t1\" not found")
 *   -EEXIST,-EBUSY 409 conflict
 *   -EINVAL        400 invalid       (err->field names the request field)
 *   -EAGAIN        503 not_leader    (the server adds the leader's identity and Retry-After)
 *   -ENOTCONN, -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH
 *                  503 unavailable   (PostgreSQL or another dependency is down)
 *   anything else  500 internal
 *
 * Strings in these structs are fixed-size, NUL-terminated arrays; arrays of records that an
 * operation returns are malloc()ed by the backend and freed by the HTTP layer with free().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define API_ID_MAX              128 /* task and instance ids, pool names, identities (with the NUL) */
#define API_SCHEDULE_MAX        128 /* a cron expression */
#define API_TEXT_MAX            512 /* descriptions, error messages */
#define API_CURSOR_MAX          128
#define API_LIST_LIMIT_MAX      1000 /* the largest page */
#define API_PERSIST_TARGETS_MAX 10000

struct api_error {
        char message[API_TEXT_MAX];
        char field[64];
};

/* ---- health, leadership, status -------------------------------------------------------- */

struct api_probe {
        /* liveness */
        bool believes_leader;
        int64_t since_renew_us; /* monotonic time since the last successful renew */
        int64_t lease_duration_us;
        /* readiness */
        bool config_loaded;
        bool postgres_ok;
        char postgres_error[API_TEXT_MAX]; /* why not, without secrets */
};

struct api_leader {
        bool is_leader;
        char leader[API_ID_MAX]; /* the current holder's identity, "" when unknown */
        int retry_after_s;       /* 0: the server's default (2) */
};

struct api_pool_status {
        char name[API_ID_MAX];
        int limit;
        int running;
        int queued;
};

struct api_nightly_current {
        char pool[API_ID_MAX];
        char instance_id[API_ID_MAX];
};

struct api_nightly {
        char state[16]; /* "idle", "running", "paused", "finished" */
        char date[16];  /* the pass's date (YYYY-MM-DD), "" when none */
        int64_t pass_id;
        int total, done, failed, pending;
        int64_t started_us, finished_us, eta_us; /* schedule clock; 0 unknown */
        bool overrun;                            /* the ETA is past the configured window */
        struct api_nightly_current *current;     /* malloc()ed; may be NULL */
        size_t n_current;
};

struct api_status {
        char identity[API_ID_MAX];
        bool is_leader;
        char leader[API_ID_MAX];
        int64_t epoch;
        struct {
                char holder[API_ID_MAX];
                int duration_s;
                int64_t acquire_us, renew_us; /* wall clock of the record; 0 unknown */
                int transitions;
        } lease;
        int64_t loaded_hours_us[4]; /* starts of the hours whose controllers are loaded */
        size_t n_loaded_hours;
        struct api_pool_status *pools; /* malloc()ed; may be NULL */
        size_t n_pools;
        struct api_nightly pass;
};

/* ---- tasks ----------------------------------------------------------------------------- */

struct api_task {
        char id[API_ID_MAX];
        char instance_id[API_ID_MAX];
        char action[16]; /* "bgsave" | "bgrewriteaof" */
        char schedule[API_SCHEDULE_MAX];
        bool enabled;
        char misfire[16]; /* "run_once" | "skip" */
        int starting_deadline_s;
        char description[API_TEXT_MAX];
        int64_t created_us, updated_us;
};

/* Which fields of a task a PATCH sets (PUT and POST set them all). */
enum {
        API_TASK_INSTANCE = 1U << 0,
        API_TASK_ACTION = 1U << 1,
        API_TASK_SCHEDULE = 1U << 2,
        API_TASK_ENABLED = 1U << 3,
        API_TASK_MISFIRE = 1U << 4,
        API_TASK_DEADLINE = 1U << 5,
        API_TASK_DESCRIPTION = 1U << 6,
        API_TASK_ALL = (1U << 7) - 1,
};

struct api_task_filter {
        char instance_id[API_ID_MAX]; /* "" = any */
        int enabled;                  /* -1 any, 0, 1 */
        int limit;                    /* 1..API_LIST_LIMIT_MAX */
        char cursor[API_CURSOR_MAX];  /* "" = first page; else a next_cursor returned before */
};

/* ---- instances ------------------------------------------------------------------------- */

struct api_instance {
        char id[API_ID_MAX];
        char address[256]; /* "host:port" or "pod namespace/name" */
        char pool[API_ID_MAX];
        bool enabled;
        /* last save */
        int64_t last_run_id;
        char last_state[16]; /* a run state, "" when never saved */
        char last_error[API_TEXT_MAX];
        int64_t last_finished_us;
        int64_t lastsave; /* rdb_last_save_time, Unix seconds; 0 unknown */
        /* capabilities */
        char redis_version[32];
        bool can_bgsave, can_bgrewriteaof, can_config;
        bool save_config_ok; /* `save ""` holds */
        /* estimate */
        int64_t used_memory;
        double write_rate_bytes_s;
        double fork_ms_per_gb;
        int64_t estimate_us;
};

struct api_instance_filter {
        char pool[API_ID_MAX]; /* "" = any */
        int enabled;           /* -1 any, 0, 1 */
        int limit;
        char cursor[API_CURSOR_MAX];
};

/* ---- runs -------------------------------------------------------------------------------- */

struct api_run {
        int64_t id;
        char task_id[API_ID_MAX]; /* "" for nightly, persist and manual runs without a task */
        char instance_id[API_ID_MAX];
        char kind[16];  /* "scheduled" | "nightly" | "manual" | "persist" */
        char state[16]; /* "claimed" | "running" | "succeeded" | "failed" | "skipped" | "missed"
                           | "timed_out" */
        int64_t scheduled_for_us, planned_start_us, started_us, finished_us; /* 0 unknown */
        int64_t epoch;
        char leader[API_ID_MAX];
        int64_t used_memory;
        int64_t estimated_us, actual_us;
        char error[API_TEXT_MAX];
        char request_id[API_ID_MAX];
};

struct api_run_filter {
        char task_id[API_ID_MAX];
        char instance_id[API_ID_MAX];
        char kind[16];
        char state[16];
        int64_t since_us, until_us; /* scheduled_for in [since, until); 0 = unbounded */
        int limit;
        char cursor[API_CURSOR_MAX];
};

/* ---- the plan of an hour ---------------------------------------------------------------- */

struct api_plan_slot {
        char task_id[API_ID_MAX];
        char instance_id[API_ID_MAX];
        char pool[API_ID_MAX];
        int64_t slot_us, expected_start_us, expected_end_us;
};

struct api_plan_pool {
        char name[API_ID_MAX];
        int limit;
        int64_t expected_end_us;
        int64_t overrun_us; /* how far the plan ends after the hour; 0 when it fits */
};

struct api_plan {
        int64_t hour_us;
        bool loaded; /* the hour's controller is loaded (else planned from the database) */
        struct api_plan_pool *pools; /* malloc()ed */
        size_t n_pools;
        struct api_plan_slot *slots; /* malloc()ed, in slot order */
        size_t n_slots;
};

/* ---- persist now ------------------------------------------------------------------------- */

struct api_persist_request {
        char **instances; /* borrowed; n_instances ids, or NULL with pool or all */
        size_t n_instances;
        char pool[API_ID_MAX]; /* "" unless the request names a pool */
        bool all;
        bool wait;
        int64_t timeout_us;          /* for wait */
        char request_id[API_ID_MAX]; /* "" none; a retry with the same id returns the same saves */
};

struct api_persist_result {
        char instance_id[API_ID_MAX];
        bool done; /* false: still queued or saving */
        bool success;
        bool joined; /* shared a save another request had asked for */
        char error[API_TEXT_MAX];
        int64_t requested_us, started_us, finished_us; /* schedule clock; 0 unknown */
        int64_t lastsave; /* rdb_last_save_time after the save, Unix seconds; 0 unknown */
        int64_t run_id;
};

enum api_nightly_action {
        API_NIGHTLY_START,
        API_NIGHTLY_PAUSE,
        API_NIGHTLY_RESUME,
};

struct api_backend {
        void *userdata;

        /* Cheap, never blocks long: called for every probe and every /v1 mutation. */
        void (*probe)(void *ud, struct api_probe *out);
        void (*leader)(void *ud, struct api_leader *out);

        int (*status)(void *ud, struct api_status *out, struct api_error *err);

        /* *ret is malloc()ed (n entries); next_cursor "" on the last page. */
        int (*task_list)(void *ud, const struct api_task_filter *filter, struct api_task **ret,
                         size_t *ret_n, char next_cursor[API_CURSOR_MAX], struct api_error *err);
        int (*task_get)(void *ud, const char *id, struct api_task *out, struct api_error *err);
        /* in->id "" lets the backend choose one. Fills *out with the stored task. */
        int (*task_create)(void *ud, const struct api_task *in, struct api_task *out,
                           struct api_error *err);
        /* Set the fields of `in` named by `mask` (API_TASK_*); in->id is ignored. */
        int (*task_update)(void *ud, const char *id, const struct api_task *in, unsigned mask,
                           struct api_task *out, struct api_error *err);
        int (*task_delete)(void *ud, const char *id, struct api_error *err);
        /* Run now (manual): the run it queued. */
        int (*task_run)(void *ud, const char *id, struct api_run *out, struct api_error *err);

        int (*instance_list)(void *ud, const struct api_instance_filter *filter,
                             struct api_instance **ret, size_t *ret_n,
                             char next_cursor[API_CURSOR_MAX], struct api_error *err);
        int (*instance_get)(void *ud, const char *id, struct api_instance *out,
                            struct api_error *err);

        int (*run_list)(void *ud, const struct api_run_filter *filter, struct api_run **ret,
                        size_t *ret_n, char next_cursor[API_CURSOR_MAX], struct api_error *err);

        /* The plan of the hour (in the schedule time zone) that contains `at_us`. */
        int (*plan)(void *ud, int64_t at_us, struct api_plan *out, struct api_error *err);

        int (*nightly_status)(void *ud, struct api_nightly *out, struct api_error *err);
        int (*nightly_control)(void *ud, enum api_nightly_action action, struct api_nightly *out,
                               struct api_error *err);

        /*
         * Persist now, in three steps so a waiting request never blocks the server's shutdown:
         * persist_begin() resolves every target (an unknown instance fails the whole request
         * with -ENOENT before any save is asked for) and asks for the saves; *ret_handle is
         * the backend's (released by persist_end) and *ret_n the number of targets.
         * persist_poll() waits up to `timeout_us` (0: not at all) for every target and fills
         * results[0..n) (caller-allocated); it returns 0 when all are done, -ETIMEDOUT when some
         * are not. persist_end() drops the handle; the saves go on.
         *
         * Over sched/persist.h this is: begin = look every target up (pool, estimate), then
         * persist_request() each into a ticket kept in the handle (remember the tickets under
         * req->request_id, bounded and expiring, so a retry gets the same ones); poll =
         * persist_ticket_wait() each with what is left of timeout_us (persist_ticket_peek()
         * when 0) and copy persist_result into api_persist_result; end = unref the tickets.
         * The HTTP layer calls poll in slices of at most 200 ms until the request's timeout.
         */
        int (*persist_begin)(void *ud, const struct api_persist_request *req, void **ret_handle,
                             size_t *ret_n, struct api_error *err);
        int (*persist_poll)(void *ud, void *handle, int64_t timeout_us,
                            struct api_persist_result *results);
        void (*persist_end)(void *ud, void *handle);
};

/* Free the malloc()ed arrays inside these structs (not the structs). NULL-safe. */
void api_status_release(struct api_status *s);
void api_nightly_release(struct api_nightly *n);
void api_plan_release(struct api_plan *p);
