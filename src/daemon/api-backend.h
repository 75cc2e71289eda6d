/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP API's backend (http/backend.h) over the daemon's modules: health and leadership
 * from the elector, tasks through the store (then handed to the fleet so a change is live at
 * once), instances, runs, plans, the nightly pass and persist-now through the fleet.
 */
#pragma once

#include <stdint.h>

#include "core/macro.h"
#include "http/backend.h"

struct pgstore;
struct fleet;
struct elector;
struct lease_k8s;

struct api_deps {
        struct pgstore *store;   /* borrowed, thread-safe */
        struct fleet *fleet;     /* borrowed */
        struct elector *elector; /* borrowed; created before, started after the server */
        struct lease_k8s *lease; /* borrowed: the Lease as last watched, for the status */
        int32_t lease_duration_s;
};

struct api_impl;

/* A backend over `deps` (copied; the pointers inside are borrowed and must outlive it). NULL on
 * OOM. Caller frees with api_impl_free() after stopping the HTTP server. */
struct api_impl *api_impl_new(const struct api_deps *deps);
void api_impl_free(struct api_impl *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct api_impl *, api_impl_free);

/* The operation table (userdata = `a`, borrowed). */
struct api_backend api_impl_backend(struct api_impl *a);
