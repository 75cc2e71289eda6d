/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The leader-label machine against a fake pod backend: the label leaves our pod at start and
 * after stepping down (retried until it works or we lead again), comes to our pod when we lead,
 * and leaves every other pod then, a crashed leader's included; with electors sharing an
 * in-memory Lease, exactly the leader's pod ends up labeled.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/log.h"
#include "election/label.h"
#include "fake-lease.h"

#define MS          USEC_PER_MSEC
#define KEY         "persistd.io/leader"
#define GENEROUS_US (20 * USEC_PER_SEC)

struct fake_pod {
        char name[64];
        bool labeled;
        bool vanishes; /* listed, but gone when patched */
        int fail_remove, fail_add;
};

struct fake_pods {
        pthread_mutex_t lock;
        struct fake_pod pods[8];
        size_t n;
        int fail_list;
        uint64_t patches, lists;
        int elected, lost;
        char last_event_identity[ELECTION_HOLDER_MAX];
};

struct pods_client {
        struct fake_pods *p;
        bool dead; /* every call fails, like a crashed pod's process */
};

static void pods_init(struct fake_pods *p)
{
        memset(p, 0, sizeof(*p));
        pthread_mutex_init(&p->lock, NULL);
}

static struct fake_pod *pods_add(struct fake_pods *p, const char *name, bool labeled)
{
        struct fake_pod *pod = &p->pods[p->n++];
        snprintf(pod->name, sizeof(pod->name), "%s", name);
        pod->labeled = labeled;
        return pod;
}

static struct fake_pod *pods_find(struct fake_pods *p, const char *name)
{
        for (size_t i = 0; i < p->n; i++)
                if (streq(p->pods[i].name, name))
                        return &p->pods[i];
        return NULL;
}

static bool pod_labeled(struct fake_pods *p, const char *name)
{
        pthread_mutex_lock(&p->lock);
        bool r = pods_find(p, name)->labeled;
        pthread_mutex_unlock(&p->lock);
        return r;
}

static int labeled_count(struct fake_pods *p)
{
        int n = 0;
        pthread_mutex_lock(&p->lock);
        for (size_t i = 0; i < p->n; i++)
                n += p->pods[i].labeled;
        pthread_mutex_unlock(&p->lock);
        return n;
}

static int fake_patch_label(void *userdata, const char *pod, const char *key, const char *value,
                            int64_t timeout_us)
{
        struct pods_client *c = userdata;
        struct fake_pods *p = c->p;
        int r = 0;

        assert_string_equal(key, KEY);
        pthread_mutex_lock(&p->lock);
        p->patches++;
        struct fake_pod *fp = pods_find(p, pod);
        if (c->dead)
                r = -EIO;
        else if (!fp || fp->vanishes)
                r = -ENOENT;
        else if (!value && fp->fail_remove > 0) {
                fp->fail_remove--;
                r = -ECONNRESET;
        } else if (value && fp->fail_add > 0) {
                fp->fail_add--;
                r = -ECONNRESET;
        } else {
                if (value)
                        assert_string_equal(value, "true");
                fp->labeled = value != NULL;
        }
        pthread_mutex_unlock(&p->lock);
        return r;
}

static int fake_list_labeled(void *userdata, const char *key, const char *value, int64_t timeout_us,
                             void (*each)(void *ctx, const char *pod), void *ctx)
{
        struct pods_client *c = userdata;
        struct fake_pods *p = c->p;
        char names[8][64];
        size_t n = 0;

        assert_string_equal(key, KEY);
        assert_string_equal(value, "true");
        pthread_mutex_lock(&p->lock);
        p->lists++;
        if (c->dead || p->fail_list > 0) {
                if (!c->dead)
                        p->fail_list--;
                pthread_mutex_unlock(&p->lock);
                return -EIO;
        }
        for (size_t i = 0; i < p->n; i++)
                if (p->pods[i].labeled || p->pods[i].vanishes)
                        strcpy(names[n++], p->pods[i].name);
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; i < n; i++)
                each(ctx, names[i]);
        return 0;
}

static int fake_emit_event(void *userdata, enum election_event_kind kind, const char *identity,
                           int64_t timeout_us)
{
        struct pods_client *c = userdata;
        struct fake_pods *p = c->p;
        if (c->dead)
                return -EIO;
        pthread_mutex_lock(&p->lock);
        if (kind == ELECTION_EVENT_LEADER_ELECTED)
                p->elected++;
        else
                p->lost++;
        snprintf(p->last_event_identity, sizeof(p->last_event_identity), "%s", identity);
        pthread_mutex_unlock(&p->lock);
        return 0;
}

