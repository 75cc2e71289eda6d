/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A PostgreSQL server of the test's own (initdb + pg_ctl as the `postgres` user, trust on
 * 127.0.0.1 only, a free loopback port), which a test can stop and start again on the same port
 * and data directory — the suite's pg_virtualenv cluster cannot be restarted from a test.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct ownpg {
        char *dir;  /* owned by postgres: data/, server.log, the Unix socket */
        char *data; /* the data directory */
        uint16_t port;
        char *dsn; /* "host=127.0.0.1 port=P dbname=postgres user=postgres connect_timeout=2" */
        bool running;
};

/* initdb and start. Aborts the test program (th_die) when PostgreSQL cannot be set up. At most
 * one at a time; it is stopped at exit if the test did not. */
void ownpg_init(struct ownpg *pg);
/* pg_ctl stop -m fast (waits). */
void ownpg_stop(struct ownpg *pg);
/* pg_ctl start on the same port and data directory (waits until it accepts connections). */
void ownpg_start(struct ownpg *pg);
/* Stop if running, remove the directory, free the strings. */
void ownpg_destroy(struct ownpg *pg);
