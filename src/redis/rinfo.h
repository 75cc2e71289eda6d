/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A pure parser of Redis INFO text (no sockets): the fields of the server, memory,
 * persistence, stats and replication sections that the instance driver decides on, as a plain
 * struct in which every field has a has_* flag, so an absent field is never mistaken for zero.
 * It accepts the field names of Redis 2.4 to 7.x (see docs/driver.md for the table).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps on what is read from a server: longer text, more lines or longer lines are ignored. */
#define RINFO_MAX_BYTES ((size_t)1024 * 1024)
#define RINFO_MAX_LINES 8192
#define RINFO_MAX_LINE  4096

enum rinfo_status {
        RINFO_STATUS_OK,
        RINFO_STATUS_ERR,
};

enum rinfo_role {
        RINFO_ROLE_MASTER,
        RINFO_ROLE_REPLICA, /* "slave" in every version's INFO */
};

struct rinfo {
        /* # Server */
        bool has_version;
        char version[32]; /* redis_version, e.g. "7.0.15" */
        int version_num;  /* major * 10000 + minor * 100 + patch, 0 when unparsable */
        bool has_run_id;
        char run_id[48];
        bool has_config_file;
        char config_file[512]; /* "" when the server runs without one */
        bool has_uptime_s;
        int64_t uptime_s;

        /* # Memory */
        bool has_used_memory;
        int64_t used_memory;

        /* # Persistence */
        bool has_loading;
        bool loading;
        bool has_rdb_changes_since_last_save; /* changes_since_last_save before 2.6 */
        int64_t rdb_changes_since_last_save;
        bool has_rdb_bgsave_in_progress; /* bgsave_in_progress before 2.6 */
        bool rdb_bgsave_in_progress;
        bool has_rdb_last_save_time;     /* last_save_time before 2.6 */
        int64_t rdb_last_save_time;      /* unix seconds */
        bool has_rdb_last_bgsave_status; /* 2.6+ */
        enum rinfo_status rdb_last_bgsave_status;
        bool has_rdb_last_bgsave_time_sec;
        int64_t rdb_last_bgsave_time_sec; /* -1 when none */
        bool has_rdb_current_bgsave_time_sec;
        int64_t rdb_current_bgsave_time_sec;
        bool has_rdb_saves; /* 7.0+: counts attempts, moves before the fork */
        int64_t rdb_saves;
        bool has_aof_enabled;
        bool aof_enabled;
        bool has_aof_rewrite_in_progress; /* bgrewriteaof_in_progress before 2.6 */
        bool aof_rewrite_in_progress;
        bool has_aof_rewrite_scheduled;
        bool aof_rewrite_scheduled;
        bool has_aof_last_rewrite_time_sec;
        int64_t aof_last_rewrite_time_sec;
        bool has_aof_last_bgrewrite_status;
        enum rinfo_status aof_last_bgrewrite_status;
        bool has_aof_rewrites; /* 7.0+: counts attempts, moves before the fork */
        int64_t aof_rewrites;

        /* # Stats */
        bool has_latest_fork_usec;
        int64_t latest_fork_usec;
        bool has_total_forks;
        int64_t total_forks;

        /* # Replication */
        bool has_role;
        enum rinfo_role role;
        bool has_master_sync_in_progress;
        bool master_sync_in_progress;

        /* About the parse itself. */
        size_t n_fields;    /* recognised fields read */
        size_t n_malformed; /* recognised names whose value did not parse (left absent) */
        bool truncated;     /* a cap was reached; what followed was ignored */
};

/*
 * Parse `len` bytes of INFO text (borrowed; need not be NUL-terminated; "\r\n" or "\n" line
 * ends; "# Section" headers and unknown fields are skipped). Fills *ret entirely (absent fields
 * have has_* false). Returns 0, or -EINVAL when the text holds no recognised field at all (not
 * an INFO reply). Never reads beyond RINFO_MAX_BYTES. Pure; any thread.
 */
int rinfo_parse(const char *text, size_t len, struct rinfo *ret);

/* Whether the server is at least major.minor (false when the version is unknown). */
bool rinfo_version_at_least(const struct rinfo *info, int major, int minor);

/* "ok" / "err". */
const char *rinfo_status_to_string(enum rinfo_status s);
