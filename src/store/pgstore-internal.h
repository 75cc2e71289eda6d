/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by pgstore.c and pgstore-listen.c: opening a connection, scrubbing messages. */
#pragma once

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* Reconnection backoff: doubles from the first to the last value. */
#define PGSTORE_BACKOFF_MIN_US (250 * INT64_C(1000))
#define PGSTORE_BACKOFF_MAX_US (10 * INT64_C(1000000))

/* The channel the triggers notify. */
#define PGSTORE_CHANNEL "persistd_changes"

/*
 * Open a connection to `dsn` ("" = PG* environment) with connect_timeout and TCP keepalives so a
 * dead peer is noticed. On success returns the connection (caller PQfinish-es). On failure NULL
 * and *ret_error (caller frees), scrubbed of the password. Blocks up to connect_timeout_s.
 */
PGconn *pgstore_open_conn(const char *dsn, int connect_timeout_s, const char *application_name,
                          char **ret_error);

/* The password inside `dsn`, if it has one (caller frees), or NULL. */
char *pgstore_dsn_password(const char *dsn);

/* Copy at most size-1 bytes of `src` into `dst`, cutting at a UTF-8 character boundary. */
void pgstore_copy_utf8(char *dst, size_t size, const char *src);
