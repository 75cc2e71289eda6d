/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API client: connection settings (in cluster or from a kubeconfig), one REST
 * client per thread over libcurl, Kubernetes Status errors mapped to negative errno, and the few
 * objects persistd uses: coordination.k8s.io/v1 Leases (get, create, compare-and-set update,
 * watch of one Lease), Pods (get, list by label, merge-patch of one label), one key of a Secret,
 * and core/v1 Events. docs/k8s-client.md is the longer manual.
 *
 * Threading: a `struct k8s_client` is used by one thread at a time (it owns one curl handle and
 * the last error); each thread that talks to the API creates its own client. The only calls
 * allowed from another thread are k8s_client_interrupt() and k8s_watch_cancel(). A
 * `struct k8s_config` is immutable once loaded and may be shared read-only by every thread.
 *
 * Errors: every action returns 0 or a negative errno; the HTTP status, the Status reason,
 * message and first cause stay on the client (k8s_client_last_error()). The mapping, on which
 * the election relies:
 *
 *   404                     -ENOENT
 *   409 reason AlreadyExists -EEXIST
 *   409 (Conflict, other)    -ESTALE     lost a resourceVersion compare-and-set
 *   401                     -EKEYREJECTED (after one token re-read and retry)
 *   403                     -EACCES
 *   400, 422                -EINVAL
 *   415                     -EPROTO      (also other unexpected statuses: 3xx, 405, 410, ...)
 *   429, 5xx                -EAGAIN      (Retry-After kept in the last error)
 *   request timeout         -ETIMEDOUT
 *   cannot connect, TLS     -ECONNREFUSED; name resolution: -EHOSTUNREACH
 *   connection lost         -ECONNRESET
 *   response too large      -EFBIG       (bodies are capped at K8S_MAX_BODY)
 *   malformed response      -EBADMSG
 *   interrupted             -ECANCELED
 *   out of memory           -ENOMEM
 *
 * No token ever appears in a log line or an error string.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/macro.h"

#define K8S_SERVICEACCOUNT_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define K8S_MAX_BODY           ((size_t)4 * 1024 * 1024) /* cap of any response body and watch line */
#define K8S_MAX_KUBECONFIG     ((size_t)1 * 1024 * 1024)

/* ---- Connection settings ---------------------------------------------------------------- */

/* Bytes held in memory (key material from a kubeconfig's *-data); never written to a file. */
struct k8s_blob {
        unsigned char *data;
        size_t len;
};

/* Resolved connection settings: plain data, immutable after loading, freed with k8s_config_free().
 */
struct k8s_config {
        char *server;    /* "https://host:port" (http:// accepted, for tests) */
        char *namespace; /* the context's / service account's namespace; NULL when none */

        char *ca_file;             /* PEM file verifying the server, or NULL */
        struct k8s_blob ca_data;   /* PEM bytes, or empty */
        bool insecure_skip_verify; /* insecure-skip-tls-verify: true */

        char *token;      /* a static bearer token (secret), or NULL */
        char *token_file; /* a file re-read periodically and after a 401, or NULL */

        char *client_cert_file, *client_key_file; /* PEM files, or NULL */
        struct k8s_blob client_cert_data, client_key_data;
};

/*
 * In-cluster settings: the server from $KUBERNETES_SERVICE_HOST and $KUBERNETES_SERVICE_PORT,
 * and from `sa_dir` (NULL: K8S_SERVICEACCOUNT_DIR) the files token (kept as token_file, read by
 * the client), ca.crt and namespace (optional). On success returns 0 and *ret (caller frees);
 * on failure -ENOENT / -EINVAL / -ENOMEM and *ret_error (caller frees) says what is missing.
 * Reads the environment: call from one thread at a time.
 */
int k8s_config_in_cluster(const char *sa_dir, struct k8s_config **ret, char **ret_error);

