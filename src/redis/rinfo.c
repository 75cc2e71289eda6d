/* SPDX-License-Identifier: Apache-2.0 */
/*
 * INFO text to struct rinfo: one table row per recognised field name (old names as rows of
 * their own pointing at the same member), a line scanner that never reads past its caps.
 */
#include "redis/rinfo.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/macro.h"

enum field_type {
        FIELD_INT,    /* int64_t, strict decimal (may be negative) */
        FIELD_BOOL,   /* "0" / "1" */
        FIELD_STATUS, /* "ok" / "err" */
        FIELD_ROLE,   /* "master" / "slave" */
        FIELD_STRING, /* char[], truncated to its size */
        FIELD_VERSION,
};

struct field {
        const char *name;
        enum field_type type;
        size_t has_off;
        size_t off;
        size_t size; /* FIELD_STRING, FIELD_VERSION: the array's size */
};

#define F(has, member, t)                                                                          \
        .type = (t), .has_off = offsetof(struct rinfo, has),                                       \
        .off = offsetof(struct rinfo, member), .size = sizeof(((struct rinfo *)0)->member)

static const struct field fields[] = {
    {.name = "redis_version", F(has_version, version, FIELD_VERSION)},
    {.name = "run_id", F(has_run_id, run_id, FIELD_STRING)},
    {.name = "config_file", F(has_config_file, config_file, FIELD_STRING)},
    {.name = "uptime_in_seconds", F(has_uptime_s, uptime_s, FIELD_INT)},
    {.name = "used_memory", F(has_used_memory, used_memory, FIELD_INT)},
    {.name = "loading", F(has_loading, loading, FIELD_BOOL)},
    {.name = "rdb_changes_since_last_save",
     F(has_rdb_changes_since_last_save, rdb_changes_since_last_save, FIELD_INT)},
    {.name = "changes_since_last_save",
     F(has_rdb_changes_since_last_save, rdb_changes_since_last_save, FIELD_INT)},
    {.name = "rdb_bgsave_in_progress",
     F(has_rdb_bgsave_in_progress, rdb_bgsave_in_progress, FIELD_BOOL)},
    {.name = "bgsave_in_progress",
     F(has_rdb_bgsave_in_progress, rdb_bgsave_in_progress, FIELD_BOOL)},
    {.name = "rdb_last_save_time", F(has_rdb_last_save_time, rdb_last_save_time, FIELD_INT)},
    {.name = "last_save_time", F(has_rdb_last_save_time, rdb_last_save_time, FIELD_INT)},
    {.name = "rdb_last_bgsave_status",
     F(has_rdb_last_bgsave_status, rdb_last_bgsave_status, FIELD_STATUS)},
    {.name = "rdb_last_bgsave_time_sec",
     F(has_rdb_last_bgsave_time_sec, rdb_last_bgsave_time_sec, FIELD_INT)},
    {.name = "rdb_current_bgsave_time_sec",
     F(has_rdb_current_bgsave_time_sec, rdb_current_bgsave_time_sec, FIELD_INT)},
    {.name = "rdb_saves", F(has_rdb_saves, rdb_saves, FIELD_INT)},
    {.name = "aof_enabled", F(has_aof_enabled, aof_enabled, FIELD_BOOL)},
    {.name = "aof_rewrite_in_progress",
     F(has_aof_rewrite_in_progress, aof_rewrite_in_progress, FIELD_BOOL)},
    {.name = "bgrewriteaof_in_progress",
     F(has_aof_rewrite_in_progress, aof_rewrite_in_progress, FIELD_BOOL)},
    {.name = "aof_rewrite_scheduled",
     F(has_aof_rewrite_scheduled, aof_rewrite_scheduled, FIELD_BOOL)},
    {.name = "aof_last_rewrite_time_sec",
     F(has_aof_last_rewrite_time_sec, aof_last_rewrite_time_sec, FIELD_INT)},
    {.name = "aof_last_bgrewrite_status",
     F(has_aof_last_bgrewrite_status, aof_last_bgrewrite_status, FIELD_STATUS)},
    {.name = "aof_rewrites", F(has_aof_rewrites, aof_rewrites, FIELD_INT)},
    {.name = "latest_fork_usec", F(has_latest_fork_usec, latest_fork_usec, FIELD_INT)},
    {.name = "total_forks", F(has_total_forks, total_forks, FIELD_INT)},
    {.name = "role", F(has_role, role, FIELD_ROLE)},
    {.name = "master_sync_in_progress",
     F(has_master_sync_in_progress, master_sync_in_progress, FIELD_BOOL)},
};

#undef F

