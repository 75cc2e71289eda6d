/* SPDX-License-Identifier: Apache-2.0 */
/*
 * persistd's configuration: a typed struct filled from one YAML file, the environment values
 * Kubernetes injects, and secret files. Every key is a row of the table in config-table.c
 * (name, type, default, bounds, description); loading, checking, printing and the generated
 * docs/configuration.md all walk that one table, so they cannot disagree.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/log.h"

struct pool_limit {
        char *name;
        int limit;
};

struct config {
        char *path; /* the file it was loaded from, or NULL for pure defaults */

        struct {
                char *kubeconfig; /* "" = in cluster */
                char *namespace;  /* "" = $POD_NAMESPACE or the service account's */
                char *pod_name;   /* "" = $POD_NAME */
                int request_timeout_ms;
                int token_reread_s;
        } kubernetes;

        struct {
                char *lease_name;
                int lease_duration_s;
                double renew_deadline_s;
                double retry_period_s;
                char *leader_label;
                int shutdown_grace_s;
        } election;

        struct {
                char *dsn;
                char *dsn_file;
                char *dsn_secret; /* contents of dsn_file; never printed */
                int connect_timeout_s;
                int resync_interval_s;
                int run_retention_days;
        } postgres;

        struct {
                char *address;
                char *username;
                char *password_file;
                char *password; /* contents of password_file; never printed */
                char *key_prefix;
        } progress;

        struct {
                char *timezone;
                int preload_minute;
                int max_plan_delay_s;
        } schedule;

        struct {
                int default_limit;
                struct pool_limit *limits;
                size_t n_limits;
        } pools;

        struct {
                bool enabled;
                char *start;      /* "HH:MM" */
                int start_minute; /* derived: minutes after midnight */
                int window_h;
                int max_attempts;
                int retry_backoff_s;
                int skip_if_saved_within_h;
        } nightly;

        struct {
                int connect_timeout_ms;
                int command_timeout_ms;
                bool manage_save_config;
                bool config_rewrite;
                int save_check_interval_s;
                double write_rate_mb_s;
                double fork_ms_per_gb;
                double timeout_factor;
                int min_timeout_s;
                int poll_min_ms;
                int poll_max_ms;
                double estimate_weight;
        } driver;

        struct {
                char *listen;
                char *token_file;
                char *token; /* contents of token_file; never printed */
                int max_body_bytes;
        } http;

        struct {
                enum log_level level;
                enum log_format format;
        } log;
};

/* A configuration holding every default. NULL on OOM. Caller frees with config_free(). */
struct config *config_new(void);
void config_free(struct config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct config *, config_free);

/*
 * Load `path` (NULL: defaults only), apply the environment overrides and read the secret files.
 * On success returns 0 and *ret (caller frees). On any problem returns -EINVAL (or -ENOMEM) and
 * *ret_errors holds every problem found, one per line as "FILE:LINE:COLUMN: key: what is wrong"
 * (caller frees). Neither out-parameter is written on the other path. No secret value ever
 * appears in an error. Call from one thread at a time (reads the environment).
 */
int config_load(const char *path, struct config **ret, char **ret_errors);

/* The limit of `pool`: its entry in pools.limits, else pools.default_limit. */
int config_pool_limit(const struct config *c, const char *pool);

/* Print the effective configuration as YAML, secrets masked, each key with where it came from. */
void config_print(const struct config *c, FILE *out);

/* Write the reference documentation (Markdown) generated from the key table. */
void config_write_markdown(FILE *out);
/* Write a complete, commented example file with every key at its default. */
void config_write_example(FILE *out);
