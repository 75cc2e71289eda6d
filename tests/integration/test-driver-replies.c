/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replies that Debian's redis-server 7.0 cannot be made to give, from a scripted fake server on
 * loopback that speaks RESP and models one Redis's children: the INFO formats of 2.4, 2.8 and
 * 7.0, 2.x's "Can't BGSAVE while AOF log rewriting" and its refusal of BGSAVE SCHEDULE, the
 * lower-case "background save already in progress" race, a bare -ERR (fork failed), -LOADING
 * and -BUSY replies, a child whose save time stays in the same second, another child that INFO
 * does not show (a module fork), and a server restarted under a running save. The model also
 * counts children, so "never two at once" and "exactly one started" are checked.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "redis/driver.h"

/* ---- The fake server --------------------------------------------------------------------- */

/* Scripted by the test before fake_run(); then owned by the serving thread until fake_stop(). */

struct fake {
        pthread_mutex_t lock;
        pthread_t thread;
        int listen_fd;
        uint16_t port;
        bool stop, running;

        /* The model. */
        int version;              /* 24, 28 or 70 */
        int rdb_child, aof_child; /* INFO polls left; 0 = no child */
        bool schedule_pending;
        int64_t lastsave, rdb_saves;
        bool status_ok;
        char run_id[41];

        /* The script. */
        const char *next_bgsave_reply; /* raw RESP for the next BGSAVE instead of the model */
        bool reply_starts_child;       /* ...and a child starts at the same moment */
        int child_polls;               /* how long a child lasts */
        bool child_fails, same_second;
        int restart_after_polls; /* > 0: the run_id changes after so many INFO polls */
        bool always_busy;        /* every BGSAVE: "another child is active" */

        /* What happened. */
        int children_started, bgsave_commands, info_polls;
};

static void start_child(struct fake *f)
{
        f->children_started++;
        f->rdb_saves++; /* counted before the fork, as 7.0 does */
        f->rdb_child = f->child_polls;
}

static void tick(struct fake *f)
{
        f->info_polls++;
        if (f->restart_after_polls && f->info_polls == f->restart_after_polls) {
                memcpy(f->run_id, "ffffffffffffffffffffffffffffffffffffffff", 40);
                f->rdb_child = 0;
        }
        if (f->rdb_child > 0 && --f->rdb_child == 0) {
                f->status_ok = !f->child_fails;
                if (f->status_ok && !f->same_second)
                        f->lastsave++;
        }
        if (f->aof_child > 0 && --f->aof_child == 0 && f->schedule_pending) {
                f->schedule_pending = false;
                start_child(f);
        }
}

static char *info_text(struct fake *f)
{
        char *s = NULL, saves[64] = "";
        int r;
        if (f->version == 24) {
                r = asprintf(&s,
                             "redis_version:2.4.17\r\nused_memory:4096\r\nloading:0\r\n"
                             "bgsave_in_progress:%d\r\nlast_save_time:%lld\r\n"
                             "bgrewriteaof_in_progress:%d\r\nrole:master\r\n",
                             f->rdb_child > 0, (long long)f->lastsave, f->aof_child > 0);
                assert_true(r > 0);
                return s;
        }
        if (f->version == 70) /* rdb_saves exists from 7.0 */
                snprintf(saves, sizeof(saves), "rdb_saves:%lld\r\n", (long long)f->rdb_saves);
        r = asprintf(&s,
                     "# Server\r\nredis_version:%s\r\nrun_id:%s\r\n\r\n# Memory\r\n"
                     "used_memory:4096\r\n\r\n# Persistence\r\nloading:0\r\n"
                     "rdb_bgsave_in_progress:%d\r\nrdb_last_save_time:%lld\r\n"
                     "rdb_last_bgsave_status:%s\r\n%saof_rewrite_in_progress:%d\r\n"
                     "aof_rewrite_scheduled:0\r\naof_last_bgrewrite_status:ok\r\n\r\n"
                     "# Stats\r\nlatest_fork_usec:100\r\n",
                     f->version == 70 ? "7.0.0" : "2.8.24", f->run_id, f->rdb_child > 0,
                     (long long)f->lastsave, f->status_ok ? "ok" : "err", saves, f->aof_child > 0);
        assert_true(r > 0);
        return s;
}

