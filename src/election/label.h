/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The leader label (SPEC 2) and the LeaderElected / LeaderLost Events, as a small machine on
 * its own thread, driven by the elector's callbacks so that a slow pod PATCH never delays a
 * renewal. Following: our pod must not carry the label (removed at start, and after stepping
 * down, retried until it works or we lead again). Leading: our pod carries it ("true"), and no
 * other pod does (a crashed leader's pod keeps its label until we remove it). See
 * docs/election.md.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "core/macro.h"

enum election_event_kind {
        ELECTION_EVENT_LEADER_ELECTED,
        ELECTION_EVENT_LEADER_LOST,
};

const char *election_event_kind_to_string(enum election_event_kind kind);

/*
 * Pod labels and Events in the replica's namespace; the Kubernetes client provides them. Every
 * call gets `timeout_us` and returns within about that long: 0, or a negative errno. All are
 * called from the label thread only, one at a time.
 */
struct election_label_ops {
        /*
         * Set label `key` to `value` on pod `pod` (a merge patch); `value` NULL removes it
         * (removing a label that is not there is 0). -ENOENT when the pod does not exist.
         */
        int (*patch_label)(void *userdata, const char *pod, const char *key, const char *value,
                           int64_t timeout_us);
        /*
         * List the pods carrying `key`=`value` (a label selector): call `each(ctx, name)` for
         * each, `name` borrowed for the call. 0 when the whole list was read.
         */
        int (*list_labeled)(void *userdata, const char *key, const char *value, int64_t timeout_us,
                            void (*each)(void *ctx, const char *pod), void *ctx);
        /* Optional: record an Event of `kind` on the Lease naming `identity`. Best effort. */
        int (*emit_event)(void *userdata, enum election_event_kind kind, const char *identity,
                          int64_t timeout_us);
        void *userdata;
};

struct election_label_options {
        const char *pod_name;    /* our pod; borrowed, copied */
        const char *label_key;   /* e.g. "persistd.io/leader"; borrowed, copied */
        const char *identity;    /* named in the Events; borrowed, copied */
        int64_t call_timeout_us; /* per call; 0 = 5 s */
        int64_t retry_min_us;    /* first retry delay after a failure; 0 = 100 ms */
        int64_t retry_max_us;    /* the delay doubles up to this; 0 = 5 s */
        int64_t resync_us;       /* re-check our labels this often; 0 = never */
};

struct election_label;

/*
 * Validate (pod name, label key and identity non-empty) and build the machine, not running.
 * `ops` is copied; its userdata must outlive the machine. Returns 0 and *ret (caller frees
 * with election_label_free()), -EINVAL, or -ENOMEM.
 */
int election_label_new(const struct election_label_options *opts,
                       const struct election_label_ops *ops, struct election_label **ret);

/* Start the thread, which first removes the label from our pod. 0, -EALREADY or -errno. */
int election_label_start(struct election_label *l);

/*
 * Tell the machine leadership changed. Never block beyond a mutex: call them from the
 * elector's on_started_leading / on_stopped_leading. Each queues the matching Event. Any
 * thread.
 */
void election_label_on_started_leading(struct election_label *l, uint64_t generation);
void election_label_on_stopped_leading(struct election_label *l);

/* Stop the thread (a call in progress finishes within its timeout) and free. NULL is a no-op. */
void election_label_free(struct election_label *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct election_label *, election_label_free);

struct election_label_status {
        bool leading;      /* as last told */
        bool settled;      /* the labels match the goal of the current state */
        bool own_labeled;  /* our pod carries the label, as last written */
        uint64_t removed;  /* labels removed from other pods */
        uint64_t failures; /* failed calls */
        uint64_t events;   /* Events emitted successfully */
        int last_error;    /* of the last failed call; 0 = none */
};

/* A snapshot, for status and tests. Any thread. */
void election_label_get_status(struct election_label *l, struct election_label_status *ret);
