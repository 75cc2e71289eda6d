/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's lifetime: start every module in order, wait for SIGTERM or SIGINT, stop them in
 * reverse order. This is the wiring that `persistd run` performs; it owns no policy of its own.
 */
#pragma once

#include "config/config.h"

/* Exit codes of persistd (documented in --help and README.md). */
#define EXIT_USAGE 2
#define EXIT_CONFIG 78

/*
 * Run until SIGTERM or SIGINT. Borrows `config`. Must be called from the main thread before any
 * other thread exists (it sets the signal mask every later thread inherits). Returns an exit
 * code: EXIT_SUCCESS after an orderly stop, EXIT_FAILURE when a module could not start.
 */
int daemon_run(const struct config *config);
