/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The progress Redis over hiredis (blocking, with socket timeouts): one connection behind a
 * mutex, re-established on demand; every operation is idempotent, so one that failed on a
 * dropped connection is retried once on a fresh one.
 */
#include "store/progress.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/macro.h"
#include "core/util.h"

#define SADD_BATCH 1000
#define SCAN_COUNT "1000"
#define MAX_DATES  1000

struct progress {
        pthread_mutex_t lock;
        char *host;
        uint16_t port;
        char *username;
        char *password;
        char *prefix;
        int connect_timeout_ms, command_timeout_ms;
        redisContext *ctx;
        char errstr[512];
};

static void set_error(struct progress *p, const char *fmt, ...) _printf_(2, 3);
static void set_error(struct progress *p, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->errstr, sizeof(p->errstr), fmt, ap);
        va_end(ap);
}

void progress_strv_free(char **v)
{
        if (!v)
                return;
        for (char **s = v; *s; s++)
                free(*s);
        free(v);
}

static void disconnect(struct progress *p)
{
        if (p->ctx) {
                redisFree(p->ctx);
                p->ctx = NULL;
        }
}

void progress_free(struct progress *p)
{
        if (!p)
                return;
        disconnect(p);
        free(p->host);
        free(p->username);
        secret_free(p->password);
        free(p->prefix);
        pthread_mutex_destroy(&p->lock);
        free(p);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct progress *, progress_free);

int progress_new(const struct progress_options *o, struct progress **ret)
{
        _cleanup_(progress_freep) struct progress *p = NULL;

        if (strempty(o->key_prefix) || strempty(o->address))
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        pthread_mutex_init(&p->lock, NULL);
        if (parse_host_port(o->address, &p->host, &p->port) < 0)
                return -EINVAL;
        p->prefix = strdup(o->key_prefix);
        if (!p->prefix)
                return -ENOMEM;
        if (!strempty(o->username) && !(p->username = strdup(o->username)))
                return -ENOMEM;
        if (!strempty(o->password) && !(p->password = strdup(o->password)))
                return -ENOMEM;
        p->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 2000;
        p->command_timeout_ms = o->command_timeout_ms > 0 ? o->command_timeout_ms : 5000;
        *ret = TAKE_PTR(p);
        return 0;
}

void progress_errstr(struct progress *p, char *buf, size_t size)
{
        pthread_mutex_lock(&p->lock);
        snprintf(buf, size, "%s", p->errstr);
        pthread_mutex_unlock(&p->lock);
}

