/* SPDX-License-Identifier: Apache-2.0 */
/* The fleet sampler: INFO persistence of every instance and /proc/<pid>/io of its processes. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "core/clock.h"
#include "fleet-sampler.h"

#define MAX_SAMPLES (10 * 60 * 1000) /* ten minutes at 1 ms */

struct inst {
        int port;
        redisContext *c;
        pid_t pid, child;
        bool saving;
        int64_t start_us;
        int64_t child_exit_us; /* when the save child of the current save was seen gone */
        bool child_done;
        uint64_t bytes; /* monotonic */
};

struct fleet_sampler {
        struct inst *inst;
        size_t n;
        int interval_ms;
        pthread_t thread;
        bool running;
        atomic_bool stop;
        struct fleet_sample *samples;
        size_t n_samples;
        struct fleet_save *saves;
        size_t n_saves, alloc_saves;
        char device_stat[128]; /* "" when not sampled */
        uint64_t device_bytes;
};

static long info_field(const char *info, const char *name)
{
        char key[64];
        snprintf(key, sizeof(key), "\n%s:", name);
        const char *p = strstr(info, key);
        return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static uint64_t write_bytes_of(pid_t pid, bool *ok)
{
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
        FILE *f = fopen(path, "re");
        *ok = false;
        if (!f)
                return 0;
        size_t k = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[k] = 0;
        const char *p = strstr(buf, "\nwrite_bytes: ");
        if (!p)
                return 0;
        *ok = true;
        return strtoull(p + strlen("\nwrite_bytes: "), NULL, 10);
}

static pid_t parent_of(pid_t pid)
{
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        size_t k = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[k] = 0;
        const char *p = strrchr(buf, ')'); /* the name may hold spaces */
        char state;
        int ppid;
        if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2 || state == 'Z')
                return -1;
        return ppid;
}

static pid_t find_child(pid_t parent)
{
        DIR *d = opendir("/proc");
        struct dirent *e;
        pid_t found = 0;
        if (!d)
                return 0;
        while (!found && (e = readdir(d))) {
                char *end;
                long pid = strtol(e->d_name, &end, 10);
                if (*end || pid <= 0)
                        continue;
                if (parent_of((pid_t)pid) == parent)
                        found = (pid_t)pid;
        }
        closedir(d);
        return found;
}

