/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for the real-process nightly tests: a fleet of real redis-servers with slow saves
 * (rdb-key-save-delay) registered in PostgreSQL, replicas spawned with a nightly
 * configuration, and a sampler that watches every instance's INFO for saves per pool.
 * Single-threaded, from the test's main thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "test-daemon-cluster.h"

#define NF_MAX   16
#define NF_POOLS 3

struct nf_inst {
        struct th_redis r;
        redisContext *c;
        char id[16];
        int pool; /* index into nf_pool_name() */
        long long saves0;
        bool saving;
        int starts; /* save starts the sampler saw (not saving → saving) */
};

struct nfleet {
        struct nf_inst in[NF_MAX];
        int n;
        /* The sampler's findings. */
        int max_in_pool[NF_POOLS]; /* most saves at once in one pool */
        int max_pools_saving;      /* most pools saving at once */
        long samples;
};

const char *nf_pool_name(int pool);

/*
 * Start `n` instances (instance i, "n-<i>", in pool i % pools) with `keys` keys each and saves
 * slowed by `delay_us` per key. Aborts the test on failure.
 */
void nf_start(struct nfleet *f, int n, int pools, int keys, int delay_us);
/*
 * Insert them into the cluster's `instances` (once a replica has created the schema); `slow`:
 * with a learnt write rate of 100 bytes/s, so each estimate is hours until its first save.
 */
void nf_register(struct nfleet *f, struct cluster *cl, bool slow);
void nf_stop(struct nfleet *f);
/* Remember each instance's rdb_saves as the starting point and reset the sampler. */
void nf_mark(struct nfleet *f);
/* One sample of every instance's INFO persistence. */
void nf_sample(struct nfleet *f);
/* Sample every 20 ms for `us`. */
void nf_sample_for(struct nfleet *f, int64_t us);
/* rdb_saves since nf_mark. */
long long nf_saves(struct nfleet *f, int i);
/* Instances saving in the last sample. */
int nf_saving(const struct nfleet *f);

/*
 * Replace the nightly section of every replica's configuration with `nightly_yaml` (a whole
 * "nightly:\n  key: value\n..." block) and append `extra_yaml` (other top-level sections the
 * cluster does not write; may be NULL). Before the replicas are spawned.
 */
void nf_configure(struct cluster *cl, const char *nightly_yaml, const char *extra_yaml);

/*
 * Sample while waiting up to `timeout_us` for a leader other than `not` (-1: any) that holds
 * the Lease and says so. Returns its index; fails the test (with the logs) otherwise.
 */
int nf_wait_leader(struct cluster *cl, struct nfleet *f, int not, int64_t timeout_us);

/* GET /v1/nightly of replica i: the "state" ("" when no answer); caller frees. */
char *nf_nightly_state(struct cluster *cl, int i);

/* Sample until SQL `sql` counts at least `min`, or fail the test after `timeout_us`. */
void nf_wait_sql(struct cluster *cl, struct nfleet *f, const char *sql, long long min,
                 int64_t timeout_us);