/* The reply to BGSAVE [SCHEDULE] from the model; raw RESP, static or caller frees via *own. */
static const char *bgsave(struct fake *f, bool schedule)
{
        f->bgsave_commands++;
        if (f->next_bgsave_reply) {
                const char *r = f->next_bgsave_reply;
                f->next_bgsave_reply = NULL;
                if (f->reply_starts_child)
                        start_child(f);
                return r;
        }
        if (f->always_busy)
                return "-ERR Another child process is active (AOF?): can't BGSAVE right now.\r\n";
        if (schedule && f->version < 32)
                return "-ERR wrong number of arguments for 'bgsave' command\r\n";
        if (f->rdb_child)
                return f->version == 24 ? "-ERR background save already in progress\r\n"
                                        : "-ERR Background save already in progress\r\n";
        if (f->aof_child) {
                if (schedule) {
                        f->schedule_pending = true;
                        return "+Background saving scheduled\r\n";
                }
                return f->version < 32
                           ? "-ERR Can't BGSAVE while AOF log rewriting is in progress\r\n"
                           : "-ERR Another child process is active (AOF?): can't BGSAVE "
                             "right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE "
                             "whenever possible.\r\n";
        }
        start_child(f);
        return "+Background saving started\r\n";
}

static bool read_command(FILE *in, char args[4][64], int *argc)
{
        char line[128];
        if (!fgets(line, sizeof(line), in) || line[0] != '*')
                return false;
        *argc = atoi(line + 1);
        for (int i = 0; i < *argc; i++) {
                if (!fgets(line, sizeof(line), in) || line[0] != '$')
                        return false;
                size_t len = (size_t)atoi(line + 1);
                char buf[256];
                if (len + 2 > sizeof(buf) || fread(buf, 1, len + 2, in) != len + 2)
                        return false;
                if (i < 4) {
                        size_t n = len < 63 ? len : 63;
                        memcpy(args[i], buf, n);
                        args[i][n] = '\0';
                }
        }
        return true;
}

static void write_all(int fd, const char *s, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, s, n);
                if (w <= 0)
                        return;
                s += w;
                n -= (size_t)w;
        }
}

static void serve(struct fake *f, int fd)
{
        FILE *in = fdopen(dup(fd), "r");
        char args[4][64];
        int argc;

        while (in && read_command(in, args, &argc)) {
                pthread_mutex_lock(&f->lock);
                if (strcasecmp(args[0], "INFO") == 0) {
                        tick(f);
                        char *text = info_text(f);
                        char *resp;
                        assert_true(asprintf(&resp, "$%zu\r\n%s\r\n", strlen(text), text) > 0);
                        write_all(fd, resp, strlen(resp));
                        free(resp);
                        free(text);
                } else if (strcasecmp(args[0], "BGSAVE") == 0) {
                        const char *r = bgsave(f, argc > 1);
                        write_all(fd, r, strlen(r));
                } else if (strcasecmp(args[0], "PING") == 0) {
                        write_all(fd, "+PONG\r\n", 7);
                } else {
                        const char r[] = "-ERR unknown command\r\n";
                        write_all(fd, r, sizeof(r) - 1);
                }
                pthread_mutex_unlock(&f->lock);
        }
        if (in)
                fclose(in);
}

static void *fake_main(void *p)
{
        struct fake *f = p;
        for (;;) {
                pthread_mutex_lock(&f->lock);
                bool stop = f->stop;
                pthread_mutex_unlock(&f->lock);
                if (stop)
                        return NULL;
                struct pollfd pfd = {.fd = f->listen_fd, .events = POLLIN};
                if (poll(&pfd, 1, 50) <= 0)
                        continue;
                int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                serve(f, fd);
                close(fd);
        }
}

static void fake_start(struct fake *f, int version)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);

        memset(f, 0, sizeof(*f));
        pthread_mutex_init(&f->lock, NULL);
        f->version = version;
        f->lastsave = 1700000000;
        f->status_ok = true;
        f->child_polls = 3;
        memcpy(f->run_id, "0123456789012345678901234567890123456789", 41);
        f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(f->listen_fd >= 0);
        assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->listen_fd, 4), 0);
        assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&sa, &len), 0);
        f->port = ntohs(sa.sin_port);
}