static bool parse_int(const char *v, size_t n, int64_t *ret)
{
        char buf[32];
        char *end;

        if (n == 0 || n >= sizeof(buf))
                return false;
        memcpy(buf, v, n);
        buf[n] = '\0';
        errno = 0;
        long long x = strtoll(buf, &end, 10);
        if (errno != 0 || *end != '\0' || end == buf)
                return false;
        *ret = x;
        return true;
}

/* One decimal component of at most `max`; advances *p. -1 when there is none or it is larger. */
static int version_part(const char **p, int max)
{
        int x = 0;
        if (!isdigit((unsigned char)**p))
                return -1;
        for (; isdigit((unsigned char)**p); (*p)++) {
                x = x * 10 + (**p - '0');
                if (x > max)
                        return -1; /* stops before int overflow whatever the instance sends */
        }
        return x;
}

static int version_num(const char *v)
{
        const char *p = v;
        int major = version_part(&p, 999), minor, patch = 0;
        if (major < 0 || *p++ != '.')
                return 0;
        minor = version_part(&p, 99);
        if (minor < 0)
                return 0;
        if (*p == '.' && isdigit((unsigned char)p[1])) {
                p++;
                patch = version_part(&p, 99);
                if (patch < 0)
                        return 0;
        }
        return major * 10000 + minor * 100 + patch;
}

static bool parse_value(const struct field *f, const char *v, size_t n, struct rinfo *info)
{
        char *base = (char *)info;
        int64_t x;

        switch (f->type) {
        case FIELD_INT:
                if (!parse_int(v, n, &x))
                        return false;
                *(int64_t *)(base + f->off) = x;
                break;
        case FIELD_BOOL:
                if (n != 1 || (v[0] != '0' && v[0] != '1'))
                        return false;
                *(bool *)(base + f->off) = v[0] == '1';
                break;
        case FIELD_STATUS:
                if (n == 2 && memcmp(v, "ok", 2) == 0)
                        *(enum rinfo_status *)(base + f->off) = RINFO_STATUS_OK;
                else if (n == 3 && memcmp(v, "err", 3) == 0)
                        *(enum rinfo_status *)(base + f->off) = RINFO_STATUS_ERR;
                else
                        return false;
                break;
        case FIELD_ROLE:
                if (n == 6 && memcmp(v, "master", 6) == 0)
                        *(enum rinfo_role *)(base + f->off) = RINFO_ROLE_MASTER;
                else if (n == 5 && memcmp(v, "slave", 5) == 0)
                        *(enum rinfo_role *)(base + f->off) = RINFO_ROLE_REPLICA;
                else
                        return false;
                break;
        case FIELD_STRING:
        case FIELD_VERSION: {
                if (n >= f->size)
                        n = f->size - 1;
                char *dst = base + f->off;
                memcpy(dst, v, n);
                dst[n] = '\0';
                if (f->type == FIELD_VERSION)
                        info->version_num = version_num(dst);
                break;
        }
        }
        *(bool *)(base + f->has_off) = true;
        return true;
}

static void parse_line(const char *line, size_t n, struct rinfo *info)
{
        const char *colon;

        if (n == 0 || line[0] == '#')
                return;
        colon = memchr(line, ':', n);
        if (!colon)
                return;
        size_t name_len = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vlen = n - name_len - 1;

        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                const struct field *f = &fields[i];
                if (strlen(f->name) != name_len || memcmp(f->name, line, name_len) != 0)
                        continue;
                if (parse_value(f, v, vlen, info))
                        info->n_fields++;
                else
                        info->n_malformed++;
                return;
        }
}

int rinfo_parse(const char *text, size_t len, struct rinfo *ret)
{
        struct rinfo info = {0};
        size_t n_lines = 0;

        if (!text)
                len = 0;
        if (len > RINFO_MAX_BYTES) {
                len = RINFO_MAX_BYTES;
                info.truncated = true;
        }
        for (size_t pos = 0; pos < len;) {
                const char *line = text + pos;
                const char *nl = memchr(line, '\n', len - pos);
                size_t n = nl ? (size_t)(nl - line) : len - pos;

                pos += n + (nl ? 1 : 0);
                if (!nl && info.truncated)
                        break; /* the last line was cut by the byte cap */
                if (++n_lines > RINFO_MAX_LINES) {
                        info.truncated = true;
                        break;
                }
                if (n > 0 && line[n - 1] == '\r')
                        n--;
                if (n > RINFO_MAX_LINE) {
                        info.truncated = true;
                        continue;
                }
                parse_line(line, n, &info);
        }
        if (info.n_fields == 0)
                return -EINVAL;
        *ret = info;
        return 0;
}

bool rinfo_version_at_least(const struct rinfo *info, int major, int minor)
{
        if (!info->has_version || info->version_num == 0)
                return false;
        return info->version_num >= major * 10000 + minor * 100;
}

const char *rinfo_status_to_string(enum rinfo_status s)
{
        return s == RINFO_STATUS_OK ? "ok" : "err";
}