static struct timeval ms_tv(int ms)
{
        return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

static int connect_locked(struct progress *p)
{
        if (p->ctx)
                return 0;
        redisContext *c = redisConnectWithTimeout(p->host, p->port, ms_tv(p->connect_timeout_ms));
        if (!c)
                return -ENOMEM;
        if (c->err) {
                set_error(p, "cannot connect to the progress Redis %s:%u: %s", p->host, p->port,
                          c->errstr);
                redisFree(c);
                return -EIO;
        }
        int fl = fcntl(c->fd, F_GETFD);
        if (fl >= 0)
                (void)fcntl(c->fd, F_SETFD, fl | FD_CLOEXEC);
        redisSetTimeout(c, ms_tv(p->command_timeout_ms));
        if (p->password) {
                const char *argv[3] = {"AUTH", p->username ? p->username : p->password,
                                       p->password};
                int argc = p->username ? 3 : 2;
                redisReply *r = redisCommandArgv(c, argc, argv, NULL);
                if (!r) {
                        set_error(p, "AUTH to the progress Redis %s:%u: %s", p->host, p->port,
                                  c->errstr);
                        redisFree(c);
                        return -EIO;
                }
                if (r->type == REDIS_REPLY_ERROR) {
                        set_error(p, "authentication to the progress Redis %s:%u refused: %s",
                                  p->host, p->port, r->str);
                        freeReplyObject(r);
                        redisFree(c);
                        return -EACCES;
                }
                freeReplyObject(r);
        }
        p->ctx = c;
        return 0;
}

/*
 * Send `n` commands as one pipeline and read their replies into replies[] (caller frees each).
 * On a connection error the pipeline is sent again once on a new connection.
 */
struct cmd {
        int argc;
        const char **argv;
        size_t *lens;
};

static int pipeline(struct progress *p, const struct cmd *cmds, size_t n, redisReply **replies)
{
        int r = -EIO;

        for (int attempt = 0; attempt < 2; attempt++) {
                size_t got = 0;
                r = connect_locked(p);
                if (r == -EACCES || r == -ENOMEM)
                        return r;
                if (r < 0)
                        continue;
                for (size_t i = 0; i < n; i++)
                        if (redisAppendCommandArgv(p->ctx, cmds[i].argc, cmds[i].argv,
                                                   cmds[i].lens) != REDIS_OK) {
                                /* Only memory can fail here: nothing was sent yet. */
                                set_error(p, "out of memory building a pipeline");
                                disconnect(p);
                                return -ENOMEM;
                        }
                for (; got < n; got++) {
                        void *rep = NULL;
                        if (redisGetReply(p->ctx, &rep) != REDIS_OK || !rep)
                                break;
                        replies[got] = rep;
                }
                if (got == n)
                        return 0;
                set_error(p, "connection to the progress Redis %s:%u lost: %s", p->host, p->port,
                          p->ctx->errstr[0] ? p->ctx->errstr : "no reply");
                for (size_t i = 0; i < got; i++) {
                        freeReplyObject(replies[i]);
                        replies[i] = NULL;
                }
                disconnect(p);
                r = -EIO;
        }
        return r;
}

static int one(struct progress *p, redisReply **ret, int argc, const char **argv)
{
        struct cmd c = {argc, argv, NULL};
        int r = pipeline(p, &c, 1, ret);
        if (r < 0)
                return r;
        if ((*ret)->type == REDIS_REPLY_ERROR) {
                set_error(p, "progress Redis refused %s: %s", argv[0], (*ret)->str);
                freeReplyObject(*ret);
                *ret = NULL;
                return -EPROTO;
        }
        return 0;
}

static bool valid_date(const char *d)
{
        if (!d || strlen(d) != PROGRESS_DATE_LEN)
                return false;
        for (int i = 0; i < PROGRESS_DATE_LEN; i++)
                if (i == 4 || i == 7 ? d[i] != '-' : (d[i] < '0' || d[i] > '9'))
                        return false;
        return true;
}

static bool valid_id(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        return n > 0 && n <= PROGRESS_MAX_ID;
}

static int key(struct progress *p, const char *date, const char *what, char **ret)
{
        if (!valid_date(date)) {
                set_error(p, "invalid pass date \"%.32s\"", date ? date : "");
                return -EINVAL;
        }
        return asprintf(ret, "%s:pass:%s:%s", p->prefix, date, what) < 0 ? -ENOMEM : 0;
}

/* A key given by the caller: ours (under "<prefix>:"), printable and bounded. */
static bool valid_key(struct progress *p, const char *k)
{
        size_t plen = strlen(p->prefix), n = k ? strlen(k) : 0;
        if (n <= plen + 1 || n > PROGRESS_MAX_KEY || strncmp(k, p->prefix, plen) != 0 ||
            k[plen] != ':') {
                set_error(p, "key outside the prefix \"%s\" or too long", p->prefix);
                return false;
        }
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)k[i] <= ' ' || k[i] == 0x7f) {
                        set_error(p, "key with white space or control characters");
                        return false;
                }
        return true;
}

/* MULTI, DEL key [also_del], SADD in batches, EXPIRE, EXEC. */
static int replace_locked(struct progress *p, const char *set_key, const char *also_del,
                          const char *const *ids, size_t n, int64_t ttl_s)
{
        _cleanup_free_ struct cmd *cmds = NULL;
        _cleanup_free_ const char **argv = NULL;
        _cleanup_free_ redisReply **replies = NULL;
        size_t batches = (n + SADD_BATCH - 1) / SADD_BATCH, nc = 0;
        char ttl[32];
        int r;

        if (ttl_s <= 0) {
                set_error(p, "the expiry must be positive");
                return -EINVAL;
        }
        snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
        for (size_t i = 0; i < n; i++)
                if (!valid_id(ids[i])) {
                        set_error(p, "invalid instance id at position %zu", i);
                        return -EINVAL;
                }
        size_t ncmds = batches + 5;
        cmds = calloc(ncmds, sizeof(*cmds));
        argv = calloc(n + 2 * batches + 16, sizeof(*argv));
        replies = calloc(ncmds, sizeof(*replies)); /* NOLINT(bugprone-sizeof-expression) */
        if (!cmds || !argv || !replies)
                return -ENOMEM;
        const char **a = argv;
#define ADD(...)                                                                                   \
        do {                                                                                       \
                const char *_args[] = {__VA_ARGS__};                                               \
                cmds[nc++] = (struct cmd){(int)ELEMENTSOF(_args), a, NULL};                        \
                for (size_t _i = 0; _i < ELEMENTSOF(_args); _i++)                                  \
                        *a++ = _args[_i];                                                          \
        } while (0)
        ADD("MULTI");
        if (also_del)
                ADD("DEL", set_key, also_del);
        else
                ADD("DEL", set_key);
        for (size_t b = 0; b < batches; b++) {
                size_t from = b * SADD_BATCH, to = MIN(n, from + SADD_BATCH);
                const char **start = a;
                *a++ = "SADD";
                *a++ = set_key;
                for (size_t i = from; i < to; i++)
                        *a++ = ids[i];
                cmds[nc++] = (struct cmd){(int)(a - start), start, NULL};
        }
        ADD("EXPIRE", set_key, ttl);
        ADD("EXEC");
#undef ADD
        r = pipeline(p, cmds, nc, replies);
        if (r < 0)
                return r;
        redisReply *exec = replies[nc - 1];
        if (exec->type != REDIS_REPLY_ARRAY) {
                set_error(p, "progress Redis refused the pass transaction: %s",
                          exec->type == REDIS_REPLY_ERROR ? exec->str : "no result");
                r = -EPROTO;
        } else {
                for (size_t i = 0; i < exec->elements; i++)
                        if (exec->element[i]->type == REDIS_REPLY_ERROR) {
                                set_error(p, "progress Redis refused part of the pass: %s",
                                          exec->element[i]->str);
                                r = -EPROTO;
                                break;
                        }
        }
        for (size_t i = 0; i < nc; i++)
                freeReplyObject(replies[i]);
        return r;
}

