/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The instance driver: everything persistd says to a managed Redis server. Connecting (with a
 * timeout, AUTH by password or ACL user, a timeout on every command), detecting what the
 * server allows, taking its own persistence away (CONFIG SET save ""), and one save done right:
 * BGSAVE or BGREWRITEAOF that never starts a second child on a server that is already saving,
 * handles every reply a real server gives and judges completion from the INFO fields read
 * together. docs/driver.md has the state machine and the reply table.
 *
 * Threads: an instance handle is used by one thread at a time (the executor that holds its
 * pool place). A struct driver_cancel may be triggered from any thread; a struct
 * driver_estimator may be read and written from any thread (it has its own mutex).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis/rinfo.h"

struct config;

/* ---- Options ----------------------------------------------------------------------------- */

struct driver_options {
        int connect_timeout_ms; /* connecting (TCP and AUTH) */
        int command_timeout_ms; /* every command */
        int poll_min_ms;        /* INFO polls while a save runs: at least this apart... */
        int poll_max_ms;        /* ...and at most this apart; estimate / 20 in between */
        double timeout_factor;  /* a save times out after max(min_timeout_s, factor x estimate) */
        int min_timeout_s;
};

/* The driver.* keys of a loaded configuration (borrowed). Any thread. */
void driver_options_from_config(const struct config *c, struct driver_options *ret);

/* ---- Estimates ---------------------------------------------------------------------------- */

/*
 * Per-instance duration model (SPEC 5): estimate = fork cost x used memory + used memory /
 * write rate. Both parameters start from configuration (or from the numbers stored in
 * PostgreSQL) and follow an exponential moving average of the instance's completed saves:
 * new = weight x sample + (1 - weight) x old. GiB is 2^30 bytes.
 */
struct driver_estimator;

/*
 * A model with the given seeds: write rate in bytes per second (> 0), fork cost in ms per GiB
 * (>= 0), moving-average weight in (0, 1]. NULL on OOM or on out-of-range values. Caller frees.
 */
struct driver_estimator *driver_estimator_new(double write_rate_bytes_s, double fork_ms_per_gib,
                                              double weight);
void driver_estimator_free(struct driver_estimator *e);

/* Expected duration of a save of `used_memory` bytes, in microseconds (>= 0). Any thread. */
int64_t driver_estimator_estimate_us(struct driver_estimator *e, int64_t used_memory);

/*
 * Expected duration at the used memory last seen by the driver (0 bytes until an INFO was
 * read), for planners. Any thread.
 */
int64_t driver_estimator_current_us(struct driver_estimator *e);

/* Record the used memory seen in an INFO reply. Any thread. */
void driver_estimator_observe_memory(struct driver_estimator *e, int64_t used_memory);

/* The two learned numbers, as stored in PostgreSQL. Any thread. */
void driver_estimator_get(struct driver_estimator *e, double *ret_write_rate_bytes_s,
                          double *ret_fork_ms_per_gib);
/* Replace them (values read back from PostgreSQL). -EINVAL when out of range. Any thread. */
int driver_estimator_set(struct driver_estimator *e, double write_rate_bytes_s,
                         double fork_ms_per_gib);

/*
 * Learn from one completed save of `used_memory` bytes that took `total_us` from the command
 * to completion, of which `fork_us` (INFO latest_fork_usec; < 0 when unknown) in the fork.
 * Saves under 1 MiB say nothing about the write rate and only update the fork cost. Returns
 * true when a parameter changed. Any thread.
 */
bool driver_estimator_learn(struct driver_estimator *e, int64_t used_memory, int64_t fork_us,
                            int64_t total_us);

/* ---- Cancellation ------------------------------------------------------------------------- */

/* A one-shot cancel token for a save: requested from any thread, seen between polls at once. */
struct driver_cancel;

struct driver_cancel *driver_cancel_new(void); /* NULL on OOM; caller frees */
void driver_cancel_free(struct driver_cancel *c);
void driver_cancel_request(struct driver_cancel *c); /* any thread; idempotent */
bool driver_cancel_is_requested(struct driver_cancel *c);

/* ---- Addressing ----------------------------------------------------------------------------- */

/*
 * How pod references and Secret-sourced passwords are resolved; the daemon implements it with
 * the Kubernetes client, tests with a fake. Both functions are called on the thread using the
 * instance, at every (re)connect, so a restarted pod's new IP and a rotated password are
 * followed. They must return within the Kubernetes request timeout.
 *
 * resolve_pod: the pod's IP (*ret_host, caller frees). Returns 0; -ENOENT when the pod does
 *   not exist; -EAGAIN when it has no IP yet (pending); another negative errno on API failure.
 *   On error may set *ret_error to a message (caller frees; no secrets).
 * read_secret: the value of `key` in Secret namespace/name (*ret_value, caller frees with
 *   secret_free()). Returns 0; -ENOENT when the Secret or the key does not exist; another
 *   negative errno on API failure; *ret_error as above (never containing the value).
 */
