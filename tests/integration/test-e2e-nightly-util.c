/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for the real-process nightly tests (test-e2e-nightly-util.h): a slow-saving fleet of
 * real redis-servers in PostgreSQL, the replicas' nightly configuration, an INFO sampler.
 */
#include "test-e2e-nightly-util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "core/clock.h"

static const char *const pool_names[NF_POOLS] = {"pool-a", "pool-b", "pool-c"};

const char *nf_pool_name(int pool)
{
        return pool_names[pool];
}

void nf_start(struct nfleet *f, int n, int pools, int keys, int delay_us)
{
        char delay[32];
        snprintf(delay, sizeof(delay), "%d", delay_us);
        const char *const extra[] = {"--rdb-key-save-delay", delay, NULL};

        assert_true(n <= NF_MAX && pools <= NF_POOLS);
        memset(f, 0, sizeof(*f));
        f->n = n;
        for (int i = 0; i < n; i++) {
                struct nf_inst *in = &f->in[i];
                th_redis_start(&in->r, extra);
                in->c = th_redis_connect(&in->r);
                in->pool = i % pools;
                snprintf(in->id, sizeof(in->id), "n-%02d", i);
                for (int k = 0; k < keys; k++)
                        redisAppendCommand(in->c, "SET key:%d value-%d", k, k);
                for (int k = 0; k < keys; k++) {
                        redisReply *rep = NULL;
                        assert_int_equal(redisGetReply(in->c, (void **)&rep), REDIS_OK);
                        freeReplyObject(rep);
                }
        }
}

void nf_register(struct nfleet *f, struct cluster *cl, bool slow)
{
        for (int i = 0; i < f->n; i++) {
                struct nf_inst *in = &f->in[i];
                char *sql = xasprintf(
                    "INSERT INTO instances (id, host, port, pool, write_rate_bytes_s) VALUES "
                    "('%s', '127.0.0.1', %u, '%s', %s)",
                    in->id, (unsigned)in->r.port, pool_names[in->pool], slow ? "100" : "NULL");
                th_pg_exec(cl->sql, sql);
                free(sql);
        }
}

void nf_stop(struct nfleet *f)
{
        for (int i = 0; i < f->n; i++) {
                if (f->in[i].c)
                        redisFree(f->in[i].c);
                th_redis_stop(&f->in[i].r);
        }
        f->n = 0;
}

void nf_mark(struct nfleet *f)
{
        for (int i = 0; i < f->n; i++) {
                f->in[i].saves0 = th_redis_info_int(f->in[i].c, "rdb_saves");
                f->in[i].starts = 0;
                f->in[i].saving = false;
        }
        memset(f->max_in_pool, 0, sizeof(f->max_in_pool));
        f->max_pools_saving = 0;
        f->samples = 0;
}

void nf_sample(struct nfleet *f)
{
        int in_pool[NF_POOLS] = {0};
        int pools = 0;

        for (int i = 0; i < f->n; i++)
                redisAppendCommand(f->in[i].c, "INFO persistence");
        for (int i = 0; i < f->n; i++) {
                struct nf_inst *in = &f->in[i];
                redisReply *rep = NULL;
                assert_int_equal(redisGetReply(in->c, (void **)&rep), REDIS_OK);
                assert_int_equal(rep->type, REDIS_REPLY_STRING);
                bool saving = strstr(rep->str, "rdb_bgsave_in_progress:1") != NULL;
                freeReplyObject(rep);
                if (saving && !in->saving)
                        in->starts++;
                in->saving = saving;
                if (saving)
                        in_pool[in->pool]++;
        }
        for (int p = 0; p < NF_POOLS; p++) {
                if (in_pool[p] > f->max_in_pool[p])
                        f->max_in_pool[p] = in_pool[p];
                if (in_pool[p] > 0)
                        pools++;
        }
        if (pools > f->max_pools_saving)
                f->max_pools_saving = pools;
        f->samples++;
}

void nf_sample_for(struct nfleet *f, int64_t us)
{
        int64_t end = clock_mono_us() + us;
        do {
                nf_sample(f);
                clock_sleep_us(20 * 1000);
        } while (clock_mono_us() < end);
}

long long nf_saves(struct nfleet *f, int i)
{
        return th_redis_info_int(f->in[i].c, "rdb_saves") - f->in[i].saves0;
}

int nf_saving(const struct nfleet *f)
{
        int n = 0;
        for (int i = 0; i < f->n; i++)
                n += f->in[i].saving;
        return n;
}

void nf_configure(struct cluster *cl, const char *nightly_yaml, const char *extra_yaml)
{
        static const char old[] = "nightly:\n  enabled: false\n";

        for (int i = 0; i < N_REPLICAS; i++) {
                char *text = slurp(cl->r[i].config_path);
                char *at = strstr(text, old);
                assert_non_null(at);
                *at = '\0';
                char *yaml = xasprintf("%s%s%s%s", text, nightly_yaml, at + strlen(old),
                                       extra_yaml ? extra_yaml : "");
                write_file(cl->r[i].config_path, yaml);
                free(yaml);
                free(text);
        }
}

int nf_wait_leader(struct cluster *cl, struct nfleet *f, int not, int64_t timeout_us)
{
        int64_t end = clock_mono_us() + timeout_us;
        while (clock_mono_us() < end) {
                char *holder = lease_holder(cl);
                int l = holder_index(cl, holder);
                free(holder);
                if (l >= 0 && l != not &&says_leader(cl, l))
                        return l;
                nf_sample_for(f, 50 * 1000);
        }
        dump_logs(cl);
        fail_msg("no new leader within %.0f s", (double)timeout_us / 1e6);
        return -1;
}

char *nf_nightly_state(struct cluster *cl, int i)
{
        char *body = NULL, *state = NULL;
        if (http(cl->r[i].port, "GET", "/v1/nightly", NULL, &body) == 200) {
                cJSON *o = cJSON_Parse(body);
                cJSON *s = cJSON_GetObjectItem(o, "state");
                if (cJSON_IsString(s))
                        state = strdup(s->valuestring);
                cJSON_Delete(o);
        }
        free(body);
        return state ? state : strdup("");
}

void nf_wait_sql(struct cluster *cl, struct nfleet *f, const char *sql, long long min,
                 int64_t timeout_us)
{
        int64_t end = clock_mono_us() + timeout_us;
        while (sql_count(cl, sql) < min) {
                if (clock_mono_us() >= end) {
                        dump_logs(cl);
                        fail_msg("timed out waiting for %s >= %lld", sql, min);
                }
                nf_sample_for(f, 100 * 1000);
        }
}
