/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Proves the harness: a real redis-server starts on a free port in its own directory, saves
 * data, survives a restart with it, and is gone after stop; a real PostgreSQL database is
 * created, used and isolated from other tests.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static void test_redis_start_save_restart_stop(void **state)
{
        struct th_redis r;
        struct stat st;
        char *rdb;

        th_redis_start(&r, NULL);
        assert_true(r.port > 0);
        assert_int_equal(kill(r.pid, 0), 0);

        redisContext *c = th_redis_connect(&r);
        /* The harness turns automatic saves off, as persistd does for managed instances. */
        redisReply *rep = th_redis_cmd(c, "CONFIG GET save");
        assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
        assert_string_equal(rep->element[1]->str, "");
        freeReplyObject(rep);

        rep = th_redis_cmd(c, "DEBUG POPULATE 10000 key 100");
        assert_int_equal(rep->type, REDIS_REPLY_STATUS);
        freeReplyObject(rep);
        long long saves_before = th_redis_info_int(c, "rdb_saves");
        assert_true(saves_before >= 0);
        rep = th_redis_cmd(c, "SAVE");
        assert_string_equal(rep->str, "OK");
        freeReplyObject(rep);
        assert_int_equal(th_redis_info_int(c, "rdb_saves"), saves_before + 1);
        redisFree(c);

        assert_true(asprintf(&rdb, "%s/dump.rdb", r.dir) > 0);
        assert_int_equal(stat(rdb, &st), 0);
        assert_true(st.st_size > 100000);

        /* Same port, same directory: the data comes back from the RDB. */
        uint16_t port = r.port;
        th_redis_restart(&r, NULL);
        assert_int_equal(r.port, port);
        c = th_redis_connect(&r);
        rep = th_redis_cmd(c, "DBSIZE");
        assert_int_equal(rep->integer, 10000);
        freeReplyObject(rep);
        redisFree(c);

        pid_t pid = r.pid;
        char *dir = strdup(r.dir);
        th_redis_stop(&r);
        assert_int_equal(r.pid, 0);
        assert_int_equal(kill(pid, 0), -1);
        assert_int_not_equal(stat(dir, &st), 0);
        free(dir);
        free(rdb);
}

static void test_redis_password(void **state)
{
        static const char *const extra[] = {"--requirepass", "s3cret", NULL};
        struct th_redis r;

        th_redis_start(&r, extra);
        redisContext *c = th_redis_connect(&r);
        redisReply *rep = th_redis_cmd(c, "PING");
        assert_string_equal(rep->str, "PONG");
        freeReplyObject(rep);
        redisFree(c);

        /* Without AUTH the server refuses. */
        struct timeval tv = {2, 0};
        c = redisConnectWithTimeout("127.0.0.1", r.port, tv);
        rep = th_redis_cmd(c, "PING");
        assert_int_equal(rep->type, REDIS_REPLY_ERROR);
        assert_non_null(strstr(rep->str, "NOAUTH"));
        freeReplyObject(rep);
        redisFree(c);
        th_redis_stop(&r);
}

static void test_two_servers_are_independent(void **state)
{
        struct th_redis a, b;
        th_redis_start(&a, NULL);
        th_redis_start(&b, NULL);
        assert_int_not_equal(a.port, b.port);
        assert_string_not_equal(a.dir, b.dir);
        redisContext *c = th_redis_connect(&a);
        freeReplyObject(th_redis_cmd(c, "SET only-in-a 1"));
        redisFree(c);
        c = th_redis_connect(&b);
        redisReply *rep = th_redis_cmd(c, "EXISTS only-in-a");
        assert_int_equal(rep->integer, 0);
        freeReplyObject(rep);
        redisFree(c);
        th_redis_stop(&a);
        th_redis_stop(&b);
}

static void test_postgres_database(void **state)
{
        char *db1 = th_pg_create_db("harness");
        char *db2 = th_pg_create_db("harness");
        assert_string_not_equal(db1, db2);

        PGconn *c = th_pg_connect(db1);
        th_pg_exec(c, "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)");
        th_pg_exec(c, "INSERT INTO t VALUES (1, 'one'), (2, 'two')");
        char *v = th_pg_value(c, "SELECT string_agg(v, ',' ORDER BY id) FROM t");
        assert_string_equal(v, "one,two");
        free(v);
        v = th_pg_value(c, "SHOW server_version_num");
        assert_true(atoi(v) >= 120000);
        free(v);
        PQfinish(c);

        /* The other database does not see the table. */
        c = th_pg_connect(db2);
        v = th_pg_value(c, "SELECT count(*) FROM pg_tables WHERE tablename = 't'");
        assert_string_equal(v, "0");
        free(v);
        PQfinish(c);
        free(db1);
        free(db2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_redis_start_save_restart_stop),
            cmocka_unit_test(test_redis_password),
            cmocka_unit_test(test_two_servers_are_independent),
            cmocka_unit_test(test_postgres_database),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