static struct election_label_ops pods_ops(struct pods_client *c)
{
        struct election_label_ops ops = {
            .patch_label = fake_patch_label,
            .list_labeled = fake_list_labeled,
            .emit_event = fake_emit_event,
            .userdata = c,
        };
        return ops;
}

static struct election_label *label_new(struct pods_client *c, const char *pod,
                                        const char *identity)
{
        struct election_label_options opts = {
            .pod_name = pod,
            .label_key = KEY,
            .identity = identity,
            .call_timeout_us = 500 * MS,
            .retry_min_us = 10 * MS,
            .retry_max_us = 80 * MS,
        };
        struct election_label_ops ops = pods_ops(c);
        struct election_label *l = NULL;
        assert_int_equal(election_label_new(&opts, &ops, &l), 0);
        return l;
}

static bool settled(struct election_label *l)
{
        struct election_label_status st;
        election_label_get_status(l, &st);
        return st.settled;
}

/* Poll `cond` until it holds or the generous deadline passes; then assert it. */
#define WAIT_FOR(cond)                                                                             \
        do {                                                                                       \
                int64_t _deadline = clock_mono_us() + GENEROUS_US;                                 \
                while (!(cond) && clock_mono_us() < _deadline)                                     \
                        clock_sleep_us(2 * MS);                                                    \
                assert_true(cond);                                                                 \
        } while (0)

static int events_of(struct fake_pods *p, const int *field)
{
        pthread_mutex_lock(&p->lock);
        int v = *field;
        pthread_mutex_unlock(&p->lock);
        return v;
}

/* ---- the machine alone ------------------------------------------------------------------- */

static void test_validates(void **state)
{
        struct fake_pods p;
        struct pods_client c = {.p = &p};
        struct election_label *l = NULL;
        struct election_label_ops ops = pods_ops(&c);
        struct election_label_options opts = {.pod_name = "a", .label_key = KEY, .identity = "a_1"};

        pods_init(&p);
        struct election_label_options bad = opts;
        bad.pod_name = "";
        assert_int_equal(election_label_new(&bad, &ops, &l), -EINVAL);
        bad = opts;
        bad.label_key = NULL;
        assert_int_equal(election_label_new(&bad, &ops, &l), -EINVAL);
        struct election_label_ops no_list = ops;
        no_list.list_labeled = NULL;
        assert_int_equal(election_label_new(&opts, &no_list, &l), -EINVAL);
        assert_null(l);
        /* Built but never started: freeing is fine. */
        assert_int_equal(election_label_new(&opts, &ops, &l), 0);
        election_label_free(l);
        election_label_free(NULL);
        assert_string_equal(election_event_kind_to_string(ELECTION_EVENT_LEADER_LOST),
                            "LeaderLost");
}

static void test_start_removes_own_label(void **state)
{
        struct fake_pods p;
        struct pods_client c = {.p = &p};

        pods_init(&p);
        pods_add(&p, "me", true); /* left over from our previous process */
        pods_add(&p, "leader", true);
        struct election_label *l = label_new(&c, "me", "me_1");
        assert_int_equal(election_label_start(l), 0);
        assert_int_equal(election_label_start(l), -EALREADY);

        WAIT_FOR(!pod_labeled(&p, "me") && settled(l));
        /* A follower leaves other pods alone, and records no Event. */
        assert_true(pod_labeled(&p, "leader"));
        assert_int_equal(events_of(&p, &p.elected) + events_of(&p, &p.lost), 0);
        election_label_free(l);
}

static void test_leading_labels_self_and_clears_others(void **state)
{
        struct fake_pods p;
        struct pods_client c = {.p = &p};

        pods_init(&p);
        pods_add(&p, "me", false);
        pods_add(&p, "crashed-leader", true);
        pods_add(&p, "bystander", false);
        pods_add(&p, "gone", false)->vanishes = true; /* listed, deleted since */
        struct election_label *l = label_new(&c, "me", "me_1");
        assert_int_equal(election_label_start(l), 0);
        WAIT_FOR(settled(l));

        election_label_on_started_leading(l, 1);
        WAIT_FOR(pod_labeled(&p, "me") && !pod_labeled(&p, "crashed-leader") && settled(l));
        assert_false(pod_labeled(&p, "bystander"));
        assert_int_equal(labeled_count(&p), 1);

        struct election_label_status st;
        election_label_get_status(l, &st);
        assert_true(st.leading && st.own_labeled);
        assert_int_equal(st.removed, 2); /* crashed-leader, and gone (already absent) */

        WAIT_FOR(events_of(&p, &p.elected) == 1);
        pthread_mutex_lock(&p.lock);
        assert_string_equal(p.last_event_identity, "me_1");
        pthread_mutex_unlock(&p.lock);
        election_label_free(l);
}