/*
 * Settings from the kubeconfig at `path` (libyaml): its current-context, that context's cluster
 * (server, certificate-authority file or -data, insecure-skip-tls-verify), user (token or
 * tokenFile, client-certificate/-key file or -data) and namespace. Relative file names are taken
 * relative to the kubeconfig's directory; *-data values are base64-decoded into memory blobs.
 * Returns 0 and *ret (caller frees), or -ENOENT (file or entry missing), -EINVAL (malformed),
 * -EFBIG, -ENOMEM with *ret_error (caller frees) naming the file and the key at fault.
 */
int k8s_config_from_kubeconfig(const char *path, struct k8s_config **ret, char **ret_error);

/*
 * The settings as configured by kubernetes.kubeconfig: k8s_config_from_kubeconfig(`kubeconfig`)
 * when it is set, else k8s_config_in_cluster(`sa_dir`). Same returns as those.
 */
int k8s_config_load(const char *kubeconfig, const char *sa_dir, struct k8s_config **ret,
                    char **ret_error);

/* Free the settings, wiping the token and key material. NULL is a no-op. */
void k8s_config_free(struct k8s_config *cfg);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct k8s_config *, k8s_config_free);

/* ---- The client ------------------------------------------------------------------------- */

struct k8s_client_options {
        const char
            *namespace; /* overrides the config's namespace; NULL or "" = keep; then "default" */
        int request_timeout_ms; /* CURLOPT_TIMEOUT_MS of every request; <= 0: 5000 */
        int connect_timeout_ms; /* <= 0: request_timeout_ms */
        int token_reread_s;     /* re-read token_file this often; <= 0: 60 */
        int watch_timeout_s;    /* timeoutSeconds of each watch request; <= 0: 300 */
};

/* What the last failed request left: empty fields when it was not an HTTP error. */
struct k8s_error {
        int http_status;   /* 0 when no HTTP response (timeout, connection) */
        char reason[64];   /* Status.reason ("Conflict", "AlreadyExists"), "" when absent */
        char message[512]; /* Status.message, truncated */
        char cause[256];   /* details.causes[0].message, "" when absent */
        int retry_after_s; /* Retry-After header in seconds, -1 when absent */
};

struct k8s_client;

/*
 * A client for `cfg` (copied: the client does not keep the pointer). Creates its curl handles;
 * the first token read happens on the first request. Returns 0 and *ret (caller frees with
 * k8s_client_free()), -EINVAL for unusable settings (no server), -ENOMEM.
 */
int k8s_client_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                   struct k8s_client **ret);
void k8s_client_free(struct k8s_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct k8s_client *, k8s_client_free);

/* The namespace every call uses (borrowed, lives as long as the client). */
const char *k8s_client_namespace(const struct k8s_client *c);

/* The last error's details and a one-line description ("PUT .../leases/x: 409 Conflict: ...").
 * Borrowed; overwritten by the next request. Owner thread only. */
const struct k8s_error *k8s_client_last_error(const struct k8s_client *c);
const char *k8s_client_errstr(const struct k8s_client *c);
/* The last Warning header the server sent (e.g. an unknown field), "" when none. Borrowed. */
const char *k8s_client_last_warning(const struct k8s_client *c);

/*
 * Make the request in flight (if any) and every later request of `c` fail promptly with
 * -ECANCELED. Any thread; must not race with k8s_client_free().
 */
void k8s_client_interrupt(struct k8s_client *c);

/* The errno for an HTTP status and Status reason (the table above). Pure; any thread. */
int k8s_status_to_errno(int http_status, const char *reason);

/* ---- MicroTime -------------------------------------------------------------------------- */

#define K8S_MICROTIME_MAX 40

/* Format wall-clock µs as MicroTime: exactly six fractional digits and "Z". Returns buf. */
char *k8s_microtime_format(int64_t us, char buf[static K8S_MICROTIME_MAX]);

/*
 * Parse MicroTime as the API server does: "YYYY-MM-DDTHH:MM:SS.ffffff" then "Z" or "±hh:mm";
 * no fraction, 3 or 9 digits, lower-case "z" or a space for "T" are -EINVAL (the server answers
 * 400 to those). Writes *ret_us only on success.
 */
int k8s_microtime_parse(const char *s, int64_t *ret_us);