static int integer_locked(struct progress *p, int argc, const char **argv, int64_t *ret)
{
        redisReply *rep = NULL;
        int r = one(p, &rep, argc, argv);
        if (r < 0)
                return r;
        if (rep->type != REDIS_REPLY_INTEGER) {
                set_error(p, "unexpected reply to %s", argv[0]);
                r = -EPROTO;
        } else {
                *ret = rep->integer;
        }
        freeReplyObject(rep);
        return r;
}

int progress_set_replace(struct progress *p, const char *key, const char *const *ids, size_t n,
                         int64_t ttl_s)
{
        pthread_mutex_lock(&p->lock);
        int r = valid_key(p, key) ? replace_locked(p, key, NULL, ids, n, ttl_s) : -EINVAL;
        pthread_mutex_unlock(&p->lock);
        return r;
}

int progress_set_exists(struct progress *p, const char *key, bool *ret)
{
        int64_t v = 0;
        pthread_mutex_lock(&p->lock);
        int r =
            valid_key(p, key) ? integer_locked(p, 2, (const char *[]){"EXISTS", key}, &v) : -EINVAL;
        pthread_mutex_unlock(&p->lock);
        if (r == 0)
                *ret = v > 0;
        return r;
}

int progress_set_remove(struct progress *p, const char *key, const char *id, bool *ret_removed)
{
        int64_t v = 0;
        int r = -EINVAL;
        pthread_mutex_lock(&p->lock);
        if (!valid_id(id))
                set_error(p, "invalid instance id");
        else if (valid_key(p, key))
                r = integer_locked(p, 3, (const char *[]){"SREM", key, id}, &v);
        pthread_mutex_unlock(&p->lock);
        if (r == 0 && ret_removed)
                *ret_removed = v > 0;
        return r;
}

int progress_set_count(struct progress *p, const char *key, int64_t *ret)
{
        pthread_mutex_lock(&p->lock);
        int r =
            valid_key(p, key) ? integer_locked(p, 2, (const char *[]){"SCARD", key}, ret) : -EINVAL;
        pthread_mutex_unlock(&p->lock);
        return r;
}

/* The pass functions: the same operations on the key of a date. */

int progress_pass_start(struct progress *p, const char *date, const char *const *ids, size_t n)
{
        _cleanup_free_ char *pending = NULL, *current = NULL;
        int r;

        pthread_mutex_lock(&p->lock);
        r = key(p, date, "pending", &pending);
        if (r == 0)
                r = key(p, date, "current", &current);
        if (r == 0)
                r = replace_locked(p, pending, current, ids, n, PROGRESS_PASS_TTL_S);
        pthread_mutex_unlock(&p->lock);
        return r;
}

int progress_pass_exists(struct progress *p, const char *date, bool *ret)
{
        _cleanup_free_ char *k = NULL;
        pthread_mutex_lock(&p->lock);
        int r = key(p, date, "pending", &k);
        pthread_mutex_unlock(&p->lock);
        return r < 0 ? r : progress_set_exists(p, k, ret);
}

