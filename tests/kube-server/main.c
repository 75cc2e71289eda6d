/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kube-test-server: the command line, start-up (store, tokens, the API server over TLS or
 * plain HTTP, the control server) and an orderly stop on SIGTERM/SIGINT.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ks.h"

static atomic_bool stopping;

bool ks_stopping(void)
{
        return atomic_load(&stopping);
}

int64_t ks_now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void ks_sleep_ms(int64_t ms)
{
        int64_t until = ks_now_us() + ms * 1000;
        while (!ks_stopping()) {
                int64_t left = until - ks_now_us();
                if (left <= 0)
                        return;
                if (left > 50000)
                        left = 50000;
                struct timespec ts = {0, (long)left * 1000};
                nanosleep(&ts, NULL);
        }
}

static char *read_file(const char *path)
{
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t len = 0, cap = 0, n;

        if (!f)
                return NULL;
        do {
                if (len + 4096 + 1 > cap) {
                        cap = cap ? cap * 2 : 8192;
                        char *b = realloc(buf, cap);
                        if (!b) {
                                free(buf);
                                fclose(f);
                                return NULL;
                        }
                        buf = b;
                }
                n = fread(buf + len, 1, 4096, f);
                len += n;
        } while (n > 0 && len < 1024 * 1024);
        fclose(f);
        buf[len] = '\0';
        return buf;
}

static void usage(FILE *f)
{
        fputs("usage: kube-test-server --port PORT --control-port PORT --token-file FILE\n"
              "                        (--tls-cert FILE --tls-key FILE | --plain)\n"
              "                        [--history N]\n"
              "Serves a kube-apiserver 1.26 subset on 127.0.0.1:PORT (see "
              "docs/kube-test-server.md);\n"
              "the control API (faults, stats, compaction) is plain HTTP on "
              "127.0.0.1:CONTROL-PORT.\n",
              f);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
            {"port", required_argument, NULL, 'p'},
            {"control-port", required_argument, NULL, 'c'},
            {"token-file", required_argument, NULL, 't'},
            {"tls-cert", required_argument, NULL, 'C'},
            {"tls-key", required_argument, NULL, 'K'},
            {"plain", no_argument, NULL, 'P'},
            {"history", required_argument, NULL, 'H'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        long port = -1, control_port = -1, history = 10000;
        const char *tokens = NULL, *cert = NULL, *key = NULL;
        bool plain = false;
        int o;

        while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (o) {
                case 'p':
                        port = strtol(optarg, NULL, 10);
                        break;
                case 'c':
                        control_port = strtol(optarg, NULL, 10);
                        break;
                case 't':
                        tokens = optarg;
                        break;
                case 'C':
                        cert = optarg;
                        break;
                case 'K':
                        key = optarg;
                        break;
                case 'P':
                        plain = true;
                        break;
                case 'H':
                        history = strtol(optarg, NULL, 10);
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (port <= 0 || port > 65535 || control_port <= 0 || control_port > 65535 || !tokens ||
            (!plain && (!cert || !key)) || history < 16 || history > 10000000) {
                usage(stderr);
                return 2;
        }

        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits the mask */

        int r = ks_auth_load(tokens);
        if (r < 0) {
                fprintf(stderr, "kube-test-server: cannot read token file %s: %s\n", tokens,
                        strerror(-r));
                return 1;
        }
        ks_store_init((size_t)history);

        char *cert_pem = NULL, *key_pem = NULL;
        if (!plain) {
                cert_pem = read_file(cert);
                key_pem = read_file(key);
                if (!cert_pem || !key_pem) {
                        fprintf(stderr, "kube-test-server: cannot read %s or %s\n", cert, key);
                        return 1;
                }
                if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
                        fprintf(stderr, "kube-test-server: libmicrohttpd has no TLS support\n");
                        return 1;
                }
        }
        struct ks_api_options ao = {(uint16_t)port, cert_pem, key_pem};
        struct MHD_Daemon *api = ks_api_start(&ao);
        if (!api) {
                fprintf(stderr, "kube-test-server: cannot listen on 127.0.0.1:%ld\n", port);
                return 1;
        }
        struct MHD_Daemon *control = ks_control_start((uint16_t)control_port);
        if (!control) {
                fprintf(stderr, "kube-test-server: cannot listen on 127.0.0.1:%ld\n", control_port);
                MHD_stop_daemon(api);
                return 1;
        }
        fprintf(stderr, "kube-test-server: serving %s on 127.0.0.1:%ld, control on :%ld\n",
                plain ? "http" : "https", port, control_port);

        sigdelset(&set, SIGPIPE);
        int sig = 0;
        sigwait(&set, &sig);
        atomic_store(&stopping, true);
        ks_store_broadcast();
        MHD_stop_daemon(control);
        MHD_stop_daemon(api);
        ks_store_free();
        ks_auth_free();
        free(cert_pem);
        free(key_pem);
        return 0;
}