/* ---- Leases (coordination.k8s.io/v1) ---------------------------------------------------- */

/* A Lease as plain data. Strings are owned by the struct (k8s_lease_release()). */
struct k8s_lease {
        char *name;
        char *resource_version;   /* metadata.resourceVersion; NULL on a lease not read yet */
        bool has_holder_identity; /* spec.holderIdentity present ("" is a present, empty holder) */
        char *holder_identity;    /* NULL when absent */
        bool has_lease_duration;
        int64_t lease_duration_s;
        bool has_acquire_time;
        int64_t acquire_time_us; /* wall µs since the epoch */
        bool has_renew_time;
        int64_t renew_time_us;
        bool has_lease_transitions;
        int64_t lease_transitions;
};

/* Free the strings of `l` and zero it. NULL is a no-op. */
void k8s_lease_release(struct k8s_lease *l);

/*
 * Decode a Lease object (or a list item) from JSON text; for tests and the watch. Returns 0 and
 * fills *ret (caller releases), -EBADMSG when it is not a Lease, -ENOMEM.
 */
int k8s_lease_from_json(const char *json, size_t len, struct k8s_lease *ret);

/* GET the Lease `name`. 0 and *ret (caller releases; written only on success), or an errno. */
int k8s_lease_get(struct k8s_client *c, const char *name, struct k8s_lease *ret);

/*
 * POST `l` (its resource_version is never sent: the server answers 500 to that). On success
 * *ret (may be NULL) receives the created Lease with its resourceVersion. -EEXIST when a Lease
 * of that name exists.
 */
int k8s_lease_create(struct k8s_client *c, const struct k8s_lease *l, struct k8s_lease *ret);

/*
 * PUT `l` as a compare-and-set on l->resource_version (required: -EINVAL without sending when it
 * is NULL or empty, since the server would answer 422). -ESTALE when the Lease changed since.
 * *ret (may be NULL) receives the stored Lease. Note: a PUT on a deleted Lease recreates it.
 */
int k8s_lease_update(struct k8s_client *c, const struct k8s_lease *l, struct k8s_lease *ret);

/*
 * LIST the Leases named `name` (fieldSelector): *ret_found tells whether it exists, *ret (may
 * be NULL; written when found, caller releases) the Lease, *ret_list_rv (may be NULL) the list's
 * metadata.resourceVersion, from which a watch must start (caller frees). Out-parameters are
 * written only on success.
 */
int k8s_lease_list_one(struct k8s_client *c, const char *name, struct k8s_lease *ret,
                       bool *ret_found, char **ret_list_rv);

/* ---- Watch of one Lease ----------------------------------------------------------------- */

enum k8s_watch_event {
        K8S_WATCH_SYNC, /* after a (re-)list: the current Lease, or NULL when it does not exist */
        K8S_WATCH_ADDED,
        K8S_WATCH_MODIFIED,
        K8S_WATCH_DELETED,
};

const char *k8s_watch_event_to_string(enum k8s_watch_event e);

/*
 * Called on the watching thread for each event; `lease` is borrowed for the call (NULL only for
 * a SYNC of a missing Lease). Return 0 to go on, or a negative errno to stop k8s_watch_run()
 * with that value.
 */
typedef int (*k8s_watch_fn)(enum k8s_watch_event event, const struct k8s_lease *lease,
                            void *userdata);

struct k8s_watch;

/*
 * A watch of the Lease `name` with its own client (own connection) made from `cfg` and `opts`
 * (both copied). Returns 0 and *ret (caller frees with k8s_watch_free()), or an errno.
 */
int k8s_watch_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                  const char *name, struct k8s_watch **ret);
void k8s_watch_free(struct k8s_watch *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct k8s_watch *, k8s_watch_free);

/*
 * Run the watch on the calling thread: LIST (callback SYNC), then watch from the list's
 * resourceVersion, calling `fn` per ADDED/MODIFIED/DELETED line. When the stream ends (the
 * server's timeoutSeconds) it watches again from the last resourceVersion seen; on an ERROR
 * event with 410 Expired it re-lists (another SYNC) and watches again. Returns -ECANCELED after
 * k8s_watch_cancel(), the callback's negative value, or the errno of a failed request (the
 * caller backs off and may call it again; the details are on k8s_watch_client()).
 */
