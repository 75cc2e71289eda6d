/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's adapters from the modules' operation tables to the Kubernetes client: the Lease
 * for the elector (struct election_lease_ops), pod labels and Events for the label machine
 * (struct election_label_ops), and pod IPs and Secret passwords for the instance driver
 * (struct driver_resolver). k8s.h allows one client per thread, so each adapter owns the
 * clients of the threads that call it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "core/macro.h"
#include "election/elector.h"
#include "election/label.h"
#include "k8s/k8s.h"
#include "redis/driver.h"

struct metrics;

/* ---- The Lease ----------------------------------------------------------------------------- */

struct lease_k8s;

/*
 * The Lease `lease_name` over two clients made from `cfg` and `opts` (both copied): one for
 * get/create/update (the elector thread), one for a watch thread that this adapter starts at
 * once and that keeps the newest Lease it has seen for wait_change() (which answers -ENOTCONN
 * at once while that watch is down and has not listed again, so that the elector polls
 * meanwhile). Each request is bounded
 * by opts->request_timeout_ms, which the caller keeps below the renew deadline (the per-call
 * timeout of election_lease_ops cannot shorten a request further). `identity` (borrowed,
 * copied) and `metrics` (borrowed, may be NULL) let updates of our own Lease count as renewals
 * in M_RENEW_DURATION / M_RENEW_FAILURES. Returns 0 and *ret (caller frees), or a negative
 * errno from the client or pthread_create. Main thread.
 */
int lease_k8s_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                  const char *lease_name, const char *identity, struct metrics *metrics,
                  struct lease_k8s **ret);

/* Stop the watch thread and free. Free the elector that uses the ops first. NULL is a no-op. */
void lease_k8s_free(struct lease_k8s *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct lease_k8s *, lease_k8s_free);

/* The operation table over `l` (borrowed: `l` must outlive every user of the table). */
struct election_lease_ops lease_k8s_ops(struct lease_k8s *l);

/*
 * The newest Lease the watch has reported, for the status API: true and *ret, or false when
 * the watch knows none (not listed yet, or the Lease does not exist). Any thread.
 */
bool lease_k8s_latest(struct lease_k8s *l, struct election_record *ret);

/* ---- Labels and Events ------------------------------------------------------------------- */

struct label_k8s;

/*
 * Pod labels and Lease Events over one client (the label thread's) made from `cfg` and `opts`.
 * Events name the Lease `lease_name` (borrowed, copied) and carry `host` (our pod name,
 * borrowed, copied) as source.host. Returns 0 and *ret (caller frees), or a negative errno.
 */
int label_k8s_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                  const char *lease_name, const char *host, struct label_k8s **ret);
void label_k8s_free(struct label_k8s *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct label_k8s *, label_k8s_free);

/* The operation table over `l` (borrowed; `l` must outlive the label machine). */
struct election_label_ops label_k8s_ops(struct label_k8s *l);

/* ---- Pods and Secrets for the driver ----------------------------------------------------- */

struct resolver_k8s;

/*
 * A driver resolver over one client, guarded by a mutex so that every executor thread may call
 * it (the calls are short: one GET each, bounded by opts->request_timeout_ms). Namespaces come
 * from each call (pod and secret references name theirs). Returns 0 and *ret (caller frees),
 * or a negative errno.
 */
int resolver_k8s_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                     struct resolver_k8s **ret);
void resolver_k8s_free(struct resolver_k8s *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct resolver_k8s *, resolver_k8s_free);

/* The resolver over `r` (borrowed; `r` must outlive every instance handle using it). */
struct driver_resolver resolver_k8s_resolver(struct resolver_k8s *r);