static void test_stepping_down_retries_removal(void **state)
{
        struct fake_pods p;
        struct pods_client c = {.p = &p};

        pods_init(&p);
        struct fake_pod *me = pods_add(&p, "me", false);
        struct election_label *l = label_new(&c, "me", "me_1");
        assert_int_equal(election_label_start(l), 0);
        election_label_on_started_leading(l, 1);
        WAIT_FOR(pod_labeled(&p, "me") && settled(l));

        pthread_mutex_lock(&p.lock);
        me->fail_remove = 4;
        pthread_mutex_unlock(&p.lock);
        election_label_on_stopped_leading(l);
        WAIT_FOR(!pod_labeled(&p, "me") && settled(l));

        struct election_label_status st;
        election_label_get_status(l, &st);
        assert_false(st.leading);
        assert_true(st.failures >= 4);
        assert_int_equal(st.last_error, -ECONNRESET);
        WAIT_FOR(events_of(&p, &p.lost) == 1);
        election_label_free(l);
}

static void test_leading_again_while_removal_fails(void **state)
{
        struct fake_pods p;
        struct pods_client c = {.p = &p};

        pods_init(&p);
        struct fake_pod *me = pods_add(&p, "me", true);
        pthread_mutex_lock(&p.lock);
        me->fail_remove = 1000000; /* the API refuses the removal, for ever */
        pthread_mutex_unlock(&p.lock);
        struct election_label *l = label_new(&c, "me", "me_1");
        assert_int_equal(election_label_start(l), 0);

        struct election_label_status st;
        WAIT_FOR((election_label_get_status(l, &st), st.failures >= 3));
        assert_false(settled(l));
        assert_true(pod_labeled(&p, "me"));

        /* Leading again ends the retries: the goal is now the label on our pod. */
        election_label_on_started_leading(l, 2);
        WAIT_FOR(settled(l));
        assert_true(pod_labeled(&p, "me"));
        election_label_free(l);
}

static void test_other_pod_removal_and_list_retried(void **state)
{
        struct fake_pods p;
        struct pods_client c = {.p = &p};

        pods_init(&p);
        pods_add(&p, "me", false);
        struct fake_pod *old = pods_add(&p, "old", true);
        pthread_mutex_lock(&p.lock);
        old->fail_remove = 3;
        p.fail_list = 2;
        pthread_mutex_unlock(&p.lock);
        struct election_label *l = label_new(&c, "me", "me_1");
        assert_int_equal(election_label_start(l), 0);
        election_label_on_started_leading(l, 1);
        WAIT_FOR(!pod_labeled(&p, "old") && settled(l));
        assert_true(pod_labeled(&p, "me"));

        struct election_label_status st;
        election_label_get_status(l, &st);
        assert_true(st.failures >= 5);
        election_label_free(l);
}

static void test_resync_restores_labels(void **state)
{
        struct fake_pods p;
        struct pods_client c = {.p = &p};

        pods_init(&p);
        struct fake_pod *me = pods_add(&p, "me", false);
        struct fake_pod *other = pods_add(&p, "other", false);
        struct election_label_options opts = {.pod_name = "me",
                                              .label_key = KEY,
                                              .identity = "me_1",
                                              .retry_min_us = 10 * MS,
                                              .resync_us = 100 * MS};
        struct election_label_ops ops = pods_ops(&c);
        struct election_label *l = NULL;
        assert_int_equal(election_label_new(&opts, &ops, &l), 0);
        assert_int_equal(election_label_start(l), 0);
        election_label_on_started_leading(l, 1);
        WAIT_FOR(pod_labeled(&p, "me") && settled(l));

        /* Someone edits the pods behind our back; the periodic check repairs it. */
        pthread_mutex_lock(&p.lock);
        me->labeled = false;
        other->labeled = true;
        pthread_mutex_unlock(&p.lock);
        WAIT_FOR(pod_labeled(&p, "me") && !pod_labeled(&p, "other"));
        election_label_free(l);
}

/* ---- with electors ------------------------------------------------------------------------ */

struct node {
        char pod[32];
        char identity[64];
        struct fake_client lease_client;
        struct pods_client pods_client;
        struct elector *e;
        struct election_label *label;
        pthread_mutex_t lock; /* guards `label` against the callbacks */
};

