/*
 * audit_retention — the pruning transaction and the pruner thread
 * (audit_retention.h).
 */
/* _GNU_SOURCE comes from the build (pthread_condattr_setclock). */
#include "audit_retention.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define AR_US_PER_DAY (86400LL * 1000000LL)

int audit_prune(struct store *st, const struct audit_retention *policy, int64_t now_us,
		size_t batch)
{
	int64_t before = 0;
	int r, n;

	if (!st || !policy || policy->days > AUDIT_RETENTION_DAYS_MAX || batch == 0 ||
	    batch > AUDIT_PRUNE_BATCH_MAX || now_us <= 0)
		return -EINVAL;
	if (policy->days > 0) {
		before = now_us - (int64_t)policy->days * AR_US_PER_DAY;
		if (before <= 0)
			return 0; /* nothing can be that old */
	}
	if (before == 0 && policy->max_rows == 0)
		return 0;
	if ((r = store_begin_write(st)) != 0)
		return r;
	n = store_audit_prune(st, before, policy->max_rows, batch);
	if (n > 0 && (r = store_commit(st)) != 0)
		n = r;
	if (n <= 0)
		store_rollback(st);
	return n;
}

/* ---- the pruner thread ------------------------------------------------- */

struct audit_pruner {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	pthread_t thread;
	struct store *st;
	struct audit_pruner_opts o;
};

static int64_t ar_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Under p->mu: wait ms or until stopping; true when stopping. */
static bool ar_wait(struct audit_pruner *p, int ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!p->stopping && pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT)
		;
	return p->stopping;
}

static void *ar_main(void *arg)
{
	struct audit_pruner *p = arg;

	pthread_mutex_lock(&p->mu);
	while (!p->stopping) {
		uint64_t pruned = 0;
		int r;

		/* A pass: transactions of at most batch links, paced, until a
		 * short one says nothing more is due. */
		for (;;) {
			pthread_mutex_unlock(&p->mu);
			r = audit_prune(p->st, &p->o.policy, ar_now_us(), p->o.batch);
			pthread_mutex_lock(&p->mu);
			if (r > 0)
				pruned += (uint64_t)r;
			if (r < 0 || (size_t)r < p->o.batch || ar_wait(p, AUDIT_PRUNE_PACE_MS))
				break;
		}
		if (p->o.report && (r < 0 || pruned > 0)) {
			pthread_mutex_unlock(&p->mu);
			p->o.report(p->o.userdata, r < 0 ? r : 0, pruned,
				    r < 0 ? store_errmsg(p->st) : "");
			pthread_mutex_lock(&p->mu);
		}
		if (ar_wait(p, p->o.interval_ms))
			break;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int audit_pruner_start(const char *state_dir, const struct audit_pruner_opts *opts,
		       struct audit_pruner **ret_pruner, char *err, size_t err_size)
{
	struct audit_pruner *p;
	pthread_condattr_t ca;
	int r;

	if (!opts || !ret_pruner || opts->policy.days > AUDIT_RETENTION_DAYS_MAX ||
	    (opts->policy.days == 0 && opts->policy.max_rows == 0) || opts->interval_ms < 0 ||
	    opts->batch > AUDIT_PRUNE_BATCH_MAX) {
		snprintf(err, err_size, "audit retention options out of range");
		return -EINVAL;
	}
	if (!(p = calloc(1, sizeof(*p)))) {
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	p->o = *opts;
	if (p->o.interval_ms == 0)
		p->o.interval_ms = AUDIT_PRUNE_INTERVAL_MS_DEFAULT;
	if (p->o.batch == 0)
		p->o.batch = AUDIT_PRUNE_BATCH_DEFAULT;
	if ((r = store_open(state_dir, &p->st, err, err_size)) != 0) {
		free(p);
		return r;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((r = -pthread_create(&p->thread, NULL, ar_main, p)) != 0) {
		snprintf(err, err_size, "cannot start the audit pruner thread");
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		store_close(p->st);
		free(p);
		return r;
	}
	*ret_pruner = p;
	return 0;
}

void audit_pruner_stop(struct audit_pruner *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	store_close(p->st);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