int k8s_watch_run(struct k8s_watch *w, k8s_watch_fn fn, void *userdata);

/* Stop k8s_watch_run() promptly (it returns -ECANCELED) and every later run. Any thread; must
 * not race with k8s_watch_free(). */
void k8s_watch_cancel(struct k8s_watch *w);

/* The watch's own client, for its last error (borrowed; the watching thread only). */
struct k8s_client *k8s_watch_client(struct k8s_watch *w);

/* ---- Pods (core/v1) --------------------------------------------------------------------- */

struct k8s_label {
        char *key;
        char *value;
};

struct k8s_pod {
        char *name;
        char *resource_version;
        char *phase;  /* status.phase ("Pending", "Running"), NULL when absent */
        char *pod_ip; /* status.podIP, NULL when absent */
        struct k8s_label *labels;
        size_t n_labels;
};

void k8s_pod_release(struct k8s_pod *p);
/* Free an array from k8s_pod_list(). */
void k8s_pod_array_free(struct k8s_pod *pods, size_t n);
/* The value of label `key`, or NULL (borrowed). */
const char *k8s_pod_label(const struct k8s_pod *p, const char *key);

/* Decode a Pod object or list item from JSON text (tests). 0, -EBADMSG, -ENOMEM. */
int k8s_pod_from_json(const char *json, size_t len, struct k8s_pod *ret);

/* GET the Pod `name`: 0 and *ret (caller releases), or an errno. */
int k8s_pod_get(struct k8s_client *c, const char *name, struct k8s_pod *ret);

/*
 * LIST Pods matching `label_selector` ("a=b,c=d"; URL-encoded here; NULL or "" = all). On
 * success *ret is an array of *ret_n pods (caller frees with k8s_pod_array_free(); NULL when 0).
 */
int k8s_pod_list(struct k8s_client *c, const char *label_selector, struct k8s_pod **ret,
                 size_t *ret_n);

/*
 * Set label `key` to `value` on Pod `name` with a JSON merge patch, or remove it when `value`
 * is NULL (removing a label that is not there succeeds). -EINVAL without sending when the key
 * or value is not a valid label.
 */
int k8s_pod_set_label(struct k8s_client *c, const char *name, const char *key, const char *value);

/* ---- Secrets (core/v1) ------------------------------------------------------------------ */

/*
 * Read data[`key`] of Secret `name`, base64-decoded, at most `max_size` bytes (-EFBIG beyond).
 * On success *ret is NUL-terminated (caller frees; wipe it with secret_free() from core/util.h)
 * and *ret_len (may be NULL) its length. -ENOENT: no such Secret; -ENODATA: no such key.
 */
int k8s_secret_get_key(struct k8s_client *c, const char *name, const char *key, size_t max_size,
                       char **ret, size_t *ret_len);

/* ---- Events (core/v1) ------------------------------------------------------------------- */

enum k8s_event_type {
        K8S_EVENT_NORMAL,
        K8S_EVENT_WARNING,
};

/* All strings borrowed for the call. */
struct k8s_event {
        const char *involved_kind; /* "Lease" or "Pod", in the client's namespace */
        const char *involved_name;
        const char *involved_uid; /* optional */
        const char *reason;       /* "LeaderElected" */
        const char *message;      /* truncated to 1024 bytes */
        enum k8s_event_type type;
        const char *component; /* source.component, e.g. "persistd" */
        const char *host;      /* source.host, optional */
        int64_t time_us;       /* wall µs; 0 = now. Sent as whole seconds */
};

/*
 * POST a core/v1 Event (metadata.generateName "<involved name>.", involvedObject in the client's
 * namespace, firstTimestamp = lastTimestamp, count 1, no eventTime). 0 or an errno; -EINVAL
 * without sending for an unknown kind or a missing field.
 */
int k8s_event_create(struct k8s_client *c, const struct k8s_event *e);