int progress_pass_done(struct progress *p, const char *date, const char *id, bool *ret_removed)
{
        _cleanup_free_ char *k = NULL;
        pthread_mutex_lock(&p->lock);
        int r = key(p, date, "pending", &k);
        pthread_mutex_unlock(&p->lock);
        return r < 0 ? r : progress_set_remove(p, k, id, ret_removed);
}

int progress_pass_count(struct progress *p, const char *date, int64_t *ret)
{
        _cleanup_free_ char *k = NULL;
        pthread_mutex_lock(&p->lock);
        int r = key(p, date, "pending", &k);
        pthread_mutex_unlock(&p->lock);
        return r < 0 ? r : progress_set_count(p, k, ret);
}

/* A growable NULL-terminated string array. */
struct strv {
        char **v;
        size_t n, alloc;
};

static int strv_push(struct strv *s, const char *str, size_t len)
{
        if (s->n + 1 >= s->alloc) {
                size_t na = s->alloc ? s->alloc * 2 : 64;
                char **nv = realloc(s->v, na * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                s->v = nv;
                s->alloc = na;
        }
        s->v[s->n] = strndup(str, len);
        if (!s->v[s->n])
                return -ENOMEM;
        s->v[++s->n] = NULL;
        return 0;
}

static int strv_finish(struct strv *s, char ***ret, size_t *ret_n)
{
        if (!s->v) {
                s->v = calloc(1, sizeof(*s->v));
                if (!s->v)
                        return -ENOMEM;
        }
        *ret = s->v;
        *ret_n = s->n;
        return 0;
}

/* Run SCAN-like iteration `argv` (cursor at argv[cursor_at]) and collect the members. */
static int scan_all(struct progress *p, int argc, const char **argv, int cursor_at, size_t max,
                    struct strv *out)
{
        char cursor[32] = "0";
        int r;

        do {
                redisReply *rep = NULL;
                argv[cursor_at] = cursor;
                r = one(p, &rep, argc, argv);
                if (r < 0)
                        return r;
                if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
                    rep->element[0]->type != REDIS_REPLY_STRING ||
                    rep->element[1]->type != REDIS_REPLY_ARRAY) {
                        freeReplyObject(rep);
                        set_error(p, "unexpected reply to %s", argv[0]);
                        return -EPROTO;
                }
                snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
                redisReply *items = rep->element[1];
                for (size_t i = 0; i < items->elements && r == 0; i++) {
                        if (items->element[i]->type != REDIS_REPLY_STRING)
                                continue;
                        if (out->n >= max) {
                                set_error(p, "more than %zu entries in the progress Redis", max);
                                r = -E2BIG;
                        } else {
                                r = strv_push(out, items->element[i]->str, items->element[i]->len);
                        }
                }
                freeReplyObject(rep);
        } while (r == 0 && !streq(cursor, "0"));
        return r;
}

int progress_set_members(struct progress *p, const char *key, char ***ret_ids, size_t *ret_n)
{
        struct strv v = {0};
        int r = -EINVAL;

        pthread_mutex_lock(&p->lock);
        if (valid_key(p, key)) {
                const char *argv[] = {"SSCAN", key, "0", "COUNT", SCAN_COUNT};
                r = scan_all(p, 5, argv, 2, PROGRESS_MAX_MEMBERS, &v);
        }
        pthread_mutex_unlock(&p->lock);
        if (r == 0)
                r = strv_finish(&v, ret_ids, ret_n);
        if (r < 0)
                progress_strv_free(v.v);
        return r;
}

int progress_pass_pending(struct progress *p, const char *date, char ***ret_ids, size_t *ret_n)
{
        _cleanup_free_ char *k = NULL;
        pthread_mutex_lock(&p->lock);
        int r = key(p, date, "pending", &k);
        pthread_mutex_unlock(&p->lock);
        return r < 0 ? r : progress_set_members(p, k, ret_ids, ret_n);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int progress_pass_find(struct progress *p, char ***ret_dates, size_t *ret_n)
{
        _cleanup_free_ char *pattern = NULL;
        struct strv keys = {0}, dates = {0};
        int r = 0;

        pthread_mutex_lock(&p->lock);
        /* The prefix is taken literally: escape the glob characters SCAN MATCH knows. */
        size_t plen = strlen(p->prefix);
        pattern = malloc(2 * plen + 32);
        if (!pattern)
                r = -ENOMEM;
        if (r == 0) {
                char *w = pattern;
                for (const char *c = p->prefix; *c; c++) {
                        if (strchr("*?[]\\^", *c))
                                *w++ = '\\';
                        *w++ = *c;
                }
                strcpy(w, ":pass:*:pending");
                const char *argv[] = {"SCAN", "0", "MATCH", pattern, "COUNT", SCAN_COUNT};
                r = scan_all(p, 6, argv, 1, MAX_DATES, &keys);
        }
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; r == 0 && i < keys.n; i++) {
                const char *d = keys.v[i] + plen + strlen(":pass:");
                if (strlen(keys.v[i]) ==
                        plen + strlen(":pass:") + PROGRESS_DATE_LEN + strlen(":pending") &&
                    strncmp(keys.v[i], p->prefix, plen) == 0) {
                        char date[PROGRESS_DATE_LEN + 1];
                        memcpy(date, d, PROGRESS_DATE_LEN);
                        date[PROGRESS_DATE_LEN] = '\0';
                        if (valid_date(date))
                                r = strv_push(&dates, date, PROGRESS_DATE_LEN);
                }
        }
        progress_strv_free(keys.v);
        if (r == 0 && dates.n > 1)
                qsort(dates.v, dates.n, sizeof(*dates.v), cmp_str);
        if (r == 0)
                r = strv_finish(&dates, ret_dates, ret_n);
        if (r < 0)
                progress_strv_free(dates.v);
        return r;
}