struct driver_resolver {
        int (*resolve_pod)(void *userdata, const char *ns, const char *name, char **ret_host,
                           char **ret_error);
        int (*read_secret)(void *userdata, const char *ns, const char *name, const char *key,
                           char **ret_value, char **ret_error);
        void *userdata;
};

/*
 * Where an instance is and how to log in; every string is borrowed (copied by
 * driver_instance_new). Either host (with port) or pod_namespace + pod_name (with port); either
 * an inline password (development), or secret_namespace + secret_name + secret_key, or
 * neither (no AUTH). username: an ACL user (Redis 6+), NULL for the default user.
 */
struct driver_target {
        const char *id; /* the instance id, for messages */
        const char *host;
        uint16_t port;
        const char *pod_namespace;
        const char *pod_name;
        const char *username;
        const char *password;
        const char *secret_namespace;
        const char *secret_name;
        const char *secret_key;
};

/* ---- Instances ------------------------------------------------------------------------------ */

struct driver_instance;

/*
 * A handle for one instance; nothing is sent until it is used. `target` and `opts` are copied;
 * `resolver` (may be NULL when the target needs none) and `estimator` (may be NULL: estimates
 * are then 0 and nothing is learned) are borrowed and must outlive the handle. Returns 0 and
 * *ret (caller frees), -EINVAL when the target is incomplete (the reason in *ret_error, caller
 * frees, when ret_error is not NULL), or -ENOMEM.
 */
int driver_instance_new(const struct driver_target *target, const struct driver_options *opts,
                        const struct driver_resolver *resolver, struct driver_estimator *estimator,
                        struct driver_instance **ret, char **ret_error);
void driver_instance_free(struct driver_instance *inst);

/* Why the last failing call failed (borrowed, valid until the next call; never a secret). */
const char *driver_instance_errstr(const struct driver_instance *inst);

/*
 * Connect (resolving the target and the password first) and authenticate, unless connected.
 * Every other call connects on demand and drops the connection on an I/O error, so the next
 * call reconnects. Returns 0, -ENOENT/-EAGAIN from the resolver, -EACCES (authentication
 * refused), -ECONNREFUSED/-ETIMEDOUT/-EIO (network).
 */
int driver_instance_connect(struct driver_instance *inst);
void driver_instance_disconnect(struct driver_instance *inst);

/*
 * Read and parse INFO (default sections). 0; a driver_instance_connect() error; -EIO (connection
 * lost); -EPERM (NOPERM, NOAUTH); -EPROTO (not INFO text).
 */
int driver_instance_info(struct driver_instance *inst, struct rinfo *ret);

enum driver_cap {
        DRIVER_CAP_UNKNOWN,
        DRIVER_CAP_YES,
        DRIVER_CAP_NO,
};

const char *driver_cap_to_string(enum driver_cap c);

struct driver_caps {
        char version[32];
        int version_num;
        bool has_config_file;
        enum driver_cap bgsave; /* command present (COMMAND INFO) and permitted (ACL DRYRUN) */
        enum driver_cap bgrewriteaof;    /* likewise */
        enum driver_cap config;          /* CONFIG GET answers */
        enum driver_cap config_set;      /* CONFIG SET save "" read back as "" (known after
                                            driver_instance_disable_save) */
        enum driver_cap bgsave_schedule; /* BGSAVE SCHEDULE exists (3.2+) */
        char detail[256];                /* why the last NO was decided */
};

/*
 * Detect version and capabilities (sends INFO, CONFIG GET save, COMMAND INFO, and on 7.0+
 * ACL WHOAMI / ACL DRYRUN; never anything that changes the server). Capabilities that cannot
 * be checked stay UNKNOWN; saves and driver_instance_disable_save() refine them from the
 * replies they get. *ret is written on success. Returns 0 or -EIO (connection).
 */
int driver_instance_detect(struct driver_instance *inst, struct driver_caps *ret);

/* The capabilities known so far (detected or learned from replies). */
void driver_instance_caps(const struct driver_instance *inst, struct driver_caps *ret);

struct driver_save_config_result {
        char seen[128]; /* the `save` value read first ("" when already off) */
        bool drifted;   /* it was not "" */
        bool fixed;     /* CONFIG SET save "" was sent and read back as "" */
        bool rewritten; /* CONFIG REWRITE succeeded */
};

