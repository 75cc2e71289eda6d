/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every configuration key, its default, bounds and meaning. Adding a key is adding a row here
 * and a field in struct config; docs/configuration.md and deploy/persistd.example.yaml are
 * regenerated from this table (meson compile -C build config-docs) and checked by a test.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config-table.h"
#include "core/macro.h"
#include "core/util.h"

#define F(field) offsetof(struct config, field)

static int reason(char **ret, const char *fmt, const char *value)
{
        if (asprintf(ret, fmt, value) < 0)
                *ret = NULL;
        return -EINVAL;
}

static int check_dns_label(const struct config_key *k, struct config *c, const char *v, char **r)
{
        if (*v && !is_dns1123_label(v))
                return reason(r,
                              "\"%s\" is not a valid namespace name (RFC 1123 label: "
                              "lower-case letters, digits and '-', at most 63)",
                              v);
        return 0;
}

static int check_dns_subdomain(const struct config_key *k, struct config *c, const char *v,
                               char **r)
{
        if (*v && !is_dns1123_subdomain(v))
                return reason(r,
                              "\"%s\" is not a valid Kubernetes object name (RFC 1123 "
                              "subdomain: lower-case letters, digits, '-' and '.')",
                              v);
        return 0;
}

static int check_nonempty_subdomain(const struct config_key *k, struct config *c, const char *v,
                                    char **r)
{
        if (!*v)
                return reason(r, "must not be empty%s", "");
        return check_dns_subdomain(k, c, v, r);
}

static int check_label_key(const struct config_key *k, struct config *c, const char *v, char **r)
{
        if (!is_label_key(v))
                return reason(r,
                              "\"%s\" is not a valid label key ([prefix/]name, name of "
                              "1 to 63 characters)",
                              v);
        return 0;
}

static int check_host_port(const struct config_key *k, struct config *c, const char *v, char **r)
{
        _cleanup_free_ char *host = NULL;
        uint16_t port;

        if (parse_host_port(v, &host, &port) < 0)
                return reason(r, "\"%s\" is not HOST:PORT (port 1-65535; [v6addr]:PORT for IPv6)",
                              v);
        return 0;
}

static int check_timezone(const struct config_key *k, struct config *c, const char *v, char **r)
{
        _cleanup_free_ char *path = NULL, *head = NULL;

        if (streq(v, "UTC"))
                return 0;
        if (!*v || v[0] == '/' || strstr(v, "..") || strlen(v) > 64)
                return reason(r, "\"%s\" is not an IANA time zone name (like Europe/Paris)", v);
        if (asprintf(&path, "/usr/share/zoneinfo/%s", v) < 0)
                return -ENOMEM;
        if (read_full_file(path, 1 << 20, &head, NULL) < 0 || strncmp(head, "TZif", 4) != 0)
                return reason(r, "unknown time zone \"%s\" (not in /usr/share/zoneinfo)", v);
        return 0;
}

static int check_hhmm(const struct config_key *k, struct config *c, const char *v, char **r)
{
        /* Exactly two digits, ':', two digits (sscanf's %2d would also take " 1" and "+1"). */
        bool digits = strlen(v) == 5 && v[2] == ':';
        for (size_t i = 0; digits && i < 5; i++)
                digits = i == 2 || isdigit((unsigned char)v[i]);
        int h = digits ? (v[0] - '0') * 10 + (v[1] - '0') : -1;
        int m = digits ? (v[3] - '0') * 10 + (v[4] - '0') : -1;
        if (h < 0 || h > 23 || m < 0 || m > 59)
                return reason(r, "\"%s\" is not a time of day HH:MM (00:00 to 23:59)", v);
        c->nightly.start_minute = h * 60 + m;
        return 0;
}

static int check_dsn(const struct config_key *k, struct config *c, const char *v, char **r)
{
        /* Keyword form (password=...) or URI form (postgresql://user:secret@host). */
        const char *scheme = strstr(v, "://");
        if (strstr(v, "password=") ||
            (scheme && memchr(scheme + 3, '@', strcspn(scheme + 3, "/?")) &&
             memchr(scheme + 3, ':', strcspn(scheme + 3, "@/?"))))
                return reason(r,
                              "holds a password; secrets are read only from files: put the DSN "
                              "in postgres.dsn_file (or use PGPASSFILE)%s",
                              "");
        return 0;
}

static int check_key_prefix(const struct config_key *k, struct config *c, const char *v, char **r)
{
        if (!*v || strlen(v) > 64)
                return reason(r, "must be 1 to 64 characters%s", "");
        for (const char *p = v; *p; p++)
                if (*p <= ' ' || *p == 0x7f)
                        return reason(r, "\"%s\" contains white space or control characters", v);
        return 0;
}

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"json", "text", NULL};