int progress_pass_set_current(struct progress *p, const char *date, const char *pool,
                              const char *id)
{
        _cleanup_free_ char *k = NULL;
        redisReply *rep[3] = {NULL, NULL, NULL};
        int r;

        pthread_mutex_lock(&p->lock);
        r = key(p, date, "current", &k);
        if (r == 0 && (!valid_id(pool) || (id && !valid_id(id)))) {
                set_error(p, "invalid pool name or instance id");
                r = -EINVAL;
        }
        if (r == 0 && !id) {
                r = one(p, &rep[0], 3, (const char *[]){"HDEL", k, pool});
        } else if (r == 0) {
                struct cmd cmds[2] = {
                    {4, (const char *[]){"HSET", k, pool, id}, NULL},
                    {3, (const char *[]){"EXPIRE", k, PROGRESS_PASS_TTL_S_STR}, NULL},
                };
                r = pipeline(p, cmds, 2, rep);
                for (int i = 0; r == 0 && i < 2; i++)
                        if (rep[i]->type == REDIS_REPLY_ERROR) {
                                set_error(p, "progress Redis refused %s: %s", cmds[i].argv[0],
                                          rep[i]->str);
                                r = -EPROTO;
                        }
        }
        for (int i = 0; i < 3; i++)
                if (rep[i])
                        freeReplyObject(rep[i]);
        pthread_mutex_unlock(&p->lock);
        return r;
}

int progress_pass_current(struct progress *p, const char *date, char ***ret_pools, char ***ret_ids,
                          size_t *ret_n)
{
        _cleanup_free_ char *k = NULL;
        struct strv pools = {0}, ids = {0};
        redisReply *rep = NULL;
        int r;

        pthread_mutex_lock(&p->lock);
        r = key(p, date, "current", &k);
        if (r == 0)
                r = one(p, &rep, 2, (const char *[]){"HGETALL", k});
        pthread_mutex_unlock(&p->lock);
        if (r == 0 && rep->type != REDIS_REPLY_ARRAY)
                r = -EPROTO;
        for (size_t i = 0; r == 0 && i + 1 < rep->elements && i < (size_t)2 * MAX_DATES; i += 2) {
                redisReply *kk = rep->element[i], *v = rep->element[i + 1];
                if (kk->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                        continue;
                r = strv_push(&pools, kk->str, kk->len);
                if (r == 0)
                        r = strv_push(&ids, v->str, v->len);
        }
        if (rep)
                freeReplyObject(rep);
        if (r == 0)
                r = strv_finish(&pools, ret_pools, ret_n);
        if (r == 0) {
                r = strv_finish(&ids, ret_ids, ret_n);
                if (r < 0) {
                        progress_strv_free(*ret_pools);
                        *ret_pools = NULL;
                        pools.v = NULL;
                }
        }
        if (r < 0) {
                progress_strv_free(pools.v);
                progress_strv_free(ids.v);
        }
        return r;
}

int progress_pass_clear(struct progress *p, const char *date)
{
        _cleanup_free_ char *pending = NULL, *current = NULL;
        redisReply *rep = NULL;
        int r;

        pthread_mutex_lock(&p->lock);
        r = key(p, date, "pending", &pending);
        if (r == 0)
                r = key(p, date, "current", &current);
        if (r == 0)
                r = one(p, &rep, 3, (const char *[]){"DEL", pending, current});
        if (rep)
                freeReplyObject(rep);
        pthread_mutex_unlock(&p->lock);
        return r;
}