/* Sectors (512 bytes, whatever the device's block size) written, the 7th field. */
static bool device_written(const char *path, uint64_t *ret)
{
        FILE *f = fopen(path, "re");
        unsigned long long v[7];
        if (!f)
                return false;
        int k = fscanf(f, "%llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                       &v[5], &v[6]);
        fclose(f);
        if (k != 7)
                return false;
        *ret = v[6] * 512;
        return true;
}

struct fleet_sampler *fleet_sampler_new(const int *ports, size_t n, int interval_ms,
                                        const char *dir)
{
        struct fleet_sampler *s = calloc(1, sizeof(*s));
        if (!s || !(s->inst = calloc(n, sizeof(*s->inst))) ||
            !(s->samples = calloc(MAX_SAMPLES, sizeof(*s->samples)))) {
                fleet_sampler_free(s);
                return NULL;
        }
        s->n = n;
        s->interval_ms = interval_ms;
        struct stat st;
        uint64_t b;
        if (dir && stat(dir, &st) == 0) {
                snprintf(s->device_stat, sizeof(s->device_stat), "/sys/dev/block/%u:%u/stat",
                         major(st.st_dev), minor(st.st_dev));
                if (!device_written(s->device_stat, &b))
                        s->device_stat[0] = '\0'; /* e.g. an overlay or tmpfs: no device */
        }
        for (size_t i = 0; i < n; i++) {
                struct inst *in = &s->inst[i];
                struct timeval tv = {.tv_sec = 5};
                in->port = ports[i];
                in->c = redisConnectWithTimeout("127.0.0.1", ports[i], tv);
                if (!in->c || in->c->err) {
                        fprintf(stderr, "sampler: connect to port %d: %s\n", ports[i],
                                in->c ? in->c->errstr : "out of memory");
                        fleet_sampler_free(s);
                        return NULL;
                }
                redisSetTimeout(in->c, tv);
                redisReply *r = redisCommand(in->c, "INFO server");
                if (!r || r->type != REDIS_REPLY_STRING) {
                        fprintf(stderr, "sampler: INFO on port %d failed\n", ports[i]);
                        if (r)
                                freeReplyObject(r);
                        fleet_sampler_free(s);
                        return NULL;
                }
                in->pid = (pid_t)info_field(r->str, "process_id");
                freeReplyObject(r);
        }
        return s;
}

void fleet_sampler_free(struct fleet_sampler *s)
{
        if (!s)
                return;
        fleet_sampler_stop(s);
        for (size_t i = 0; s->inst && i < s->n; i++)
                if (s->inst[i].c)
                        redisFree(s->inst[i].c);
        free(s->inst);
        free(s->samples);
        free(s->saves);
        free(s);
}

bool fleet_sampler_has_device(const struct fleet_sampler *s)
{
        return s->device_stat[0] != '\0';
}

static void add_save(struct fleet_sampler *s, int inst, int64_t start, int64_t end,
                     int64_t child_exit)
{
        if (s->n_saves == s->alloc_saves) {
                size_t alloc = s->alloc_saves ? 2 * s->alloc_saves : 64;
                struct fleet_save *p = realloc(s->saves, alloc * sizeof(*p));
                if (!p)
                        return;
                s->saves = p;
                s->alloc_saves = alloc;
        }
        s->saves[s->n_saves++] = (struct fleet_save){
            .inst = inst, .start_us = start, .end_us = end, .child_exit_us = child_exit};
}

/* One round of INFO persistence over every instance: the saving flags. -1 on a lost server. */
static int poll_saving(struct fleet_sampler *s, bool *saving)
{
        for (size_t i = 0; i < s->n; i++)
                redisAppendCommand(s->inst[i].c, "INFO persistence");
        int k = 0;
        for (size_t i = 0; i < s->n; i++) {
                redisReply *r = NULL;
                if (redisGetReply(s->inst[i].c, (void **)&r) != REDIS_OK || !r ||
                    r->type != REDIS_REPLY_STRING) {
                        if (r)
                                freeReplyObject(r);
                        return -1;
                }
                saving[i] = info_field(r->str, "rdb_bgsave_in_progress") == 1;
                k += saving[i];
                freeReplyObject(r);
        }
        return k;
}

static void *run(void *arg)
{
        struct fleet_sampler *s = arg;
        bool *now = calloc(s->n, sizeof(*now));
        if (!now)
                return NULL;
        int64_t next = clock_mono_us();
        while (!atomic_load(&s->stop) && s->n_samples < MAX_SAMPLES) {
                int64_t t = clock_mono_us();
                int k = poll_saving(s, now);
                if (k < 0) {
                        fprintf(stderr, "sampler: an instance stopped answering\n");
                        break;
                }
                uint64_t total = 0;
                for (size_t i = 0; i < s->n; i++) {
                        struct inst *in = &s->inst[i];
                        bool ok, cok = false;
                        uint64_t b = write_bytes_of(in->pid, &ok);
                        if (now[i] && !in->saving) {
                                in->start_us = t;
                                in->child_exit_us = 0;
                                in->child_done = false;
                        }
                        if (in->child > 0 && parent_of(in->child) != in->pid) {
                                /* Exited (a zombie until Redis reaps it) or reaped. */
                                if (!in->child_done && (now[i] || in->saving))
                                        in->child_exit_us = t;
                                in->child_done = true;
                                in->child = 0;
                        }
                        if (now[i] && in->child == 0 && !in->child_done)
                                in->child = find_child(in->pid);
                        if (in->child > 0) {
                                uint64_t cb = write_bytes_of(in->child, &cok);
                                if (cok)
                                        b += cb;
                        }
                        if (ok && b > in->bytes)
                                in->bytes = b; /* a reap between the two reads dips: clamp */
                        total += in->bytes;
                        if (!now[i] && in->saving)
                                add_save(s, (int)i, in->start_us, t,
                                         in->child_exit_us ? in->child_exit_us : t);
                        in->saving = now[i];
                }
                uint64_t dev;
                if (s->device_stat[0] && device_written(s->device_stat, &dev) &&
                    dev > s->device_bytes)
                        s->device_bytes = dev;
                s->samples[s->n_samples++] = (struct fleet_sample){
                    .t_us = t, .saving = k, .bytes = total, .device_bytes = s->device_bytes};
                next += s->interval_ms * USEC_PER_MSEC;
                int64_t wait = next - clock_mono_us();
                if (wait > 0)
                        clock_sleep_us(wait);
                else
                        next = clock_mono_us();
        }
        free(now);
        return NULL;
}

int fleet_sampler_start(struct fleet_sampler *s)
{
        if (s->running)
                return -EALREADY;
        s->n_samples = 0;
        s->n_saves = 0;
        atomic_store(&s->stop, false);
        for (size_t i = 0; i < s->n; i++) {
                s->inst[i].saving = false;
                s->inst[i].child = 0;
                s->inst[i].child_done = false;
                s->inst[i].bytes = 0;
        }
        int r = pthread_create(&s->thread, NULL, run, s);
        if (r)
                return -r;
        s->running = true;
        return 0;
}

void fleet_sampler_stop(struct fleet_sampler *s)
{
        if (!s->running)
                return;
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
        s->running = false;
}

const struct fleet_sample *fleet_sampler_samples(struct fleet_sampler *s, size_t *ret_n)
{
        *ret_n = s->n_samples;
        return s->samples;
}

const struct fleet_save *fleet_sampler_saves(struct fleet_sampler *s, size_t *ret_n)
{
        *ret_n = s->n_saves;
        return s->saves;
}

int fleet_sampler_saving_now(struct fleet_sampler *s)
{
        bool *now = calloc(s->n, sizeof(*now));
        if (!now)
                return -ENOMEM;
        int k = poll_saving(s, now);
        free(now);
        return k < 0 ? -EIO : k;
}

int fleet_peak_saving(const struct fleet_sample *v, size_t n)
{
        int peak = 0;
        for (size_t i = 0; i < n; i++)
                if (v[i].saving > peak)
                        peak = v[i].saving;
        return peak;
}

static double peak_rate(const struct fleet_sample *v, size_t n, int64_t window_us, bool device)
{
        double peak = 0;
        size_t j = 0;
        for (size_t i = 1; i < n; i++) {
                while (j + 1 < i && v[i].t_us - v[j + 1].t_us >= window_us)
                        j++;
                int64_t dt = v[i].t_us - v[j].t_us;
                if (dt < window_us / 2)
                        continue; /* not a full window yet */
                uint64_t d =
                    device ? v[i].device_bytes - v[j].device_bytes : v[i].bytes - v[j].bytes;
                double rate = (double)d * 1e6 / (double)dt;
                if (rate > peak)
                        peak = rate;
        }
        return peak;
}

double fleet_peak_rate(const struct fleet_sample *v, size_t n, int64_t window_us)
{
        return peak_rate(v, n, window_us, false);
}

double fleet_peak_device_rate(const struct fleet_sample *v, size_t n, int64_t window_us)
{
        return peak_rate(v, n, window_us, true);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

double fleet_quantile(double *v, size_t n, double q)
{
        if (n == 0)
                return 0;
        qsort(v, n, sizeof(*v), cmp_double);
        size_t rank = (size_t)(q * (double)n + 0.999999);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return v[rank - 1];
}