/* The serving thread starts once the test has scripted the model (pthread_create orders it). */
static void fake_run(struct fake *f)
{
        if (!f->running)
                assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
        f->running = true;
}

static void fake_stop(struct fake *f)
{
        pthread_mutex_lock(&f->lock);
        f->stop = true;
        pthread_mutex_unlock(&f->lock);
        if (f->running)
                pthread_join(f->thread, NULL);
        close(f->listen_fd);
        pthread_mutex_destroy(&f->lock);
}

/* ---- Tests --------------------------------------------------------------------------------- */

static const struct driver_options test_opts = {
    .connect_timeout_ms = 2000,
    .command_timeout_ms = 2000,
    .poll_min_ms = 1,
    .poll_max_ms = 5,
    .timeout_factor = 4,
    .min_timeout_s = 10,
};

/* One save against the fake; the instance is freed (and disconnected) before returning, so
 * the fake's counters can be read without a lock afterwards. */
static enum driver_outcome save(struct fake *f, enum driver_mode mode,
                                struct driver_save_result *res)
{
        struct driver_target t = {.id = "fake", .host = "127.0.0.1", .port = f->port};
        struct driver_instance *inst = NULL;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE, .mode = mode};
        assert_int_equal(driver_instance_new(&t, &test_opts, NULL, NULL, &inst, NULL), 0);
        fake_run(f);
        enum driver_outcome o = driver_instance_save(inst, &req, res);
        driver_instance_free(inst);
        return o;
}

static void test_redis_28_save(void **state)
{
        struct fake f;
        struct driver_save_result res;
        (void)state;
        fake_start(&f, 28);
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_SUCCEEDED);
        fake_stop(&f);
        assert_false(res.has_counter);
        assert_true(res.lastsave_after > res.lastsave_before);
        assert_int_equal(res.commands_sent, 1);
        assert_int_equal(f.children_started, 1);
}

static void test_redis_28_aof_rewrite_running(void **state)
{
        struct fake f;
        struct driver_save_result res;
        (void)state;
        fake_start(&f, 28);
        f.aof_child = 4;
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_SUCCEEDED);
        fake_stop(&f);
        /* SCHEDULE refused (before 3.2), then the AOF child is waited for, then BGSAVE. */
        assert_int_equal(res.commands_sent, 2);
        assert_int_equal(f.bgsave_commands, 2);
        assert_int_equal(f.children_started, 1);
        assert_false(res.scheduled);
}

static void test_redis_28_same_second(void **state)
{
        struct fake f;
        struct driver_save_result res;
        (void)state;
        /* The save ends in the second of the previous one: lastsave cannot move, but the
         * "started" reply proved the child was ours and the status is ok. */
        fake_start(&f, 28);
        f.same_second = true;
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_SUCCEEDED);
        fake_stop(&f);
        assert_int_equal(res.lastsave_after, res.lastsave_before);
        assert_int_equal(f.children_started, 1);
}

static void test_redis_28_failed_child(void **state)
{
        struct fake f;
        struct driver_save_result res;
        (void)state;
        fake_start(&f, 28);
        f.child_fails = true;
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_FAILED);
        fake_stop(&f);
        assert_non_null(strstr(res.reason, "rdb_last_bgsave_status:err"));
}

static void test_redis_24(void **state)
{
        struct fake f;
        struct driver_save_result res;
        (void)state;
        fake_start(&f, 24);
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_SUCCEEDED);
        fake_stop(&f);
        assert_true(res.lastsave_after > res.lastsave_before);

        /* 2.4 has no status field: a child that wrote nothing is a failure. */
        fake_start(&f, 24);
        f.child_fails = true;
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_FAILED);
        fake_stop(&f);
        assert_non_null(strstr(res.reason, "without a new last_save_time"));
}

