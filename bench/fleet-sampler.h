/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A sampler for the fleet benchmarks: every interval it asks each instance for INFO persistence
 * (pipelined) and reads the write_bytes of each redis-server and of its save child from
 * /proc/<pid>/io, so a run yields the number of saves in progress over time, each save's start
 * and end as seen from INFO, and the bytes the instances wrote.
 *
 * write_bytes counts the bytes a process caused to be written to storage (at page-dirtying
 * time); when the save child is reaped its counters are added to the parent's, so parent + live
 * child is one counter per instance, kept monotonic across the reap.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fleet_sample {
        int64_t t_us;          /* monotonic */
        int saving;            /* instances with rdb_bgsave_in_progress:1 */
        uint64_t bytes;        /* write_bytes of every instance and its children, cumulative */
        uint64_t device_bytes; /* written to the block device holding the fleet (every writer) */
};

struct fleet_save {
        int inst;
        int64_t start_us, end_us; /* monotonic: first sample saving, first sample not saving */
        int64_t child_exit_us;    /* first sample with the save child gone or a zombie (end_us
                                     when it was not seen): Redis reaps it in serverCron */
};

struct fleet_sampler;

/*
 * Connect to each 127.0.0.1:ports[i] and learn its pid. `dir` (may be NULL) is where the fleet
 * writes: the sectors written to its block device (/sys/dev/block/MAJ:MIN/stat) are sampled too.
 * NULL (with a message on stderr).
 */
struct fleet_sampler *fleet_sampler_new(const int *ports, size_t n, int interval_ms,
                                        const char *dir);
void fleet_sampler_free(struct fleet_sampler *s);

/* Whether the block device is sampled (device_bytes is meaningful). */
bool fleet_sampler_has_device(const struct fleet_sampler *s);

/* Start sampling on a thread (clears earlier samples); stop joins it. 0 or negative errno. */
int fleet_sampler_start(struct fleet_sampler *s);
void fleet_sampler_stop(struct fleet_sampler *s);

/* After stop: the samples and the completed saves seen (borrowed, valid until the next start). */
const struct fleet_sample *fleet_sampler_samples(struct fleet_sampler *s, size_t *ret_n);
const struct fleet_save *fleet_sampler_saves(struct fleet_sampler *s, size_t *ret_n);

/* The number of instances saving now, from a fresh INFO of each (any time; not while started). */
int fleet_sampler_saving_now(struct fleet_sampler *s);

/* Highest `saving` over the samples. */
int fleet_peak_saving(const struct fleet_sample *v, size_t n);
/* Highest write rate in bytes per second over any window of window_us (between samples). */
double fleet_peak_rate(const struct fleet_sample *v, size_t n, int64_t window_us);
/* The same for device_bytes. */
double fleet_peak_device_rate(const struct fleet_sample *v, size_t n, int64_t window_us);

/* The q-quantile (0..1) of v[0..n) (sorted in place), nearest rank; 0 when n == 0. */
double fleet_quantile(double *v, size_t n, double q);
