/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the instance-driver integration tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test-driver-util.h"

const struct driver_options drv_test_opts = {
    .connect_timeout_ms = 2000,
    .command_timeout_ms = 2000,
    .poll_min_ms = 10,
    .poll_max_ms = 100,
    .timeout_factor = 4,
    .min_timeout_s = 20,
};

struct driver_instance *drv_instance_for(const struct th_redis *r,
                                         const struct driver_options *opts,
                                         struct driver_estimator *est)
{
        struct driver_target t = {
            .id = "test", .host = "127.0.0.1", .port = r->port, .password = r->password};
        struct driver_instance *inst = NULL;
        assert_int_equal(
            driver_instance_new(&t, opts ? opts : &drv_test_opts, NULL, est, &inst, NULL), 0);
        return inst;
}

void drv_redis_do(const struct th_redis *r, const char *fmt, ...)
{
        redisContext *c = th_redis_connect(r);
        va_list ap;
        va_start(ap, fmt);
        redisReply *rep = redisvCommand(c, fmt, ap);
        va_end(ap);
        assert_non_null(rep);
        if (rep->type == REDIS_REPLY_ERROR)
                fail_msg("\"%s\" failed: %s", fmt, rep->str);
        freeReplyObject(rep);
        redisFree(c);
}

long long drv_info_int(const struct th_redis *r, const char *field)
{
        redisContext *c = th_redis_connect(r);
        long long v = th_redis_info_int(c, field);
        redisFree(c);
        return v;
}

void drv_make_slow(const struct th_redis *r, int keys, int delay_us)
{
        drv_redis_do(r, "DEBUG POPULATE %d key 100", keys);
        drv_redis_do(r, "CONFIG SET rdb-key-save-delay %d", delay_us);
}