static void test_refusals(void **state)
{
        static const struct {
                const char *reply, *reason;
        } cases[] = {
            {"-ERR\r\n", "fork failed"},
            {"-LOADING Redis is loading the dataset in memory\r\n", "loading its dataset"},
            {"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
             "SHUTDOWN NOSAVE.\r\n",
             "refused: BUSY"},
            {"-NOPERM this user has no permissions to run the 'bgsave' command\r\n",
             "not permitted"},
            {"-ERR unknown command `BGSAVE`, with args beginning with: \r\n", "not available"},
            {"-MISCONF Errors writing to the AOF file\r\n", "refused: MISCONF"},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct fake f;
                struct driver_save_result res;
                fake_start(&f, 70);
                f.next_bgsave_reply = cases[i].reply;
                assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_FAILED);
                fake_stop(&f);
                if (!strstr(res.reason, cases[i].reason))
                        fail_msg("reply %s: reason \"%s\"", cases[i].reply, res.reason);
                assert_int_equal(res.commands_sent, 1);
                assert_int_equal(f.children_started, 0);
        }
}

static void test_race_already_in_progress(void **state)
{
        struct fake f;
        struct driver_save_result res;
        (void)state;
        /* INFO showed no child, but one started before our BGSAVE arrived (2.x spelling). */
        fake_start(&f, 24);
        f.next_bgsave_reply = "-ERR background save already in progress\r\n";
        f.reply_starts_child = true;
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_SUCCEEDED);
        fake_stop(&f);
        assert_true(res.waited_existing);
        assert_true(res.joined_existing);
        assert_int_equal(res.commands_sent, 1);
        assert_int_equal(f.children_started, 1);

        /* Persist-now: the same race, then exactly one save of its own. */
        fake_start(&f, 70);
        f.next_bgsave_reply = "-ERR Background save already in progress\r\n";
        f.reply_starts_child = true;
        assert_int_equal(save(&f, DRIVER_MODE_FRESH, &res), DRIVER_SUCCEEDED);
        fake_stop(&f);
        assert_true(res.waited_existing);
        assert_false(res.joined_existing);
        assert_int_equal(res.commands_sent, 2);
        assert_int_equal(f.children_started, 2);
}

static void test_invisible_child_leads_to_schedule(void **state)
{
        struct fake f;
        struct driver_save_result res;
        (void)state;
        /* A module's fork is not in INFO's persistence fields; 7.0 refuses a plain BGSAVE. */
        fake_start(&f, 70);
        f.next_bgsave_reply = "-ERR Another child process is active (AOF?): can't BGSAVE right "
                              "now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever "
                              "possible.\r\n";
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_SUCCEEDED);
        fake_stop(&f);
        assert_int_equal(res.commands_sent, 2);
        assert_int_equal(f.children_started, 1);
        assert_true(res.has_counter);
        assert_int_equal(res.counter_after, res.counter_before + 1);
}

static void test_restart_under_a_save(void **state)
{
        struct fake f;
        struct driver_save_result res;
        (void)state;
        fake_start(&f, 70);
        f.child_polls = 50;
        f.restart_after_polls = 3;
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_FAILED);
        fake_stop(&f);
        assert_non_null(strstr(res.reason, "restarted"));
}

static void test_stubborn_server_gives_up(void **state)
{
        struct fake f;
        struct driver_save_result res;
        (void)state;
        /* Claims another child forever but never shows one: bounded attempts, then a reason. */
        fake_start(&f, 70);
        f.always_busy = true;
        assert_int_equal(save(&f, DRIVER_MODE_NORMAL, &res), DRIVER_FAILED);
        fake_stop(&f);
        assert_non_null(strstr(res.reason, "not started after 8 attempts"));
        assert_int_equal(f.bgsave_commands, 8);
        assert_int_equal(f.children_started, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_redis_28_save),
            cmocka_unit_test(test_redis_28_aof_rewrite_running),
            cmocka_unit_test(test_redis_28_same_second),
            cmocka_unit_test(test_redis_28_failed_child),
            cmocka_unit_test(test_redis_24),
            cmocka_unit_test(test_refusals),
            cmocka_unit_test(test_race_already_in_progress),
            cmocka_unit_test(test_invisible_child_leads_to_schedule),
            cmocka_unit_test(test_restart_under_a_save),
            cmocka_unit_test(test_stubborn_server_gives_up),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
