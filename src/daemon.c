/* SPDX-License-Identifier: Apache-2.0 */
/* persistd run: module start-up and orderly shutdown on a signal. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "daemon.h"
#include "persistd-version.h"

#define LOG_MODULE "daemon"

int daemon_run(const struct config *config)
{
        sigset_t mask;
        int sig;

        log_setup(config->log.level, config->log.format, STDERR_FILENO);

        /* Block the stop signals in every thread; this one waits for them with sigwait(). */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        if (clock_wall_is_shifted()) {
                char now[CLOCK_RFC3339_MAX];
                log_warn("schedule clock started at %s (--fake-start): for tests only",
                         clock_format_rfc3339(clock_wall_us(), 0, now));
        }
        log_info("persistd %s starting (config %s)", PERSISTD_VERSION,
                 config->path ? config->path : "defaults");

        for (;;) {
                if (sigwait(&mask, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        log_info("SIGHUP ignored: restart the process to change its configuration");
                        continue;
                }
                break;
        }
        log_info("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        log_info("stopped");
        return EXIT_SUCCESS;
}