/*
 * Take persistence away: read `save` (CONFIG GET); when it is not "", CONFIG SET save "" and
 * read it back. With `rewrite`, and when the server has a config file, CONFIG REWRITE follows
 * a change, or every call when `first` is true (the instance is managed for the first time).
 * The same call serves the first management and each periodic re-check (a drift is then
 * reported by ret->drifted and fixed). *ret is written whenever the value could be read.
 * Returns 0 when `save` is "" at the end; -EPERM when CONFIG is refused (NOPERM, renamed);
 * -ENOTSUP when CONFIG SET did not take effect; -EIO (connection) or -EPROTO (CONFIG REWRITE
 * failed; the value is "" but a restart would bring the old rule back).
 */
int driver_instance_disable_save(struct driver_instance *inst, bool rewrite, bool first,
                                 struct driver_save_config_result *ret);

/* ---- One save ------------------------------------------------------------------------------- */

enum driver_action {
        DRIVER_ACTION_BGSAVE,
        DRIVER_ACTION_BGREWRITEAOF,
};

enum driver_mode {
        /* A child already running is waited for and counts when it wrote (lastsave moved,
         * status ok); otherwise one save is started. */
        DRIVER_MODE_NORMAL,
        /* Persist-now: whatever runs is waited for, then exactly one save is started by this
         * call, so the save that answers started after the call began. */
        DRIVER_MODE_FRESH,
        /* Reconciliation: send nothing; judge from the before-values of the request whether a
         * save happened (waiting for a running child first). */
        DRIVER_MODE_ADOPT,
};

enum driver_outcome {
        DRIVER_SUCCEEDED,
        DRIVER_FAILED,    /* with the reason */
        DRIVER_TIMED_OUT, /* the child may still be running; nothing was killed */
        DRIVER_CANCELLED, /* cancelled, or refused by before_send */
        DRIVER_LOST,      /* the connection was lost after the command: fate unknown */
        DRIVER_NOTHING,   /* adopt: no save happened since the before-values, none runs */
};

const char *driver_outcome_to_string(enum driver_outcome o);

struct driver_save_result {
        enum driver_outcome outcome;
        char reason[256];     /* "" on success; why, otherwise (no secrets) */
        bool waited_existing; /* a child of the same kind was running and was waited for */
        bool joined_existing; /* the save that counts was not started by this call */
        bool scheduled;       /* the server answered "scheduled" (an other child ran first) */
        int commands_sent;    /* BGSAVE / BGREWRITEAOF commands sent */
        bool has_counter;     /* rdb_saves (aof_rewrites) exists: Redis 7.0+ */
        int64_t counter_before, counter_after;
        int64_t lastsave_before, lastsave_after; /* unix seconds; -1 when unknown */
        int64_t used_memory;                     /* before the save */
        int64_t fork_us;                         /* latest_fork_usec after it; -1 unknown */
        int64_t estimate_us, timeout_us;
        int64_t started_wall_us;      /* schedule clock when the call began */
        int64_t save_started_wall_us; /* when the save that counts started: our command was
                                         sent, or (joined) the child's start rounded down
                                         to a whole second before it;
                                         -1 unknown (adopt, or nothing sent) */
        int64_t finished_wall_us;     /* when completion (or failure) was seen; ADOPT of a save
                                         that had ended before the call: when lastsave says */
        int64_t duration_us;          /* command sent (or child found) to completion; ADOPT:
                                         only the wait of this call */
};

/*
 * Called once, after the first INFO and just before the first command that could start a
 * save is sent (never in ADOPT mode): the caller records the before-values (`progress` has
 * them) so a successor can reconcile. Returning < 0 aborts: the outcome is CANCELLED with
 * "refused by the caller" and nothing is sent.
 */
typedef int (*driver_before_send_fn)(void *userdata, const struct driver_save_result *progress);

struct driver_save_request {
        enum driver_action action;
        enum driver_mode mode;
        /* ADOPT: what the run recorded before anything was sent. */
        bool before_has_counter;
        int64_t before_counter;
        int64_t before_lastsave;
        struct driver_cancel *cancel;      /* borrowed, may be NULL */
        driver_before_send_fn before_send; /* may be NULL */
        void *userdata;
};

/*
 * Perform one save (docs/driver.md) on the calling thread, blocking until it is done, failed,
 * timed out or cancelled; *ret is always written. Returns the outcome as well (so "== 0"
 * means success). Learns the estimate from a completed save it started. Capabilities are
 * updated from -NOPERM / unknown-command replies.
 */
enum driver_outcome driver_instance_save(struct driver_instance *inst,
                                         const struct driver_save_request *req,
                                         struct driver_save_result *ret);
