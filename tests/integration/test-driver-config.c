/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The instance driver's connection and management against real redis-server processes:
 * capabilities (BGSAVE renamed away, an ACL user without +bgsave, CONFIG renamed), AUTH
 * (password, ACL user, a wrong password that never shows in the error), `save ""` applied,
 * drift detected and fixed, CONFIG REWRITE into a config file, pod and Secret resolution
 * through a fake resolver, and a server that is loading its dataset.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/macro.h"
#include "core/util.h"
#include "harness.h"
#include "redis/driver.h"
#include "test-driver-util.h"

static struct driver_instance *instance_as(uint16_t port, const char *user, const char *password)
{
        struct driver_target t = {.id = "test",
                                  .host = "127.0.0.1",
                                  .port = port,
                                  .username = user,
                                  .password = password};
        struct driver_instance *inst = NULL;
        assert_int_equal(driver_instance_new(&t, &drv_test_opts, NULL, NULL, &inst, NULL), 0);
        return inst;
}

static char *config_get_save(const struct th_redis *r)
{
        redisContext *c = th_redis_connect(r);
        redisReply *rep = th_redis_cmd(c, "CONFIG GET save");
        assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
        char *v = strdup(rep->element[1]->str);
        freeReplyObject(rep);
        redisFree(c);
        return v;
}

static void test_caps_of_a_plain_server(void **state)
{
        struct th_redis r;
        struct driver_caps caps;
        (void)state;

        th_redis_start(&r, NULL);
        struct driver_instance *inst = instance_as(r.port, NULL, NULL);
        assert_int_equal(driver_instance_detect(inst, &caps), 0);
        assert_true(caps.version_num >= 70000);
        assert_non_null(strchr(caps.version, '.'));
        assert_int_equal(caps.bgsave, DRIVER_CAP_YES);
        assert_int_equal(caps.bgrewriteaof, DRIVER_CAP_YES);
        assert_int_equal(caps.config, DRIVER_CAP_YES);
        assert_int_equal(caps.bgsave_schedule, DRIVER_CAP_YES);
        assert_int_equal(caps.config_set, DRIVER_CAP_UNKNOWN);
        assert_false(caps.has_config_file);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_bgsave_renamed_away(void **state)
{
        struct th_redis r;
        struct driver_caps caps;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        const char *extra[] = {"--rename-command", "BGSAVE", "", NULL};
        (void)state;

        th_redis_start(&r, extra);
        struct driver_instance *inst = instance_as(r.port, NULL, NULL);
        assert_int_equal(driver_instance_detect(inst, &caps), 0);
        assert_int_equal(caps.bgsave, DRIVER_CAP_NO);
        assert_int_equal(caps.bgrewriteaof, DRIVER_CAP_YES);
        assert_non_null(strstr(caps.detail, "BGSAVE is not available"));

        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_FAILED);
        assert_non_null(strstr(res.reason, "not available on this server"));
        assert_int_equal(res.commands_sent, 1);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_acl_user_without_bgsave(void **state)
{
        struct th_redis r;
        struct driver_caps caps;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        (void)state;

        th_redis_start(&r, NULL);
        drv_redis_do(&r, "ACL SETUSER saver on >s3cret-pw ~* &* +@all -bgsave");
        struct driver_instance *inst = instance_as(r.port, "saver", "s3cret-pw");
        assert_int_equal(driver_instance_detect(inst, &caps), 0);
        assert_int_equal(caps.bgsave, DRIVER_CAP_NO);
        assert_int_equal(caps.bgrewriteaof, DRIVER_CAP_YES);
        assert_non_null(strstr(caps.detail, "not permitted"));

        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_FAILED);
        assert_non_null(strstr(res.reason, "NOPERM"));
        assert_null(strstr(res.reason, "s3cret-pw"));

        /* The same user may rewrite the AOF. */
        req.action = DRIVER_ACTION_BGREWRITEAOF;
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_auth(void **state)
{
        struct th_redis r;
        struct rinfo info;
        const char *extra[] = {"--requirepass", "right-password", NULL};
        (void)state;

        th_redis_start(&r, extra);
        struct driver_instance *inst = instance_as(r.port, NULL, "right-password");
        assert_int_equal(driver_instance_info(inst, &info), 0);
        assert_true(info.has_rdb_bgsave_in_progress);
        driver_instance_free(inst);

        inst = instance_as(r.port, NULL, "wrong-password");
        assert_int_equal(driver_instance_connect(inst), -EACCES);
        const char *err = driver_instance_errstr(inst);
        assert_non_null(strstr(err, "refused"));
        assert_non_null(strstr(err, "WRONGPASS"));
        assert_null(strstr(err, "wrong-password"));
        assert_null(strstr(err, "right-password"));
        /* A save gets the same clear reason. */
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_FAILED);
        assert_non_null(strstr(res.reason, "authentication"));
        assert_null(strstr(res.reason, "wrong-password"));
        driver_instance_free(inst);

        /* No password at all: the server's NOAUTH is the reason. */
        inst = instance_as(r.port, NULL, NULL);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_FAILED);
        assert_non_null(strstr(res.reason, "NOAUTH"));
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_nothing_listens(void **state)
{
        struct rinfo info;
        (void)state;
        uint16_t port = th_free_port();
        struct driver_instance *inst = instance_as(port, NULL, NULL);
        assert_int_equal(driver_instance_info(inst, &info), -ECONNREFUSED);
        assert_non_null(strstr(driver_instance_errstr(inst), "cannot connect to 127.0.0.1:"));
        driver_instance_free(inst);
}

