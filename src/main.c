/* SPDX-License-Identifier: Apache-2.0 */
/* persistd's entry point: the command line, signals and exit codes; the work is in the library. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "daemon.h"
#include "persistd-version.h"
#include "store/migrations.h"
#include "store/pgstore.h"

#define LOG_MODULE "main"

static void help(void)
{
        printf("Usage: persistd [VERB] [-c FILE] [OPTIONS]\n"
               "\n"
               "Coordinates the persistence of a fleet of Redis instances.\n"
               "\n"
               "Verbs:\n"
               "  run            Run the daemon (the default)\n"
               "  check-config   Check the configuration file and print the effective values\n"
               "  migrate        Bring the PostgreSQL schema to this version and print what\n"
               "                 was applied\n"
               "  version        Print the version\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE    Configuration file (YAML); without it, every default\n"
               "      --fake-start T   Start the schedule clock at instant T (RFC 3339, e.g.\n"
               "                       2026-11-21T23:59:50Z); for tests and demos only\n"
               "  -h, --help           Show this help\n"
               "  -V, --version        Print the version\n"
               "\n"
               "Exit status: 0 success; 1 failure while running; 2 usage error;\n"
               "78 invalid configuration.\n");
}

enum verb {
        VERB_RUN,
        VERB_CHECK_CONFIG,
        VERB_MIGRATE,
        VERB_VERSION,
};

static int parse_verb(const char *s, enum verb *ret)
{
        static const struct {
                const char *name;
                enum verb verb;
        } verbs[] = {
            {"run", VERB_RUN},
            {"check-config", VERB_CHECK_CONFIG},
            {"migrate", VERB_MIGRATE},
            {"version", VERB_VERSION},
        };
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(s, verbs[i].name)) {
                        *ret = verbs[i].verb;
                        return 0;
                }
        return -EINVAL;
}

static int load_config(const char *path, struct config **ret)
{
        _cleanup_free_ char *errors = NULL;
        int r = config_load(path, ret, &errors);
        if (r == -EINVAL) {
                fputs(errors, stderr);
                return EXIT_CONFIG;
        }
        if (r < 0) {
                fprintf(stderr, "persistd: failed to load the configuration: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        return 0;
}

/* persistd migrate: apply what is missing, say what was applied. */
static int migrate(const struct config *config)
{
        const struct pgstore_options opts = {
            .dsn = config->postgres.dsn_secret ? config->postgres.dsn_secret : config->postgres.dsn,
            .connect_timeout_s = config->postgres.connect_timeout_s,
            .statement_timeout_ms = config->postgres.connect_timeout_s * 1000,
        };
        _cleanup_(pgstore_freep) struct pgstore *store = pgstore_new(&opts);
        int from, to;

        if (!store) {
                fprintf(stderr, "persistd: migrate: out of memory\n");
                return EXIT_FAILURE;
        }
        if (pgstore_migrate(store, &from, &to) < 0) {
                fprintf(stderr, "persistd: migrate failed: %s\n", pgstore_errstr());
                return EXIT_FAILURE;
        }
        for (size_t i = 0; i < pgstore_migrations_count; i++)
                if (pgstore_migrations[i].version > from && pgstore_migrations[i].version <= to)
                        printf("applied migration %d: %s\n", pgstore_migrations[i].version,
                               pgstore_migrations[i].name);
        if (from == to)
                printf("schema is up to date at version %d\n", to);
        else
                printf("schema migrated from version %d to %d\n", from, to);
        return EXIT_SUCCESS;
}

int main(int argc, char *argv[])
{
        static const struct option options[] = {
            {"config", required_argument, NULL, 'c'},
            {"fake-start", required_argument, NULL, 'F'},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},
            {0},
        };
        const char *config_path = NULL, *fake_start = NULL;
        _cleanup_(config_freep) struct config *config = NULL;
        enum verb verb = VERB_RUN;
        int c, r;

        while ((c = getopt_long(argc, argv, "+c:hV", options, NULL)) >= 0 ||
               (optind < argc && argv[optind][0] != '-')) {
                if (c < 0) {
                        /* A verb may stand before, between or after the options. */
                        if (verb != VERB_RUN || parse_verb(argv[optind], &verb) < 0) {
                                fprintf(stderr, "persistd: unknown verb \"%s\" (see --help)\n",
                                        argv[optind]);
                                return EXIT_USAGE;
                        }
                        optind++;
                        continue;
                }
                switch (c) {
                case 'c':
                        config_path = optarg;
                        break;
                case 'F':
                        fake_start = optarg;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 'V':
                        verb = VERB_VERSION;
                        break;
                default:
                        return EXIT_USAGE;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "persistd: unexpected argument \"%s\" (see --help)\n",
                        argv[optind]);
                return EXIT_USAGE;
        }

        switch (verb) {
        case VERB_VERSION:
                printf("persistd %s\n", PERSISTD_VERSION);
                return EXIT_SUCCESS;
        case VERB_CHECK_CONFIG:
                r = load_config(config_path, &config);
                if (r != 0)
                        return r;
                config_print(config, stdout);
                return EXIT_SUCCESS;
        case VERB_MIGRATE:
                r = load_config(config_path, &config);
                if (r != 0)
                        return r;
                return migrate(config);
        case VERB_RUN:
                break;
        }

        if (fake_start) {
                int64_t start_us;
                if (clock_parse_rfc3339(fake_start, true, &start_us) < 0) {
                        fprintf(stderr,
                                "persistd: --fake-start: \"%s\" is not an RFC 3339 instant "
                                "(like 2026-11-21T23:59:50Z)\n",
                                fake_start);
                        return EXIT_USAGE;
                }
                clock_wall_start_at(start_us);
        }
        r = load_config(config_path, &config);
        if (r != 0)
                return r;
        return daemon_run(config);
}
