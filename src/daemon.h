/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's lifetime: start every module in order, wait for SIGTERM or SIGINT, stop them in
 * reverse order. This is the wiring that `persistd run` performs; it owns no policy of its own.
 */
#pragma once

#include "config/config.h"

/* Exit codes of persistd (documented in --help and README.md). */
#define EXIT_USAGE  2
#define EXIT_CONFIG 78

/*
 * Start every module in order (docs/daemon.md), run until SIGTERM or SIGINT, then stop taking
 * work, let the saves in flight answer (election.shutdown_grace_s), release the Lease and stop
 * everything in reverse order. Borrows `config`. Must be called from the main thread before any
 * other thread exists (it sets the signal mask every later thread inherits). Returns an exit
 * code: EXIT_SUCCESS after an orderly stop (also when a stop signal arrives while it waits for
 * PostgreSQL at start-up), EXIT_FAILURE when a module could not start (Kubernetes settings
 * missing, a database schema newer than this binary, the HTTP port taken, ...).
 */
int daemon_run(const struct config *config);
