/* SPDX-License-Identifier: Apache-2.0 */
/* persistctl: the command-line client of persistd's HTTP API. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/macro.h"
#include "persistd-version.h"

static void help(void)
{
        printf("Usage: persistctl [OPTIONS] COMMAND\n"
               "\n"
               "Commands:\n"
               "  version        Print the version\n"
               "\n"
               "Options:\n"
               "  -h, --help     Show this help\n"
               "\n"
               "Exit status: 0 success; 2 usage error.\n");
}

int main(int argc, char *argv[])
{
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return 2;
                }
        }
        if (optind >= argc) {
                help();
                return 2;
        }
        if (streq(argv[optind], "version")) {
                printf("persistctl %s\n", PERSISTD_VERSION);
                return EXIT_SUCCESS;
        }
        fprintf(stderr, "persistctl: unknown command \"%s\" (see --help)\n", argv[optind]);
        return 2;
}
