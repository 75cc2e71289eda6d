/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One replica for bench/election: persistd's election as the daemon wires it — the elector over
 * the Lease adapter and the label machine over the label adapter, both on the real Kubernetes
 * client — in a process of its own, so that the benchmark can SIGTERM it (graceful hand-over:
 * release the Lease, as SPEC 1 says) or SIGKILL it (crash). No instance work runs here: the
 * hand-over is measured without the shutdown grace for in-flight commands.
 *
 * usage: election-replica KUBECONFIG POD LEASE-NAME LABEL-KEY LEASE-S RENEW-MS RETRY-MS
 *                         REQUEST-TIMEOUT-MS
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "daemon/k8s-adapters.h"
#include "election/election.h"
#include "election/elector.h"
#include "election/label.h"
#include "k8s/k8s.h"

static struct election_label *label;

static void on_started(void *userdata, uint64_t generation)
{
        election_label_on_started_leading(label, generation);
}

static void on_stopped(void *userdata, uint64_t generation)
{
        election_label_on_stopped_leading(label);
}

static void die(const char *what, int r)
{
        fprintf(stderr, "election-replica: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(1);
}

int main(int argc, char *argv[])
{
        if (argc != 9) {
                fprintf(stderr, "usage: election-replica KUBECONFIG POD LEASE LABEL LEASE-S "
                                "RENEW-MS RETRY-MS REQUEST-TIMEOUT-MS\n");
                return 2;
        }
        const char *pod = argv[2], *lease_name = argv[3], *label_key = argv[4];
        const struct k8s_client_options kopts = {.request_timeout_ms = atoi(argv[8])};
        struct k8s_config *cfg = NULL;
        struct lease_k8s *lease = NULL;
        struct label_k8s *lk = NULL;
        struct elector *e = NULL;
        char *identity = NULL, *err = NULL;
        sigset_t mask;
        int r, sig;

        log_setup(LOG_LEVEL_WARN, LOG_FORMAT_TEXT, 2);
        /* Before any thread starts, so that only sigwait() below sees them. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if ((r = pthread_sigmask(SIG_BLOCK, &mask, NULL)) != 0)
                die("pthread_sigmask", r);

        if ((r = k8s_config_from_kubeconfig(argv[1], &cfg, &err)) < 0) {
                fprintf(stderr, "election-replica: kubeconfig: %s\n", err ? err : "");
                return 1;
        }
        if ((r = election_identity_new(pod, &identity)) < 0)
                die("identity", r);
        if ((r = lease_k8s_new(cfg, &kopts, lease_name, identity, NULL, &lease)) < 0)
                die("lease adapter", r);
        if ((r = label_k8s_new(cfg, &kopts, lease_name, pod, &lk)) < 0)
                die("label adapter", r);
        const struct election_label_options lo = {
            .pod_name = pod, .label_key = label_key, .identity = identity};
        const struct election_label_ops lops = label_k8s_ops(lk);
        if ((r = election_label_new(&lo, &lops, &label)) < 0 ||
            (r = election_label_start(label)) < 0)
                die("label machine", r);
        const struct elector_options eo = {
            .identity = identity,
            .lease_duration_s = atoi(argv[5]),
            .renew_deadline_us = atoll(argv[6]) * USEC_PER_MSEC,
            .retry_period_us = atoll(argv[7]) * USEC_PER_MSEC,
        };
        const struct elector_callbacks cb = {.on_started_leading = on_started,
                                             .on_stopped_leading = on_stopped};
        const struct election_lease_ops ops = lease_k8s_ops(lease);
        if ((r = elector_new(&eo, &ops, &cb, &e)) < 0 || (r = elector_start(e)) < 0)
                die("elector", r);

        sigwait(&mask, &sig);
        /* SIGTERM: release, so a watching follower takes over at once; then our own label goes
         * (the label machine removes it on stepping down), bounded. */
        r = elector_release(e, 5 * USEC_PER_SEC);
        if (r < 0 && r != -ESRCH)
                fprintf(stderr, "election-replica: release: %s\n", strerror(-r));
        int64_t deadline = clock_mono_us() + 5 * USEC_PER_SEC;
        struct election_label_status st;
        do {
                election_label_get_status(label, &st);
                if (st.settled && !st.own_labeled)
                        break;
                clock_sleep_us(10 * USEC_PER_MSEC);
        } while (clock_mono_us() < deadline);
        elector_free(e);
        election_label_free(label);
        lease_k8s_free(lease);
        label_k8s_free(lk);
        k8s_config_free(cfg);
        free(identity);
        free(err);
        return 0;
}