static void node_started(void *userdata, uint64_t generation)
{
        struct node *n = userdata;
        pthread_mutex_lock(&n->lock);
        if (n->label)
                election_label_on_started_leading(n->label, generation);
        pthread_mutex_unlock(&n->lock);
}

static void node_stopped(void *userdata, uint64_t generation)
{
        struct node *n = userdata;
        pthread_mutex_lock(&n->lock);
        if (n->label)
                election_label_on_stopped_leading(n->label);
        pthread_mutex_unlock(&n->lock);
}

static void node_start(struct node *n, int i, struct fake_server *s, struct fake_pods *p)
{
        memset(n, 0, sizeof(*n));
        pthread_mutex_init(&n->lock, NULL);
        snprintf(n->pod, sizeof(n->pod), "persistd-%d", i);
        snprintf(n->identity, sizeof(n->identity), "persistd-%d_%d", i, 1000 + i);
        fake_client_init(&n->lease_client, s);
        n->pods_client.p = p;
        n->label = label_new(&n->pods_client, n->pod, n->identity);

        struct elector_options opts = {.identity = n->identity,
                                       .lease_duration_s = 1,
                                       .renew_deadline_us = 700 * MS,
                                       .retry_period_us = 200 * MS};
        struct election_lease_ops ops = fake_ops(&n->lease_client, true);
        struct elector_callbacks cb = {
            .on_started_leading = node_started,
            .on_stopped_leading = node_stopped,
            .userdata = n,
        };
        assert_int_equal(elector_new(&opts, &ops, &cb, &n->e), 0);
        assert_int_equal(election_label_start(n->label), 0);
        assert_int_equal(elector_start(n->e), 0);
}

/* Kill -9: nothing is cleaned up, neither the Lease nor the label. */
static void node_crash(struct node *n)
{
        pthread_mutex_lock(&n->lock);
        struct election_label *l = n->label;
        n->label = NULL;
        pthread_mutex_unlock(&n->lock);
        pthread_mutex_lock(&n->pods_client.p->lock);
        n->pods_client.dead = true;
        pthread_mutex_unlock(&n->pods_client.p->lock);
        FAKE_SET(&n->lease_client, partitioned, true);
        election_label_free(l);
        elector_free(n->e);
        n->e = NULL;
}

static void node_stop(struct node *n)
{
        elector_free(n->e);
        n->e = NULL;
        election_label_free(n->label);
        n->label = NULL;
        pthread_mutex_destroy(&n->lock);
}

static struct node *leader_of(struct node *ns, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (ns[i].e && elector_is_leader(ns[i].e))
                        return &ns[i];
        return NULL;
}

static bool only_labeled(struct fake_pods *p, const char *pod)
{
        return labeled_count(p) == 1 && pod_labeled(p, pod);
}

static void test_label_follows_the_leader(void **state)
{
        struct fake_server s;
        struct fake_pods p;
        struct node ns[3];

        fake_server_init(&s);
        pods_init(&p);
        for (int i = 0; i < 3; i++) {
                char pod[32];
                snprintf(pod, sizeof(pod), "persistd-%d", i);
                pods_add(&p, pod, true); /* every pod starts labeled: only one may keep it */
        }
        for (int i = 0; i < 3; i++)
                node_start(&ns[i], i, &s, &p);

        struct node *l;
        WAIT_FOR((l = leader_of(ns, 3)) != NULL && only_labeled(&p, l->pod));
        /* Its Event goes out after the label settles: crashing it before then loses the Event. */
        WAIT_FOR(events_of(&p, &p.elected) >= 1);

        /* The leader dies without cleaning up: its pod keeps the label until the next leader. */
        node_crash(l);
        assert_true(pod_labeled(&p, l->pod));
        struct node *m;
        WAIT_FOR((m = leader_of(ns, 3)) != NULL && m != l && only_labeled(&p, m->pod));
        WAIT_FOR(events_of(&p, &p.elected) >= 2);

        for (int i = 0; i < 3; i++)
                node_stop(&ns[i]);
        fake_server_destroy(&s);
}

int main(void)
{
        log_setup(getenv("ELECTION_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR,
                  LOG_FORMAT_TEXT, 2);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_validates),
            cmocka_unit_test(test_start_removes_own_label),
            cmocka_unit_test(test_leading_labels_self_and_clears_others),
            cmocka_unit_test(test_stepping_down_retries_removal),
            cmocka_unit_test(test_leading_again_while_removal_fails),
            cmocka_unit_test(test_other_pod_removal_and_list_retried),
            cmocka_unit_test(test_resync_restores_labels),
            cmocka_unit_test(test_label_follows_the_leader),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
