/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The progress Redis (SPEC 7): the nightly pass's pending set
 * `<prefix>:pass:<date>:pending` (the ids of the instances still to persist; it expires one
 * day after the pass started) and a small hash `<prefix>:pass:<date>:current` (pool -> the
 * instance being persisted now) for the pass status. A leader that finds the pending set
 * resumes the pass; a missing set means the pass finished or never started.
 *
 * Threads: every function may be called from any thread; calls are serialised by the
 * object's mutex, each bounded by the command timeout (plus one reconnect).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A pass date: "YYYY-MM-DD" in the schedule time zone. */
#define PROGRESS_DATE_LEN 10
/* Most members read back from a pending set (a fleet larger than this is refused). */
#define PROGRESS_MAX_MEMBERS 1000000
/* Longest instance id or pool name accepted. */
#define PROGRESS_MAX_ID 256
/* Longest key accepted by the progress_set_* functions. */
#define PROGRESS_MAX_KEY 512
/* A pass's keys expire one day after the pass started (SPEC 7). */
#define PROGRESS_PASS_TTL_S     86400
#define PROGRESS_PASS_TTL_S_STR "86400"

struct progress_options {
        const char *address;  /* "host:port" (borrowed, copied) */
        const char *username; /* ACL user, NULL or "" for the default user */
        const char *password; /* NULL or "" for no AUTH; copied and wiped on free */
        const char *key_prefix;
        int connect_timeout_ms;
        int command_timeout_ms;
};

struct progress;

/*
 * A progress store (no connection yet: the first call connects, and every call reconnects
 * after an error, so a restarted Redis is picked up). Returns 0 and *ret (caller frees),
 * -EINVAL (bad address or prefix) or -ENOMEM.
 */
int progress_new(const struct progress_options *opts, struct progress **ret);
void progress_free(struct progress *p);

/* Copy the reason of the last failure into buf (never a secret). */
void progress_errstr(struct progress *p, char *buf, size_t size);

/*
 * Record a pass: replace the pending set of `date` with the `n` ids (borrowed) and set it to
 * expire in one day, atomically (MULTI/EXEC); the current-instance hash is cleared. With n == 0
 * nothing is pending afterwards. Returns 0, -EINVAL (bad date or id), -EIO (connection),
 * -EACCES (AUTH refused), -EPROTO (the server refused a command).
 */
int progress_pass_start(struct progress *p, const char *date, const char *const *ids, size_t n);

/* Whether the pending set of `date` exists (*ret). Errors as above. */
int progress_pass_exists(struct progress *p, const char *date, bool *ret);

/*
 * Remove `id` from the pending set (an instance finished, or failed for good); *ret_removed
 * (may be NULL) says whether it was pending. The set disappears with its last member.
 */
int progress_pass_done(struct progress *p, const char *date, const char *id, bool *ret_removed);

/* The number of pending ids (*ret; 0 when the set does not exist). */
int progress_pass_count(struct progress *p, const char *date, int64_t *ret);

/*
 * The pending ids (SSCAN, in no particular order): *ret_ids is a NULL-terminated array of
 * strings, caller frees with progress_strv_free(); *ret_n its length. -E2BIG beyond
 * PROGRESS_MAX_MEMBERS.
 */
int progress_pass_pending(struct progress *p, const char *date, char ***ret_ids, size_t *ret_n);

/*
 * The dates whose pending set exists (SCAN MATCH <prefix>:pass:*:pending), sorted: a new leader
 * resumes the newest. Same ownership as progress_pass_pending().
 */
int progress_pass_find(struct progress *p, char ***ret_dates, size_t *ret_n);

/* Set (id non-NULL) or clear (id NULL) the instance being persisted in `pool`. */
int progress_pass_set_current(struct progress *p, const char *date, const char *pool,
                              const char *id);

/*
 * Pool -> instance of `date`: two NULL-terminated arrays of the same length (caller frees both
 * with progress_strv_free()).
 */
int progress_pass_current(struct progress *p, const char *date, char ***ret_pools, char ***ret_ids,
                          size_t *ret_n);

/* Delete the pass's keys (pending set and current hash). */
int progress_pass_clear(struct progress *p, const char *date);

/*
 * The same set operations on a key the caller built (the nightly pass names its own keys,
 * `<prefix>:pass:<date>:pending`). The key must lie under "<prefix>:" (-EINVAL otherwise), so
 * persistd never writes outside its prefix.
 *  replace: the set becomes exactly ids[0..n) (n == 0: it is deleted), expiring in ttl_s > 0
 *           seconds, atomically (MULTI/EXEC).
 *  exists / count / remove / members: EXISTS / SCARD / SREM / SSCAN (as progress_pass_*).
 */
int progress_set_replace(struct progress *p, const char *key, const char *const *ids, size_t n,
                         int64_t ttl_s);
int progress_set_exists(struct progress *p, const char *key, bool *ret);
int progress_set_count(struct progress *p, const char *key, int64_t *ret);
int progress_set_remove(struct progress *p, const char *key, const char *id, bool *ret_removed);
int progress_set_members(struct progress *p, const char *key, char ***ret_ids, size_t *ret_n);

void progress_strv_free(char **v);
