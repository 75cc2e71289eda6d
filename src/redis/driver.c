/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The instance driver over hiredis (blocking API, socket timeouts): connection and AUTH,
 * capability detection, the `save ""` management and the save state machine of
 * docs/driver.md, plus the per-instance estimator and the cancel token.
 */
#include "redis/driver.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config/config.h"
#include "core/clock.h"
#include "core/macro.h"
#include "core/util.h"

#define GIB             (1024.0 * 1024.0 * 1024.0)
#define LEARN_MIN_BYTES ((int64_t)1024 * 1024)
/* Bounds of the learned numbers (the configuration's own bounds, in the driver's units). */
#define RATE_MIN (0.1 * 1024 * 1024)
#define RATE_MAX (100000.0 * 1024 * 1024)
#define FORK_MAX 100000.0
/* Commands that could start a save, per call: a guard against a server that keeps racing us. */
#define MAX_SAVE_COMMANDS 8
/* Reconnect attempts after losing the connection while a save runs. */
#define RECONNECT_ATTEMPTS 3

/* ---- Options ----------------------------------------------------------------------------- */

void driver_options_from_config(const struct config *c, struct driver_options *ret)
{
        *ret = (struct driver_options){
            .connect_timeout_ms = c->driver.connect_timeout_ms,
            .command_timeout_ms = c->driver.command_timeout_ms,
            .poll_min_ms = c->driver.poll_min_ms,
            .poll_max_ms = c->driver.poll_max_ms,
            .timeout_factor = c->driver.timeout_factor,
            .min_timeout_s = c->driver.min_timeout_s,
        };
}

/* ---- Estimates ---------------------------------------------------------------------------- */

struct driver_estimator {
        pthread_mutex_t lock;
        double write_rate; /* bytes per second */
        double fork_ms_per_gib;
        double weight;
        int64_t used_memory;
};

static bool estimator_values_ok(double rate, double fork)
{
        return isfinite(rate) && isfinite(fork) && rate > 0 && fork >= 0;
}

struct driver_estimator *driver_estimator_new(double write_rate_bytes_s, double fork_ms_per_gib,
                                              double weight)
{
        if (!estimator_values_ok(write_rate_bytes_s, fork_ms_per_gib) || !isfinite(weight) ||
            weight <= 0 || weight > 1)
                return NULL;
        struct driver_estimator *e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        pthread_mutex_init(&e->lock, NULL);
        e->write_rate = write_rate_bytes_s;
        e->fork_ms_per_gib = fork_ms_per_gib;
        e->weight = weight;
        return e;
}

void driver_estimator_free(struct driver_estimator *e)
{
        if (!e)
                return;
        pthread_mutex_destroy(&e->lock);
        free(e);
}

static int64_t estimate_locked(const struct driver_estimator *e, int64_t used_memory)
{
        double bytes = used_memory > 0 ? (double)used_memory : 0;
        double us = e->fork_ms_per_gib * 1000.0 * (bytes / GIB) + bytes / e->write_rate * 1e6;
        if (us > 9.0e15)
                us = 9.0e15; /* stays far inside int64_t */
        return (int64_t)us;
}

int64_t driver_estimator_estimate_us(struct driver_estimator *e, int64_t used_memory)
{
        pthread_mutex_lock(&e->lock);
        int64_t us = estimate_locked(e, used_memory);
        pthread_mutex_unlock(&e->lock);
        return us;
}

int64_t driver_estimator_current_us(struct driver_estimator *e)
{
        pthread_mutex_lock(&e->lock);
        int64_t us = estimate_locked(e, e->used_memory);
        pthread_mutex_unlock(&e->lock);
        return us;
}

void driver_estimator_observe_memory(struct driver_estimator *e, int64_t used_memory)
{
        if (used_memory < 0)
                return;
        pthread_mutex_lock(&e->lock);
        e->used_memory = used_memory;
        pthread_mutex_unlock(&e->lock);
}

void driver_estimator_get(struct driver_estimator *e, double *ret_write_rate_bytes_s,
                          double *ret_fork_ms_per_gib)
{
        pthread_mutex_lock(&e->lock);
        *ret_write_rate_bytes_s = e->write_rate;
        *ret_fork_ms_per_gib = e->fork_ms_per_gib;
        pthread_mutex_unlock(&e->lock);
}

int driver_estimator_set(struct driver_estimator *e, double write_rate_bytes_s,
                         double fork_ms_per_gib)
{
        if (!estimator_values_ok(write_rate_bytes_s, fork_ms_per_gib))
                return -EINVAL;
        pthread_mutex_lock(&e->lock);
        e->write_rate = write_rate_bytes_s;
        e->fork_ms_per_gib = fork_ms_per_gib;
        pthread_mutex_unlock(&e->lock);
        return 0;
}

bool driver_estimator_learn(struct driver_estimator *e, int64_t used_memory, int64_t fork_us,
                            int64_t total_us)
{
        bool changed = false;

        if (used_memory <= 0 || total_us <= 0)
                return false;
        pthread_mutex_lock(&e->lock);
        double gib = (double)used_memory / GIB;
        if (fork_us >= 0 && fork_us <= total_us) {
                double sample = CLAMP((double)fork_us / 1000.0 / gib, 0.0, FORK_MAX);
                e->fork_ms_per_gib = e->weight * sample + (1 - e->weight) * e->fork_ms_per_gib;
                changed = true;
        } else {
                fork_us = 0;
        }
        if (used_memory >= LEARN_MIN_BYTES) {
                int64_t write_us = total_us - fork_us;
                if (write_us < 1000)
                        write_us = 1000; /* polling granularity: never claim more than that */
                double sample =
                    CLAMP((double)used_memory / ((double)write_us / 1e6), RATE_MIN, RATE_MAX);
                e->write_rate = e->weight * sample + (1 - e->weight) * e->write_rate;
                changed = true;
        }
        pthread_mutex_unlock(&e->lock);
        return changed;
}

/* ---- Cancellation ------------------------------------------------------------------------- */

struct driver_cancel {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool requested;
};