static void test_save_config_drift(void **state)
{
        struct th_redis r;
        struct driver_save_config_result res;
        struct driver_caps caps;
        (void)state;

        th_redis_start(&r, NULL);
        drv_redis_do(&r, "CONFIG SET save %s", "900 1 300 10");
        struct driver_instance *inst = instance_as(r.port, NULL, NULL);

        /* First management: the rule is found, removed and read back. */
        assert_int_equal(driver_instance_disable_save(inst, true, true, &res), 0);
        assert_true(res.drifted);
        assert_true(res.fixed);
        assert_false(res.rewritten); /* no config file */
        assert_string_equal(res.seen, "900 1 300 10");
        char *v = config_get_save(&r);
        assert_string_equal(v, "");
        free(v);
        driver_instance_caps(inst, &caps);
        assert_int_equal(caps.config_set, DRIVER_CAP_YES);

        /* Re-check: nothing to do. */
        assert_int_equal(driver_instance_disable_save(inst, false, false, &res), 0);
        assert_false(res.drifted);
        assert_false(res.fixed);

        /* Someone turns saves back on: the next re-check reports and fixes it. */
        drv_redis_do(&r, "CONFIG SET save %s", "900 1");
        assert_int_equal(driver_instance_disable_save(inst, false, false, &res), 0);
        assert_true(res.drifted);
        assert_true(res.fixed);
        assert_string_equal(res.seen, "900 1");
        v = config_get_save(&r);
        assert_string_equal(v, "");
        free(v);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_config_renamed(void **state)
{
        struct th_redis r;
        struct driver_save_config_result res;
        struct driver_caps caps;
        const char *extra[] = {"--rename-command", "CONFIG", "", NULL};
        (void)state;

        th_redis_start(&r, extra);
        struct driver_instance *inst = instance_as(r.port, NULL, NULL);
        assert_int_equal(driver_instance_detect(inst, &caps), 0);
        assert_int_equal(caps.config, DRIVER_CAP_NO);
        assert_int_equal(driver_instance_disable_save(inst, false, true, &res), -EPERM);
        assert_non_null(strstr(driver_instance_errstr(inst), "CONFIG GET save refused"));
        driver_instance_free(inst);
        th_redis_stop(&r);
}

/* redis-server started from a config file (the harness passes options only). */
static pid_t start_with_config_file(const char *dir, uint16_t port, char **ret_conf)
{
        char *conf, *log;
        FILE *f;

        assert_true(asprintf(&conf, "%s/redis.conf", dir) > 0);
        assert_true(asprintf(&log, "%s/redis.log", dir) > 0);
        f = fopen(conf, "we");
        assert_non_null(f);
        fprintf(f,
                "port %u\nbind 127.0.0.1\ndir %s\nsave 900 1\nsave 300 10\n"
                "daemonize no\nprotected-mode no\n",
                port, dir);
        fclose(f);
        char *argv[] = {(char *)"redis-server", conf, NULL};
        pid_t pid = th_spawn(argv, NULL, log);
        free(log);
        for (int i = 0; i < 500; i++) {
                redisContext *c = redisConnect("127.0.0.1", port);
                bool up = c && !c->err;
                if (c)
                        redisFree(c);
                if (up)
                        break;
                clock_sleep_us(20000);
        }
        *ret_conf = conf;
        return pid;
}

static void test_config_rewrite(void **state)
{
        struct driver_save_config_result res;
        char *dir = th_tmpdir("conf"), *conf, *text;
        uint16_t port = th_free_port();
        (void)state;

        pid_t pid = start_with_config_file(dir, port, &conf);
        struct driver_instance *inst = instance_as(port, NULL, NULL);
        struct driver_caps caps;
        assert_int_equal(driver_instance_detect(inst, &caps), 0);
        assert_true(caps.has_config_file);

        assert_int_equal(driver_instance_disable_save(inst, true, true, &res), 0);
        assert_true(res.drifted);
        assert_true(res.fixed);
        assert_true(res.rewritten);
        assert_int_equal(read_full_file(conf, 1 << 20, &text, NULL), 0);
        assert_null(strstr(text, "save 900 1"));
        assert_non_null(strstr(text, "save \"\""));
        free(text);
        driver_instance_free(inst);
        th_stop(pid, SIGTERM, 5000);
        free(conf);
        free(dir);
}

/* ---- A fake Kubernetes resolver ------------------------------------------------------------ */

struct fake_k8s {
        uint16_t port;
        int pod_calls, secret_calls;
        int pod_error;
        const char *password;
};

static int fake_resolve_pod(void *userdata, const char *ns, const char *name, char **ret_host,
                            char **ret_error)
{
        struct fake_k8s *k = userdata;
        k->pod_calls++;
        if (k->pod_error) {
                *ret_error = strdup("pods \"redis-0\" not found");
                return k->pod_error;
        }
        assert_string_equal(ns, "cache");
        assert_string_equal(name, "redis-0");
        *ret_host = strdup("127.0.0.1");
        return 0;
}

static int fake_read_secret(void *userdata, const char *ns, const char *name, const char *key,
                            char **ret_value, char **ret_error)
{
        struct fake_k8s *k = userdata;
        (void)ret_error;
        k->secret_calls++;
        if (!streq(ns, "cache") || !streq(name, "redis-auth") || !streq(key, "password"))
                return -ENOENT;
        *ret_value = strdup(k->password);
        return 0;
}

static void test_pod_and_secret(void **state)
{
        struct th_redis r;
        struct rinfo info;
        const char *extra[] = {"--requirepass", "from-secret", NULL};
        struct fake_k8s k = {.password = "from-secret"};
        struct driver_resolver resolver = {
            .resolve_pod = fake_resolve_pod, .read_secret = fake_read_secret, .userdata = &k};
        (void)state;

        th_redis_start(&r, extra);
        struct driver_target t = {
            .id = "redis-0",
            .pod_namespace = "cache",
            .pod_name = "redis-0",
            .port = r.port,
            .secret_namespace = "cache",
            .secret_name = "redis-auth",
            .secret_key = "password",
        };
        struct driver_instance *inst = NULL;
        assert_int_equal(driver_instance_new(&t, &drv_test_opts, &resolver, NULL, &inst, NULL), 0);
        assert_int_equal(driver_instance_info(inst, &info), 0);
        assert_int_equal(k.pod_calls, 1);
        assert_int_equal(k.secret_calls, 1);

        /* Every reconnect resolves again: a rotated password is followed. */
        drv_redis_do(&r, "CONFIG SET requirepass %s", "rotated");
        free(r.password);
        r.password = strdup("rotated");
        k.password = "rotated";
        driver_instance_disconnect(inst);
        assert_int_equal(driver_instance_info(inst, &info), 0);
        assert_int_equal(k.pod_calls, 2);
        assert_int_equal(k.secret_calls, 2);

        /* A pod that is gone: the resolver's message, nothing sent. */
        k.pod_error = -ENOENT;
        driver_instance_disconnect(inst);
        assert_int_equal(driver_instance_connect(inst), -ENOENT);
        assert_non_null(strstr(driver_instance_errstr(inst), "cannot resolve pod cache/redis-0"));
        driver_instance_free(inst);

        /* A missing Secret key. */
        k.pod_error = 0;
        t.secret_key = "nope";
        assert_int_equal(driver_instance_new(&t, &drv_test_opts, &resolver, NULL, &inst, NULL), 0);
        assert_int_equal(driver_instance_connect(inst), -ENOENT);
        assert_non_null(strstr(driver_instance_errstr(inst), "Secret cache/redis-auth"));
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_bad_targets(void **state)
{
        struct driver_instance *inst = NULL;
        char *err = NULL;
        struct driver_target both = {.host = "h", .pod_namespace = "n", .pod_name = "p", .port = 1};
        struct driver_target pod_no_resolver = {.pod_namespace = "n", .pod_name = "p", .port = 1};
        struct driver_target no_port = {.host = "h"};
        struct driver_target half_secret = {.host = "h", .port = 1, .secret_name = "s"};
        (void)state;

        assert_int_equal(driver_instance_new(&both, &drv_test_opts, NULL, NULL, &inst, &err),
                         -EINVAL);
        assert_non_null(strstr(err, "exactly one"));
        free(err);
        assert_int_equal(
            driver_instance_new(&pod_no_resolver, &drv_test_opts, NULL, NULL, &inst, &err),
            -EINVAL);
        free(err);
        assert_int_equal(driver_instance_new(&no_port, &drv_test_opts, NULL, NULL, &inst, &err),
                         -EINVAL);
        free(err);
        assert_int_equal(driver_instance_new(&half_secret, &drv_test_opts, NULL, NULL, &inst, &err),
                         -EINVAL);
        assert_non_null(strstr(err, "Secret"));
        free(err);
        assert_null(inst);
}

static void test_loading(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        char port[16];
        (void)state;

        th_redis_start(&r, NULL);
        drv_redis_do(&r, "DEBUG POPULATE 20000 key 100");
        drv_redis_do(&r, "SAVE");
        /* Restart on the same directory with a slow load (key-load-delay, microseconds per
         * key): the harness would wait for PING, which answers LOADING, so spawn it here. */
        snprintf(port, sizeof(port), "%u", r.port);
        th_stop(r.pid, SIGTERM, 5000);
        char *argv[] = {(char *)"redis-server",
                        (char *)"--port",
                        port,
                        (char *)"--bind",
                        (char *)"127.0.0.1",
                        (char *)"--dir",
                        r.dir,
                        (char *)"--save",
                        (char *)"",
                        (char *)"--key-load-delay",
                        (char *)"200",
                        (char *)"--loading-process-events-interval-bytes",
                        (char *)"1024",
                        NULL};
        r.pid = th_spawn(argv, NULL, NULL);
        struct driver_instance *inst = instance_as(r.port, NULL, NULL);
        struct rinfo info;
        int rc = -1;
        for (int i = 0; i < 200 && rc < 0; i++) {
                rc = driver_instance_info(inst, &info);
                if (rc < 0)
                        clock_sleep_us(10000);
        }
        assert_int_equal(rc, 0);
        assert_true(info.loading);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_FAILED);
        assert_non_null(strstr(res.reason, "loading"));
        assert_int_equal(res.commands_sent, 0);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_caps_of_a_plain_server),
            cmocka_unit_test(test_bgsave_renamed_away),
            cmocka_unit_test(test_acl_user_without_bgsave),
            cmocka_unit_test(test_auth),
            cmocka_unit_test(test_nothing_listens),
            cmocka_unit_test(test_save_config_drift),
            cmocka_unit_test(test_config_renamed),
            cmocka_unit_test(test_config_rewrite),
            cmocka_unit_test(test_pod_and_secret),
            cmocka_unit_test(test_bad_targets),
            cmocka_unit_test(test_loading),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