/* The tables are wrapped by hand, one row per key, to stay readable. */
/* clang-format off */
const char *const config_sections[] = {
        "kubernetes", "election", "postgres", "progress", "schedule",
        "pools",      "nightly",  "driver",   "http",     "log",
};
const size_t config_sections_count = ELEMENTSOF(config_sections);

const struct config_key config_keys[] = {
        /* kubernetes */
        {.name = "kubernetes.kubeconfig", .type = CONFIG_STRING, .offset = F(kubernetes.kubeconfig),
         .def = "", .flags = CONFIG_PATH,
         .doc = "Path of a kubeconfig file for running outside a cluster (its current context is "
                "used). Empty: in-cluster, from KUBERNETES_SERVICE_HOST/PORT and the mounted "
                "service-account token and CA."},
        {.name = "kubernetes.namespace", .type = CONFIG_STRING, .offset = F(kubernetes.namespace),
         .def = "", .env = "POD_NAMESPACE", .check = check_dns_label,
         .doc = "Namespace of the Lease, the pods and the Events. Empty: the pod's namespace "
                "(Downward API), else the service account's."},
        {.name = "kubernetes.pod_name", .type = CONFIG_STRING, .offset = F(kubernetes.pod_name),
         .def = "", .env = "POD_NAME", .check = check_dns_subdomain,
         .doc = "This replica's pod, which carries the leader label while it leads. Set by the "
                "Downward API in a cluster."},
        {.name = "kubernetes.request_timeout_ms", .type = CONFIG_INT,
         .offset = F(kubernetes.request_timeout_ms), .def = "5000", .min = 100, .max = 60000,
         .doc = "Timeout of every Kubernetes API request; must be shorter than the renew "
                "deadline so a hung request cannot outlive the leader's term."},
        {.name = "kubernetes.token_reread_s", .type = CONFIG_INT,
         .offset = F(kubernetes.token_reread_s), .def = "60", .min = 1, .max = 3600,
         .doc = "How often the service-account token file is read again (projected tokens "
                "rotate); it is also read again after any 401."},

        /* election */
        {.name = "election.lease_name", .type = CONFIG_STRING, .offset = F(election.lease_name),
         .def = "persistd-leader", .check = check_nonempty_subdomain,
         .doc = "Name of the coordination.k8s.io/v1 Lease the replicas compete for."},
        {.name = "election.lease_duration_s", .type = CONFIG_INT,
         .offset = F(election.lease_duration_s), .def = "15", .min = 1, .max = 3600,
         .doc = "How long followers wait, from the last change of the Lease they observed, "
                "before they may take it over."},
        {.name = "election.renew_deadline_s", .type = CONFIG_NUMBER,
         .offset = F(election.renew_deadline_s), .def = "10", .min = 0.1, .max = 3600,
         .doc = "The leader stops acting when it has not renewed for this long; must be less "
                "than lease_duration_s."},
        {.name = "election.retry_period_s", .type = CONFIG_NUMBER,
         .offset = F(election.retry_period_s), .def = "2", .min = 0.05, .max = 600,
         .doc = "Interval between renewals by the leader and acquisition attempts by followers "
                "(followers add jitter); renew_deadline_s must exceed 1.2 times this."},
        {.name = "election.leader_label", .type = CONFIG_STRING, .offset = F(election.leader_label),
         .def = "persistd.io/leader", .check = check_label_key,
         .doc = "Label set to \"true\" on the leader's pod, so a Service selecting it reaches "
                "the leader only."},
        {.name = "election.shutdown_grace_s", .type = CONFIG_INT,
         .offset = F(election.shutdown_grace_s), .def = "20", .min = 0, .max = 3600,
         .doc = "On SIGTERM, how long the leader waits for commands in flight before it "
                "releases the Lease. Keep the pod's terminationGracePeriodSeconds above it."},

        /* postgres */
        {.name = "postgres.dsn", .type = CONFIG_STRING, .offset = F(postgres.dsn), .def = "",
         .check = check_dsn,
         .doc = "libpq connection string without a password (host=... dbname=... user=...). "
                "Empty: libpq's PG* environment variables."},
        {.name = "postgres.dsn_file", .type = CONFIG_STRING, .offset = F(postgres.dsn_file),
         .def = "", .flags = CONFIG_SECRET_FILE, .secret_offset = F(postgres.dsn_secret),
         .doc = "File holding the whole connection string, password included (a mounted "
                "Secret). Exclusive with postgres.dsn."},
        {.name = "postgres.connect_timeout_s", .type = CONFIG_INT,
         .offset = F(postgres.connect_timeout_s), .def = "5", .min = 1, .max = 300,
         .doc = "Timeout for connecting to PostgreSQL; statements are bounded by the same value."},
        {.name = "postgres.resync_interval_s", .type = CONFIG_INT,
         .offset = F(postgres.resync_interval_s), .def = "60", .min = 1, .max = 86400,
         .doc = "Full re-read of tasks and instances, the safety net behind LISTEN/NOTIFY."},
        {.name = "postgres.run_retention_days", .type = CONFIG_INT,
         .offset = F(postgres.run_retention_days), .def = "30", .min = 1, .max = 3650,
         .doc = "Rows in runs older than this are deleted, in small batches."},

        /* progress */
        {.name = "progress.address", .type = CONFIG_STRING, .offset = F(progress.address),
         .def = "127.0.0.1:6379", .check = check_host_port,
         .doc = "HOST:PORT of the Redis that holds the nightly pass's pending set."},
        {.name = "progress.username", .type = CONFIG_STRING, .offset = F(progress.username),
         .def = "", .doc = "ACL user for the progress Redis; empty: the default user."},
        {.name = "progress.password_file", .type = CONFIG_STRING,
         .offset = F(progress.password_file), .def = "", .flags = CONFIG_SECRET_FILE,
         .secret_offset = F(progress.password),
         .doc = "File holding the progress Redis password; empty: no AUTH."},
        {.name = "progress.key_prefix", .type = CONFIG_STRING, .offset = F(progress.key_prefix),
         .def = "persistd", .check = check_key_prefix,
         .doc = "Prefix of every key persistd writes there (<prefix>:pass:<date>:pending)."},

        /* schedule */
        {.name = "schedule.timezone", .type = CONFIG_STRING, .offset = F(schedule.timezone),
         .def = "UTC", .check = check_timezone,
         .doc = "IANA time zone of every cron schedule and of the nightly start."},
        {.name = "schedule.preload_minute", .type = CONFIG_INT,
         .offset = F(schedule.preload_minute), .def = "40", .min = 0, .max = 59,
         .doc = "Minute of each hour at which the next hour's slots are loaded and planned."},
        {.name = "schedule.max_plan_delay_s", .type = CONFIG_INT,
         .offset = F(schedule.max_plan_delay_s), .def = "900", .min = 0, .max = 86400,
         .doc = "An hour whose plan ends later than this past the hour raises a Warning event "
                "and a metric."},

        /* pools */
        {.name = "pools.default_limit", .type = CONFIG_INT, .offset = F(pools.default_limit),
         .def = "1", .min = 1, .max = 1024,
         .doc = "Most saves that may run at once in a pool that has no entry in pools.limits."},
        {.name = "pools.limits", .type = CONFIG_POOL_LIMITS, .offset = F(pools.limits), .def = "{}",
         .min = 1, .max = 1024,
         .doc = "Per-pool limits: a mapping from pool name to the most saves at once."},

        /* nightly */
        {.name = "nightly.enabled", .type = CONFIG_BOOL, .offset = F(nightly.enabled),
         .def = "true", .doc = "Run the nightly pass over every enabled instance."},
        {.name = "nightly.start", .type = CONFIG_STRING, .offset = F(nightly.start),
         .def = "00:00", .check = check_hhmm,
         .doc = "Time of day (HH:MM, schedule.timezone) at which the pass starts."},
        {.name = "nightly.window_h", .type = CONFIG_INT, .offset = F(nightly.window_h), .def = "6",
         .min = 1, .max = 24,
         .doc = "Hours the pass should fit in; an ETA beyond it raises a Warning."},
        {.name = "nightly.max_attempts", .type = CONFIG_INT, .offset = F(nightly.max_attempts),
         .def = "3", .min = 1, .max = 100,
         .doc = "Attempts per instance before it is recorded failed for this pass."},
        {.name = "nightly.retry_backoff_s", .type = CONFIG_INT, .offset = F(nightly.retry_backoff_s),
         .def = "30", .min = 0, .max = 3600,
         .doc = "Wait before the first retry of an instance; doubled for each further attempt."},
        {.name = "nightly.skip_if_saved_within_h", .type = CONFIG_INT,
         .offset = F(nightly.skip_if_saved_within_h), .def = "0", .min = 0, .max = 168,
         .doc = "Skip an instance that had a successful save this many hours before the pass; "
                "0 saves every instance."},

        /* driver */
        {.name = "driver.connect_timeout_ms", .type = CONFIG_INT,
         .offset = F(driver.connect_timeout_ms), .def = "2000", .min = 10, .max = 60000,
         .doc = "Timeout for connecting to an instance."},
        {.name = "driver.command_timeout_ms", .type = CONFIG_INT,
         .offset = F(driver.command_timeout_ms), .def = "5000", .min = 10, .max = 300000,
         .doc = "Timeout of every command sent to an instance."},
        {.name = "driver.manage_save_config", .type = CONFIG_BOOL,
         .offset = F(driver.manage_save_config), .def = "true",
         .doc = "Apply CONFIG SET save \"\" to managed instances, verify it, and fix drift."},
        {.name = "driver.config_rewrite", .type = CONFIG_BOOL, .offset = F(driver.config_rewrite),
         .def = "false",
         .doc = "Also CONFIG REWRITE, so the change survives a restart of an instance that has "
                "a config file."},
        {.name = "driver.save_check_interval_s", .type = CONFIG_INT,
         .offset = F(driver.save_check_interval_s), .def = "300", .min = 10, .max = 86400,
         .doc = "How often each instance's save setting is checked for drift."},
        {.name = "driver.write_rate_mb_s", .type = CONFIG_NUMBER, .offset = F(driver.write_rate_mb_s),
         .def = "100", .min = 0.1, .max = 100000,
         .doc = "Initial write rate (MB/s) for estimates, until an instance has its own."},
        {.name = "driver.fork_ms_per_gb", .type = CONFIG_NUMBER, .offset = F(driver.fork_ms_per_gb),
         .def = "20", .min = 0, .max = 100000,
         .doc = "Initial fork cost (ms per GB of used memory) for estimates."},
        {.name = "driver.timeout_factor", .type = CONFIG_NUMBER, .offset = F(driver.timeout_factor),
         .def = "4", .min = 1, .max = 1000,
         .doc = "A save times out after max(min_timeout_s, timeout_factor x estimate)."},
        {.name = "driver.min_timeout_s", .type = CONFIG_INT, .offset = F(driver.min_timeout_s),
         .def = "60", .min = 1, .max = 86400, .doc = "Lower bound of a save's timeout."},
        {.name = "driver.poll_min_ms", .type = CONFIG_INT, .offset = F(driver.poll_min_ms),
         .def = "20", .min = 1, .max = 60000,
         .doc = "Shortest interval between coarse INFO polls while a save runs; near the "
                "expected end they go down to 5 ms (docs/driver.md)."},
        {.name = "driver.poll_max_ms", .type = CONFIG_INT, .offset = F(driver.poll_max_ms),
         .def = "2000", .min = 1, .max = 600000,
         .doc = "Longest interval between INFO polls; the interval grows with the estimate."},
        {.name = "driver.estimate_weight", .type = CONFIG_NUMBER,
         .offset = F(driver.estimate_weight), .def = "0.3", .min = 0.01, .max = 1,
         .doc = "Weight of the newest save in the moving averages of write rate and fork cost."},

        /* http */
        {.name = "http.listen", .type = CONFIG_STRING, .offset = F(http.listen),
         .def = "0.0.0.0:8080", .check = check_host_port,
         .doc = "Address of the HTTP API, /healthz, /readyz and /metrics."},
        {.name = "http.token_file", .type = CONFIG_STRING, .offset = F(http.token_file), .def = "",
         .flags = CONFIG_SECRET_FILE, .secret_offset = F(http.token),
         .doc = "File holding the bearer token that /v1 requires. Empty: /v1 answers 401 to "
                "every request."},
        {.name = "http.max_body_bytes", .type = CONFIG_INT, .offset = F(http.max_body_bytes),
         .def = "65536", .min = 1024, .max = 16777216,
         .doc = "Largest request body accepted (413 beyond)."},

        /* log */
        {.name = "log.level", .type = CONFIG_CHOICE, .offset = F(log.level), .def = "info",
         .choices = log_levels, .doc = "Least severe level written."},
        {.name = "log.format", .type = CONFIG_CHOICE, .offset = F(log.format), .def = "json",
         .choices = log_formats, .doc = "json: one JSON object per line; text: for people."},
};
/* clang-format on */
const size_t config_keys_count = ELEMENTSOF(config_keys);

const struct config_key *config_key_find(const char *name)
{
        for (size_t i = 0; i < config_keys_count; i++)
                if (streq(config_keys[i].name, name))
                        return &config_keys[i];
        return NULL;
}