struct driver_cancel *driver_cancel_new(void)
{
        struct driver_cancel *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        pthread_mutex_init(&c->lock, NULL);
        (void)clock_cond_init(&c->cond);
        return c;
}

void driver_cancel_free(struct driver_cancel *c)
{
        if (!c)
                return;
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

void driver_cancel_request(struct driver_cancel *c)
{
        pthread_mutex_lock(&c->lock);
        c->requested = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
}

bool driver_cancel_is_requested(struct driver_cancel *c)
{
        pthread_mutex_lock(&c->lock);
        bool r = c->requested;
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* Sleep `us`, or less when cancelled (or without a token). Returns true when cancelled. */
static bool cancel_sleep(struct driver_cancel *c, int64_t us)
{
        if (us <= 0)
                return c ? driver_cancel_is_requested(c) : false;
        if (!c) {
                clock_sleep_us(us);
                return false;
        }
        int64_t deadline = clock_mono_us() + us;
        pthread_mutex_lock(&c->lock);
        while (!c->requested)
                if (clock_cond_wait_until(&c->cond, &c->lock, deadline) == ETIMEDOUT)
                        break;
        bool r = c->requested;
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- Instances ------------------------------------------------------------------------------ */

struct driver_instance {
        char *id;
        char *host;
        uint16_t port;
        char *pod_namespace, *pod_name;
        char *username;
        char *password;
        char *secret_namespace, *secret_name, *secret_key;
        struct driver_options opts;
        const struct driver_resolver *resolver;
        struct driver_estimator *estimator;

        redisContext *ctx;
        char addr[300]; /* "host:port" of the current or last connection */
        char run_id[48];
        struct driver_caps caps;
        char errstr[512];
        int last_io; /* why the last command got no reply: a connect error, or -EIO */
};

static void set_error(struct driver_instance *inst, const char *fmt, ...) _printf_(2, 3);
static void set_error(struct driver_instance *inst, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(inst->errstr, sizeof(inst->errstr), fmt, ap);
        va_end(ap);
}

const char *driver_instance_errstr(const struct driver_instance *inst)
{
        return inst->errstr;
}

const char *driver_cap_to_string(enum driver_cap c)
{
        switch (c) {
        case DRIVER_CAP_YES:
                return "yes";
        case DRIVER_CAP_NO:
                return "no";
        case DRIVER_CAP_UNKNOWN:
                break;
        }
        return "unknown";
}

const char *driver_outcome_to_string(enum driver_outcome o)
{
        static const char *const names[] = {
            [DRIVER_SUCCEEDED] = "succeeded", [DRIVER_FAILED] = "failed",
            [DRIVER_TIMED_OUT] = "timed_out", [DRIVER_CANCELLED] = "cancelled",
            [DRIVER_LOST] = "lost",           [DRIVER_NOTHING] = "nothing",
        };
        if ((size_t)o < ELEMENTSOF(names) && names[o])
                return names[o];
        return "unknown";
}

static int dup_opt(const char *s, char **ret)
{
        *ret = NULL;
        if (strempty(s))
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

void driver_instance_free(struct driver_instance *inst)
{
        if (!inst)
                return;
        driver_instance_disconnect(inst);
        free(inst->id);
        free(inst->host);
        free(inst->pod_namespace);
        free(inst->pod_name);
        free(inst->username);
        secret_free(inst->password);
        free(inst->secret_namespace);
        free(inst->secret_name);
        free(inst->secret_key);
        free(inst);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct driver_instance *, driver_instance_free);

static int target_error(char **ret_error, const char *msg)
{
        if (ret_error)
                *ret_error = strdup(msg);
        return -EINVAL;
}

int driver_instance_new(const struct driver_target *t, const struct driver_options *opts,
                        const struct driver_resolver *resolver, struct driver_estimator *estimator,
                        struct driver_instance **ret, char **ret_error)
{
        _cleanup_(driver_instance_freep) struct driver_instance *inst = NULL;
        bool by_host = !strempty(t->host);
        bool by_pod = !strempty(t->pod_namespace) || !strempty(t->pod_name);
        bool by_secret =
            !strempty(t->secret_namespace) || !strempty(t->secret_name) || !strempty(t->secret_key);

        if (ret_error)
                *ret_error = NULL;
        if (by_host == by_pod)
                return target_error(ret_error, "exactly one of host and pod reference is needed");
        if (by_pod && (strempty(t->pod_namespace) || strempty(t->pod_name)))
                return target_error(ret_error, "a pod reference needs a namespace and a name");
        if (t->port == 0)
                return target_error(ret_error, "the port is missing");
        if (by_secret &&
            (strempty(t->secret_namespace) || strempty(t->secret_name) || strempty(t->secret_key)))
                return target_error(ret_error,
                                    "a password Secret needs a namespace, a name and a key");
        if (by_secret && !strempty(t->password))
                return target_error(ret_error, "both an inline password and a Secret are given");
        if ((by_pod && (!resolver || !resolver->resolve_pod)) ||
            (by_secret && (!resolver || !resolver->read_secret)))
                return target_error(ret_error, "no Kubernetes resolver for this target");

        inst = calloc(1, sizeof(*inst));
        if (!inst)
                return -ENOMEM;
        if (dup_opt(t->id ? t->id : "", &inst->id) < 0 || dup_opt(t->host, &inst->host) < 0 ||
            dup_opt(t->pod_namespace, &inst->pod_namespace) < 0 ||
            dup_opt(t->pod_name, &inst->pod_name) < 0 ||
            dup_opt(t->username, &inst->username) < 0 ||
            dup_opt(t->password, &inst->password) < 0 ||
            dup_opt(t->secret_namespace, &inst->secret_namespace) < 0 ||
            dup_opt(t->secret_name, &inst->secret_name) < 0 ||
            dup_opt(t->secret_key, &inst->secret_key) < 0)
                return -ENOMEM;
        inst->port = t->port;
        inst->opts = *opts;
        inst->resolver = resolver;
        inst->estimator = estimator;
        if (inst->host)
                snprintf(inst->addr, sizeof(inst->addr), "%s:%u", inst->host, inst->port);
        else
                snprintf(inst->addr, sizeof(inst->addr), "pod %s/%s", inst->pod_namespace,
                         inst->pod_name);
        *ret = TAKE_PTR(inst);
        return 0;
}

void driver_instance_disconnect(struct driver_instance *inst)
{
        if (inst->ctx) {
                redisFree(inst->ctx);
                inst->ctx = NULL;
        }
}

static struct timeval ms_to_tv(int ms)
{
        return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

static int io_errno(const redisContext *c)
{
        if (c->err == REDIS_ERR_IO) {
                if (c->errstr[0] && strstr(c->errstr, "refused"))
                        return -ECONNREFUSED;
                if (strstr(c->errstr, "timed out") || strstr(c->errstr, "Resource temporarily"))
                        return -ETIMEDOUT;
        }
        return -EIO;
}

/* Run a command; NULL on I/O error (the connection is dropped, errstr says why). */
static redisReply *command(struct driver_instance *inst, int argc, const char **argv)
{
        size_t lens[8];

        if (argc > (int)ELEMENTSOF(lens)) {
                set_error(inst, "internal error: too many arguments for %s", argv[0]);
                inst->last_io = -EINVAL;
                return NULL;
        }
        if (!inst->ctx) {
                int r = driver_instance_connect(inst);
                if (r < 0) {
                        inst->last_io = r;
                        return NULL;
                }
        }
        for (int i = 0; i < argc; i++)
                lens[i] = strlen(argv[i]);
        redisReply *r = redisCommandArgv(inst->ctx, argc, argv, lens);
        if (!r) {
                set_error(inst, "connection to %s lost during %s: %s", inst->addr, argv[0],
                          inst->ctx->errstr[0] ? inst->ctx->errstr : "no reply");
                inst->last_io = -EIO;
                driver_instance_disconnect(inst);
        }
        return r;
}

#define COMMAND(inst, ...)                                                                         \
        command(inst, (int)ELEMENTSOF(((const char *[]){__VA_ARGS__})),                            \
                (const char *[]){__VA_ARGS__})

DEFINE_TRIVIAL_CLEANUP_FUNC(redisReply *, freeReplyObject);
#define _cleanup_reply_ _cleanup_(freeReplyObjectp)

static bool reply_is_error(const redisReply *r)
{
        return r->type == REDIS_REPLY_ERROR;
}

/* The error's code: "NOPERM", "LOADING", "ERR"... */
static bool error_code_is(const redisReply *r, const char *code)
{
        size_t n = strlen(code);
        return reply_is_error(r) && r->str && strncmp(r->str, code, n) == 0 &&
               (r->str[n] == ' ' || r->str[n] == '\0');
}

static bool error_mentions(const redisReply *r, const char *what)
{
        return reply_is_error(r) && r->str && strcasestr(r->str, what);
}

static bool is_unknown_command(const redisReply *r)
{
        return error_mentions(r, "unknown command");
}

static int resolve(struct driver_instance *inst, char **ret_host, char **ret_password)
{
        char *err = NULL;
        int r;

        *ret_host = NULL;
        *ret_password = NULL;
        if (inst->host) {
                *ret_host = strdup(inst->host);
        } else {
                r = inst->resolver->resolve_pod(inst->resolver->userdata, inst->pod_namespace,
                                                inst->pod_name, ret_host, &err);
                if (r < 0) {
                        set_error(inst, "cannot resolve pod %s/%s: %s", inst->pod_namespace,
                                  inst->pod_name,
                                  err            ? err
                                  : r == -ENOENT ? "no such pod"
                                  : r == -EAGAIN ? "the pod has no IP yet"
                                                 : strerror(-r));
                        free(err);
                        return r;
                }
        }
        if (!*ret_host)
                return -ENOMEM;
        if (inst->password) {
                *ret_password = strdup(inst->password);
                if (!*ret_password)
                        return -ENOMEM;
        } else if (inst->secret_name) {
                r = inst->resolver->read_secret(inst->resolver->userdata, inst->secret_namespace,
                                                inst->secret_name, inst->secret_key, ret_password,
                                                &err);
                if (r < 0) {
                        set_error(inst, "cannot read the password from Secret %s/%s key \"%s\": %s",
                                  inst->secret_namespace, inst->secret_name, inst->secret_key,
                                  err            ? err
                                  : r == -ENOENT ? "not found"
                                                 : strerror(-r));
                        free(err);
                        free(*ret_host);
                        *ret_host = NULL;
                        return r;
                }
        }
        return 0;
}

int driver_instance_connect(struct driver_instance *inst)
{
        _cleanup_free_ char *host = NULL;
        char *password = NULL;
        int r;

        if (inst->ctx)
                return 0;
        r = resolve(inst, &host, &password);
        if (r < 0)
                return r;
        if (strchr(host, ':'))
                snprintf(inst->addr, sizeof(inst->addr), "[%s]:%u", host, inst->port);
        else
                snprintf(inst->addr, sizeof(inst->addr), "%s:%u", host, inst->port);

        redisContext *c =
            redisConnectWithTimeout(host, inst->port, ms_to_tv(inst->opts.connect_timeout_ms));
        if (!c) {
                secret_free(password);
                set_error(inst, "cannot connect to %s: out of memory", inst->addr);
                return -ENOMEM;
        }
        if (c->err) {
                r = io_errno(c);
                set_error(inst, "cannot connect to %s: %s", inst->addr, c->errstr);
                redisFree(c);
                secret_free(password);
                return r;
        }
        /* hiredis 0.14 opens its socket without SOCK_CLOEXEC. */
        int fl = fcntl(c->fd, F_GETFD);
        if (fl >= 0)
                (void)fcntl(c->fd, F_SETFD, fl | FD_CLOEXEC);
        /* AUTH gets the connect timeout; every later command the command timeout. */
        redisSetTimeout(c, ms_to_tv(inst->opts.connect_timeout_ms));
        inst->ctx = c;

        if (password) {
                redisReply *rep;
                if (inst->username)
                        rep = COMMAND(inst, "AUTH", inst->username, password);
                else
                        rep = COMMAND(inst, "AUTH", password);
                secret_free(password);
                if (!rep)
                        return inst->last_io;
                /* Redis 6+ to a server without a password: harmless, carry on. */
                bool no_password_set = reply_is_error(rep) &&
                                       (error_mentions(rep, "without any password configured") ||
                                        error_mentions(rep, "no password is set"));
                if (reply_is_error(rep) && !no_password_set) {
                        set_error(inst, "authentication to %s%s%s refused: %s", inst->addr,
                                  inst->username ? " as user " : "",
                                  inst->username ? inst->username : "", rep->str);
                        freeReplyObject(rep);
                        driver_instance_disconnect(inst);
                        return -EACCES;
                }
                freeReplyObject(rep);
        }
        redisSetTimeout(c, ms_to_tv(inst->opts.command_timeout_ms));
        return 0;
}

/* Interpret a reply to INFO. */
static int parse_info_reply(struct driver_instance *inst, const redisReply *rep, struct rinfo *ret)
{
        if (rep->type == REDIS_REPLY_ERROR) {
                set_error(inst, "INFO refused by %s: %s", inst->addr, rep->str);
                return error_code_is(rep, "NOPERM") || error_code_is(rep, "NOAUTH") ? -EPERM
                                                                                    : -EPROTO;
        }
        if (rep->type != REDIS_REPLY_STRING || rinfo_parse(rep->str, rep->len, ret) < 0) {
                set_error(inst, "INFO from %s is not INFO text", inst->addr);
                return -EPROTO;
        }
        if (ret->has_run_id)
                memcpy(inst->run_id, ret->run_id, sizeof(inst->run_id));
        if (ret->has_version) {
                memcpy(inst->caps.version, ret->version, sizeof(inst->caps.version));
                inst->caps.version_num = ret->version_num;
        }
        if (ret->has_config_file)
                inst->caps.has_config_file = ret->config_file[0] != '\0';
        if (inst->estimator && ret->has_used_memory)
                driver_estimator_observe_memory(inst->estimator, ret->used_memory);
        return 0;
}

int driver_instance_info(struct driver_instance *inst, struct rinfo *ret)
{
        _cleanup_reply_ redisReply *rep = COMMAND(inst, "INFO");
        if (!rep)
                return inst->last_io;
        return parse_info_reply(inst, rep, ret);
}

/* ---- Capabilities --------------------------------------------------------------------------- */

static void cap_no(struct driver_instance *inst, enum driver_cap *cap, const char *fmt, ...)
    _printf_(3, 4);
static void cap_no(struct driver_instance *inst, enum driver_cap *cap, const char *fmt, ...)
{
        va_list ap;
        *cap = DRIVER_CAP_NO;
        va_start(ap, fmt);
        vsnprintf(inst->caps.detail, sizeof(inst->caps.detail), fmt, ap);
        va_end(ap);
}

/* ACL DRYRUN (7.0+): YES, NO or UNKNOWN for `cmd` run by `user`. */
static enum driver_cap dryrun(struct driver_instance *inst, const char *user, const char *cmd,
                              char *why, size_t why_size)
{
        const char *argv[] = {"ACL", "DRYRUN", user, cmd};
        const char *argv_sched[] = {"ACL", "DRYRUN", user, cmd, "SCHEDULE"};
        bool sched = streq(cmd, "BGSAVE");
        _cleanup_reply_ redisReply *rep =
            sched ? command(inst, 5, argv_sched) : command(inst, 4, argv);

        if (!rep || rep->type == REDIS_REPLY_ERROR)
                return DRIVER_CAP_UNKNOWN;
        if (rep->type == REDIS_REPLY_STATUS && streq(rep->str, "OK"))
                return DRIVER_CAP_YES;
        if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS) {
                snprintf(why, why_size, "%s", rep->str);
                return DRIVER_CAP_NO;
        }
        return DRIVER_CAP_UNKNOWN;
}

int driver_instance_detect(struct driver_instance *inst, struct driver_caps *ret)
{
        struct rinfo info = {0};
        int r;

        r = driver_instance_info(inst, &info);
        if (r < 0)
                return r;
        inst->caps.detail[0] = '\0';
        inst->caps.bgsave_schedule = rinfo_version_at_least(&info, 3, 2) ? DRIVER_CAP_YES
                                     : info.version_num                  ? DRIVER_CAP_NO
                                                                         : DRIVER_CAP_UNKNOWN;

        {
                _cleanup_reply_ redisReply *rep = COMMAND(inst, "CONFIG", "GET", "save");
                if (!rep)
                        return inst->last_io;
                if (rep->type == REDIS_REPLY_ARRAY)
                        inst->caps.config = DRIVER_CAP_YES;
                else if (error_code_is(rep, "NOPERM") || is_unknown_command(rep))
                        cap_no(inst, &inst->caps.config, "CONFIG: %s", rep->str);
                else
                        inst->caps.config = DRIVER_CAP_UNKNOWN;
        }

        enum driver_cap exists[2] = {DRIVER_CAP_UNKNOWN, DRIVER_CAP_UNKNOWN};
        {
                _cleanup_reply_ redisReply *rep =
                    COMMAND(inst, "COMMAND", "INFO", "bgsave", "bgrewriteaof");
                if (!rep)
                        return inst->last_io;
                if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
                        for (size_t i = 0; i < 2; i++)
                                exists[i] = rep->element[i]->type == REDIS_REPLY_ARRAY
                                                ? DRIVER_CAP_YES
                                                : DRIVER_CAP_NO;
        }

        /* Permission: ACL DRYRUN as ourselves on 7.0+; no ACLs before 6.0. */
        enum driver_cap perm[2] = {DRIVER_CAP_UNKNOWN, DRIVER_CAP_UNKNOWN};
        char why[2][200] = {"", ""};
        if (info.version_num && !rinfo_version_at_least(&info, 6, 0)) {
                perm[0] = perm[1] = DRIVER_CAP_YES;
        } else if (rinfo_version_at_least(&info, 7, 0)) {
                _cleanup_reply_ redisReply *who = COMMAND(inst, "ACL", "WHOAMI");
                if (!who)
                        return inst->last_io;
                if (who->type == REDIS_REPLY_STRING || who->type == REDIS_REPLY_STATUS) {
                        perm[0] = dryrun(inst, who->str, "BGSAVE", why[0], sizeof(why[0]));
                        perm[1] = dryrun(inst, who->str, "BGREWRITEAOF", why[1], sizeof(why[1]));
                        if (!inst->ctx)
                                return inst->last_io;
                }
        }

        enum driver_cap *caps[2] = {&inst->caps.bgsave, &inst->caps.bgrewriteaof};
        const char *names[2] = {"BGSAVE", "BGREWRITEAOF"};
        for (int i = 0; i < 2; i++) {
                if (exists[i] == DRIVER_CAP_NO)
                        cap_no(inst, caps[i], "%s is not available (renamed or disabled)",
                               names[i]);
                else if (perm[i] == DRIVER_CAP_NO)
                        cap_no(inst, caps[i], "%s is not permitted: %s", names[i], why[i]);
                else if (exists[i] == DRIVER_CAP_YES && perm[i] == DRIVER_CAP_YES)
                        *caps[i] = DRIVER_CAP_YES;
                else
                        *caps[i] = DRIVER_CAP_UNKNOWN;
        }
        *ret = inst->caps;
        return 0;
}

void driver_instance_caps(const struct driver_instance *inst, struct driver_caps *ret)
{
        *ret = inst->caps;
}

/* ---- save "" --------------------------------------------------------------------------------- */

/* CONFIG GET save into buf. 0, -EPERM, -EIO, -EPROTO. */
static int config_get_save(struct driver_instance *inst, char *buf, size_t size)
{
        _cleanup_reply_ redisReply *rep = COMMAND(inst, "CONFIG", "GET", "save");
        if (!rep)
                return inst->last_io;
        if (error_code_is(rep, "NOPERM") || is_unknown_command(rep)) {
                cap_no(inst, &inst->caps.config, "CONFIG: %s", rep->str);
                set_error(inst, "CONFIG GET save refused by %s: %s", inst->addr, rep->str);
                return -EPERM;
        }
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[1]->type != REDIS_REPLY_STRING) {
                set_error(inst, "unexpected reply to CONFIG GET save from %s%s%s", inst->addr,
                          reply_is_error(rep) ? ": " : "", reply_is_error(rep) ? rep->str : "");
                return -EPROTO;
        }
        inst->caps.config = DRIVER_CAP_YES;
        snprintf(buf, size, "%s", rep->element[1]->str);
        return 0;
}

int driver_instance_disable_save(struct driver_instance *inst, bool rewrite, bool first,
                                 struct driver_save_config_result *ret)
{
        struct driver_save_config_result res = {0};
        char now[sizeof(res.seen)] = "";
        int r;

        r = config_get_save(inst, res.seen, sizeof(res.seen));
        if (r < 0)
                return r;
        res.drifted = res.seen[0] != '\0';
        if (res.drifted) {
                _cleanup_reply_ redisReply *rep = COMMAND(inst, "CONFIG", "SET", "save", "");
                if (!rep)
                        return inst->last_io;
                if (reply_is_error(rep)) {
                        set_error(inst, "CONFIG SET save \"\" refused by %s: %s", inst->addr,
                                  rep->str);
                        *ret = res;
                        if (error_code_is(rep, "NOPERM") || is_unknown_command(rep)) {
                                cap_no(inst, &inst->caps.config_set, "CONFIG SET: %s", rep->str);
                                return -EPERM;
                        }
                        return -ENOTSUP;
                }
                r = config_get_save(inst, now, sizeof(now));
                if (r < 0)
                        return r;
                if (now[0] != '\0') {
                        cap_no(inst, &inst->caps.config_set,
                               "CONFIG SET save \"\" did not take effect");
                        set_error(inst,
                                  "CONFIG SET save \"\" did not take effect on %s: CONFIG GET "
                                  "save still answers \"%s\"",
                                  inst->addr, now);
                        *ret = res;
                        return -ENOTSUP;
                }
                res.fixed = true;
        }
        inst->caps.config_set = DRIVER_CAP_YES;

        if (rewrite && (res.drifted || first)) {
                struct rinfo info = {0};
                r = driver_instance_info(inst, &info);
                if (r < 0)
                        return r;
                if (info.has_config_file && info.config_file[0] != '\0') {
                        _cleanup_reply_ redisReply *rep = COMMAND(inst, "CONFIG", "REWRITE");
                        if (!rep)
                                return inst->last_io;
                        if (reply_is_error(rep)) {
                                set_error(inst, "CONFIG REWRITE failed on %s: %s", inst->addr,
                                          rep->str);
                                *ret = res;
                                return -EPROTO;
                        }
                        res.rewritten = true;
                }
        }
        *ret = res;
        return 0;
}

/* ---- One save ------------------------------------------------------------------------------- */

struct save_run {
        struct driver_instance *inst;
        const struct driver_save_request *req;
        struct driver_save_result *res;
        int64_t deadline_mono;
        int64_t poll_us;      /* coarse interval, also the reconnect spacing */
        int64_t fine_poll_us; /* interval in the window around the expected end */
        int64_t fine_from;    /* that window, monotonic µs (empty without an estimate) */
        int64_t fine_until;
        const char *cmd; /* "BGSAVE" / "BGREWRITEAOF" */
};

static bool own_child(const struct save_run *s, const struct rinfo *i)
{
        return s->req->action == DRIVER_ACTION_BGSAVE ? i->rdb_bgsave_in_progress
                                                      : i->aof_rewrite_in_progress;
}

static bool other_child(const struct save_run *s, const struct rinfo *i)
{
        return s->req->action == DRIVER_ACTION_BGSAVE ? i->aof_rewrite_in_progress
                                                      : i->rdb_bgsave_in_progress;
}

static bool counter_of(const struct save_run *s, const struct rinfo *i, int64_t *ret)
{
        if (s->req->action == DRIVER_ACTION_BGSAVE) {
                *ret = i->rdb_saves;
                return i->has_rdb_saves;
        }
        *ret = i->aof_rewrites;
        return i->has_aof_rewrites;
}

static int64_t lastsave_of(const struct save_run *s, const struct rinfo *i)
{
        if (s->req->action == DRIVER_ACTION_BGSAVE && i->has_rdb_last_save_time)
                return i->rdb_last_save_time;
        return -1;
}

/* The last status of this kind of child: 1 ok, 0 err, -1 unknown (Redis 2.4). */
static int status_of(const struct save_run *s, const struct rinfo *i)
{
        if (s->req->action == DRIVER_ACTION_BGSAVE)
                return i->has_rdb_last_bgsave_status ? i->rdb_last_bgsave_status == RINFO_STATUS_OK
                                                     : -1;
        return i->has_aof_last_bgrewrite_status ? i->aof_last_bgrewrite_status == RINFO_STATUS_OK
                                                : -1;
}

static void set_before(struct save_run *s, const struct rinfo *i)
{
        int64_t c = 0;
        s->res->has_counter = counter_of(s, i, &c);
        s->res->counter_before = s->res->has_counter ? c : -1;
        s->res->lastsave_before = lastsave_of(s, i);
}

static void set_after(struct save_run *s, const struct rinfo *i)
{
        int64_t c = 0;
        if (counter_of(s, i, &c))
                s->res->counter_after = c;
        s->res->lastsave_after = lastsave_of(s, i);
        s->res->fork_us = i->has_latest_fork_usec ? i->latest_fork_usec : -1;
}

static enum driver_outcome finish(struct save_run *s, enum driver_outcome o, const char *fmt, ...)
    _printf_(3, 4);
static enum driver_outcome finish(struct save_run *s, enum driver_outcome o, const char *fmt, ...)
{
        s->res->outcome = o;
        s->res->finished_wall_us = clock_wall_us();
        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(s->res->reason, sizeof(s->res->reason), fmt, ap);
                va_end(ap);
        } else {
                s->res->reason[0] = '\0';
        }
        return o;
}

#define STEP_CONTINUE (-1)

/* The shortest interval between the fine polls around a save's expected end. */
#define FINE_POLL_MIN_US (5 * USEC_PER_MSEC)

/*
 * How long to sleep before the next INFO: the coarse interval, cut short so the first fine
 * poll lands at the start of the window around the expected end; the fine interval inside it.
 */
static int64_t next_poll_us(const struct save_run *s, int64_t now)
{
        if (now >= s->fine_from && now < s->fine_until)
                return s->fine_poll_us;
        if (now < s->fine_from)
                return MAX(MIN(s->poll_us, s->fine_from - now), 1);
        return s->poll_us;
}

/* Errors after which reconnecting may help (not a refusal by the server). */
static bool is_conn_error(int r)
{
        return r < 0 && r != -EACCES && r != -EPERM && r != -EPROTO && r != -ENOMEM;
}

/*
 * Wait one poll interval (less near the deadline, at once on cancel), then read INFO. On a
 * lost connection reconnect a few times; a server that comes back with another run_id has
 * restarted and lost the child. Returns STEP_CONTINUE with *info fresh, or a final outcome.
 */
static int wait_step(struct save_run *s, struct rinfo *info)
{
        struct driver_instance *inst = s->inst;
        int64_t now = clock_mono_us();
        int r;

        if (now >= s->deadline_mono)
                return (int)finish(
                    s, DRIVER_TIMED_OUT,
                    "%s did not finish within %" PRId64 " s (estimate %" PRId64 " ms)", s->cmd,
                    s->res->timeout_us / USEC_PER_SEC, s->res->estimate_us / USEC_PER_MSEC);
        if (cancel_sleep(s->req->cancel, MIN(next_poll_us(s, now), s->deadline_mono - now)))
                return (int)finish(s, DRIVER_CANCELLED, "cancelled while %s ran", s->cmd);

        char run_id[sizeof(inst->run_id)];
        memcpy(run_id, inst->run_id, sizeof(run_id));
        r = driver_instance_info(inst, info);
        for (int attempt = 0; is_conn_error(r) && attempt < RECONNECT_ATTEMPTS; attempt++) {
                if (cancel_sleep(s->req->cancel, s->poll_us))
                        return (int)finish(s, DRIVER_CANCELLED, "cancelled while %s ran", s->cmd);
                if (clock_mono_us() >= s->deadline_mono)
                        break;
                r = driver_instance_connect(inst);
                if (r == 0)
                        r = driver_instance_info(inst, info);
        }
        if (is_conn_error(r))
                return (int)finish(s, DRIVER_LOST, "connection lost while %s ran: %s", s->cmd,
                                   inst->errstr);
        if (r < 0)
                return (int)finish(s, DRIVER_FAILED, "%s", inst->errstr);
        if (run_id[0] && info->has_run_id && !streq(run_id, info->run_id))
                return (int)finish(s, DRIVER_FAILED,
                                   "the server restarted while %s ran (run_id changed)", s->cmd);
        return STEP_CONTINUE;
}

/* A child that was already running when we looked: did it write what we want? */
static bool existing_counts(const struct save_run *s, const struct rinfo *during,
                            const struct rinfo *after)
{
        int st = status_of(s, after);

        if (st == 0)
                return false;
        if (s->req->action == DRIVER_ACTION_BGSAVE)
                /* Only a written file moves lastsave (Redis 2.4 has no status: this is the
                 * proof); a diskless replication transfer moves neither it nor rdb_saves. */
                return lastsave_of(s, during) >= 0 &&
                       lastsave_of(s, after) > lastsave_of(s, during);
        return st == 1;
}

static enum driver_outcome succeeded(struct save_run *s, const struct rinfo *info, int64_t t0_mono,
                                     bool learn)
{
        set_after(s, info);
        s->res->duration_us = clock_mono_us() - t0_mono;
        if (learn && s->inst->estimator && s->req->action == DRIVER_ACTION_BGSAVE)
                driver_estimator_learn(s->inst->estimator, s->res->used_memory, s->res->fork_us,
                                       s->res->duration_us);
        return finish(s, DRIVER_SUCCEEDED, NULL);
}

static enum driver_outcome failed_status(struct save_run *s, const struct rinfo *info)
{
        set_after(s, info);
        if (status_of(s, info) < 0) /* Redis 2.4 */
                return finish(s, DRIVER_FAILED,
                              "%s ended without a new last_save_time; the server's log has the "
                              "cause",
                              s->cmd);
        return finish(s, DRIVER_FAILED, "%s failed (%s:err); the server's log has the cause",
                      s->cmd,
                      s->req->action == DRIVER_ACTION_BGSAVE ? "rdb_last_bgsave_status"
                                                             : "aof_last_bgrewrite_status");
}

/* After "started" / "scheduled": poll until our child has come and gone. */
static enum driver_outcome wait_completion(struct save_run *s, struct rinfo *info, bool started,
                                           bool scheduled, int64_t t_sent)
{
        bool saw_child = false;
        int step;

        for (;;) {
                step = wait_step(s, info);
                if (step != STEP_CONTINUE)
                        return (enum driver_outcome)step;
                if (own_child(s, info)) {
                        saw_child = true;
                        continue;
                }
                if (scheduled &&
                    (other_child(s, info) ||
                     (s->req->action == DRIVER_ACTION_BGREWRITEAOF && info->aof_rewrite_scheduled)))
                        continue;
                int64_t c;
                bool moved;
                if (s->res->has_counter && counter_of(s, info, &c))
                        moved = c > s->res->counter_before;
                else
                        moved = started || saw_child ||
                                (lastsave_of(s, info) >= 0 &&
                                 lastsave_of(s, info) > s->res->lastsave_before);
                if (!moved)
                        continue; /* scheduled, not started yet */
                int st = status_of(s, info);
                if (st < 0) /* Redis 2.4 has no status: only an advanced lastsave proves it */
                        st = s->req->action == DRIVER_ACTION_BGREWRITEAOF ||
                             lastsave_of(s, info) > s->res->lastsave_before;
                if (st == 1)
                        return succeeded(s, info, t_sent, !scheduled);
                return failed_status(s, info);
        }
}

/*
 * An adopted save that had ended before this call looked (no child was seen) ended when
 * lastsave says, not when it was noticed: a new leader reconciles seconds after a crash, and a
 * late end would make the run overlap the next save of its pool in the runs ledger. lastsave is
 * whole seconds of the server's clock (the save ended within that second): take its middle,
 * never later than now, and move it onto the schedule clock.
 */
static void adopted_end(struct save_run *s)
{
        if (s->res->waited_existing || s->res->lastsave_after <= 0)
                return;
        int64_t mid = s->res->lastsave_after * USEC_PER_SEC + USEC_PER_SEC / 2;
        s->res->finished_wall_us = MIN(s->res->finished_wall_us, clock_wall_from_real_us(mid));
}

static enum driver_outcome adopt(struct save_run *s, struct rinfo *info)
{
        int64_t t0 = clock_mono_us();
        int step;

        while (own_child(s, info) || other_child(s, info)) {
                if (own_child(s, info))
                        s->res->waited_existing = true;
                step = wait_step(s, info);
                if (step != STEP_CONTINUE)
                        return (enum driver_outcome)step;
        }
        s->res->joined_existing = true;
        int64_t c;
        bool moved;
        if (s->req->before_has_counter && counter_of(s, info, &c))
                moved = c > s->req->before_counter;
        else if (s->req->action == DRIVER_ACTION_BGSAVE)
                moved = lastsave_of(s, info) > s->req->before_lastsave;
        else
                moved = s->res->waited_existing; /* AOF before 7.0: no counter, no time */
        set_after(s, info);
        if (!moved)
                return finish(s, DRIVER_NOTHING, "no %s happened since the recorded values",
                              s->cmd);
        enum driver_outcome o =
            status_of(s, info) == 0 ? failed_status(s, info) : succeeded(s, info, t0, false);
        adopted_end(s);
        return o;
}

/* Classify an error reply to BGSAVE / BGREWRITEAOF that ends the call. */
static enum driver_outcome refused(struct save_run *s, const redisReply *rep)
{
        struct driver_caps *caps = &s->inst->caps;
        enum driver_cap *cap =
            s->req->action == DRIVER_ACTION_BGSAVE ? &caps->bgsave : &caps->bgrewriteaof;

        if (error_code_is(rep, "NOPERM")) {
                cap_no(s->inst, cap, "%s is not permitted: %s", s->cmd, rep->str);
                return finish(s, DRIVER_FAILED, "%s is not permitted for this user: %s", s->cmd,
                              rep->str);
        }
        if (is_unknown_command(rep)) {
                cap_no(s->inst, cap, "%s is not available (renamed or disabled)", s->cmd);
                return finish(s, DRIVER_FAILED,
                              "%s is not available on this server (renamed or disabled): %s",
                              s->cmd, rep->str);
        }
        if (error_code_is(rep, "LOADING"))
                return finish(s, DRIVER_FAILED, "the instance is loading its dataset: %s",
                              rep->str);
        if (streq(rep->str, "ERR") || streq(rep->str, "ERR "))
                return finish(s, DRIVER_FAILED,
                              "%s could not start a child (bare -ERR: fork failed; the server's "
                              "log has the cause)",
                              s->cmd);
        return finish(s, DRIVER_FAILED, "%s refused: %s", s->cmd, rep->str);
}

static enum driver_outcome run(struct save_run *s, struct rinfo *info)
{
        struct driver_instance *inst = s->inst;
        bool before_called = false, force_schedule = false;
        int step;

        for (;;) {
                if (own_child(s, info)) {
                        /* Never a second child: wait for this one, whoever started it. */
                        struct rinfo during = *info;
                        int64_t t0 = clock_mono_us(), seen_wall = clock_wall_us();
                        s->res->waited_existing = true;
                        while (own_child(s, info)) {
                                step = wait_step(s, info);
                                if (step != STEP_CONTINUE)
                                        return (enum driver_outcome)step;
                        }
                        if (s->req->mode == DRIVER_MODE_NORMAL &&
                            existing_counts(s, &during, info)) {
                                s->res->joined_existing = true;
                                /* Its start, never later than the truth: INFO says how many whole
                                 * seconds it had run. */
                                int64_t ran_s = during.has_rdb_current_bgsave_time_sec &&
                                                        during.rdb_current_bgsave_time_sec > 0
                                                    ? during.rdb_current_bgsave_time_sec
                                                    : 0;
                                s->res->save_started_wall_us =
                                    seen_wall - (ran_s + 1) * USEC_PER_SEC;
                                return succeeded(s, info, t0, false);
                        }
                        set_before(s, info);
                        continue;
                }
                if (s->res->commands_sent >= MAX_SAVE_COMMANDS)
                        return finish(s, DRIVER_FAILED,
                                      "%s not started after %d attempts: the server kept "
                                      "answering that a child was active",
                                      s->cmd, s->res->commands_sent);
                bool schedule = s->req->action == DRIVER_ACTION_BGSAVE &&
                                (other_child(s, info) || force_schedule);
                if (schedule && inst->caps.bgsave_schedule == DRIVER_CAP_NO) {
                        /* Before 3.2: wait for the AOF rewrite, then a plain BGSAVE. */
                        while (other_child(s, info)) {
                                step = wait_step(s, info);
                                if (step != STEP_CONTINUE)
                                        return (enum driver_outcome)step;
                        }
                        force_schedule = false;
                        continue;
                }
                if (!before_called) {
                        before_called = true;
                        set_before(s, info);
                        if (s->req->before_send &&
                            s->req->before_send(s->req->userdata, s->res) < 0)
                                return finish(s, DRIVER_CANCELLED,
                                              "refused by the caller before %s was sent", s->cmd);
                }
                if (s->req->cancel && driver_cancel_is_requested(s->req->cancel))
                        return finish(s, DRIVER_CANCELLED, "cancelled before %s was sent", s->cmd);

                int64_t t_sent = clock_mono_us();
                s->res->save_started_wall_us = clock_wall_us();
                redisReply *raw =
                    schedule ? COMMAND(inst, "BGSAVE", "SCHEDULE") : COMMAND(inst, s->cmd);
                _cleanup_reply_ redisReply *rep = raw;
                s->res->commands_sent++;
                if (!rep)
                        return finish(s, DRIVER_LOST, "%s sent, reply lost: %s", s->cmd,
                                      inst->errstr);
                if (rep->type == REDIS_REPLY_STATUS) {
                        bool sched = strcasestr(rep->str, "scheduled") != NULL;
                        s->res->scheduled = sched;
                        return wait_completion(s, info, !sched, sched, t_sent);
                }
                if (!reply_is_error(rep))
                        return finish(s, DRIVER_FAILED, "unexpected reply to %s", s->cmd);
                if (error_mentions(rep, "already in progress")) {
                        /* Someone started one since our INFO: look again, wait for it. */
                } else if (s->req->action == DRIVER_ACTION_BGSAVE &&
                           (error_mentions(rep, "another child process") ||
                            error_mentions(rep, "aof log rewriting") ||
                            error_mentions(rep, "while aof") ||
                            error_mentions(rep, "use bgsave schedule"))) {
                        force_schedule = true;
                } else if (schedule && (error_mentions(rep, "syntax error") ||
                                        error_mentions(rep, "wrong number of arguments"))) {
                        inst->caps.bgsave_schedule = DRIVER_CAP_NO;
                } else {
                        return refused(s, rep);
                }
                step = wait_step(s, info);
                if (step != STEP_CONTINUE)
                        return (enum driver_outcome)step;
        }
}

enum driver_outcome driver_instance_save(struct driver_instance *inst,
                                         const struct driver_save_request *req,
                                         struct driver_save_result *ret)
{
        struct rinfo info;
        struct save_run s = {
            .inst = inst,
            .req = req,
            .res = ret,
            .cmd = req->action == DRIVER_ACTION_BGSAVE ? "BGSAVE" : "BGREWRITEAOF",
        };
        int64_t start = clock_mono_us();
        int r;

        *ret = (struct driver_save_result){
            .outcome = DRIVER_FAILED,
            .counter_before = -1,
            .counter_after = -1,
            .lastsave_before = -1,
            .lastsave_after = -1,
            .fork_us = -1,
            .started_wall_us = clock_wall_us(),
            .save_started_wall_us = -1,
        };
        r = driver_instance_info(inst, &info);
        if (r < 0)
                return finish(&s, DRIVER_FAILED, "%s", inst->errstr);
        ret->used_memory = info.has_used_memory ? info.used_memory : 0;
        ret->estimate_us =
            inst->estimator ? driver_estimator_estimate_us(inst->estimator, ret->used_memory) : 0;
        double timeout = MAX((double)inst->opts.min_timeout_s * USEC_PER_SEC,
                             inst->opts.timeout_factor * (double)ret->estimate_us);
        ret->timeout_us = (int64_t)MIN(timeout, 1e15);
        s.deadline_mono = start + ret->timeout_us;
        s.poll_us = CLAMP(ret->estimate_us / 20, inst->opts.poll_min_ms * USEC_PER_MSEC,
                          inst->opts.poll_max_ms * USEC_PER_MSEC);
        /*
         * Finer polls only from 0.5 to 1.5 × the estimate (an estimate learnt from a few saves
         * is within that), every estimate / 100 but never under FINE_POLL_MIN_US nor above the
         * coarse interval: at most 100 INFO per save more than the coarse polls.
         */
        s.fine_poll_us = MIN(MAX(ret->estimate_us / 100, FINE_POLL_MIN_US), s.poll_us);
        s.fine_from = start + ret->estimate_us / 2;
        s.fine_until = ret->estimate_us > 0 ? start + ret->estimate_us * 3 / 2 : s.fine_from;
        set_before(&s, &info);
        if (info.loading)
                return finish(&s, DRIVER_FAILED, "the instance is loading its dataset");
        if (req->mode == DRIVER_MODE_ADOPT) {
                ret->has_counter = req->before_has_counter;
                ret->counter_before = req->before_has_counter ? req->before_counter : -1;
                ret->lastsave_before = req->before_lastsave;
                return adopt(&s, &info);
        }
        return run(&s, &info);
}
