/*
 * policy_tally — observed hosts counted in memory, written in batches
 * (policy_tally.h).
 *
 * Two tables of POLICY_TALLY_SLOTS slots (open addressing, linear probing,
 * no deletion): `active` takes records under mu; a flush swaps it with the
 * empty `spare` under mu and writes the spare out under flush_mu, then
 * empties it.  Only a flush touches the spare, so holding flush_mu is what
 * makes "flush returns after every earlier record is committed" true even
 * when the thread's own flush is halfway through its write.
 */
#include "policy_tally.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "host_pattern.h"
#include "log.h"
#include "policy.h"

/* 3/4 full counts as full: probes stay short. */
#define PT_FILL_MAX (POLICY_TALLY_SLOTS / 4 * 3)

struct pt_slot {
	bool used;
	char sandbox_id[POLICY_ID_MAX + 1];
	struct policy_hit hit;
};

struct pt_table {
	struct pt_slot *slots; /* POLICY_TALLY_SLOTS */
	size_t n_used;
};

struct policy_tally {
	struct policy *policy;   /* under flush_mu */
	uint64_t flush_ns;
	uv_mutex_t mu;           /* active, stop, cond */
	uv_cond_t cond;
	struct pt_table active;
	bool stop;
	uv_mutex_t flush_mu;     /* spare, policy */
	struct pt_table spare;
	uv_thread_t thread;
};

static uint64_t pt_hash(const char *sandbox_id, const char *host, uint16_t port)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (const char *s = sandbox_id; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull; /* separator: no id byte is 0xff */
	for (const char *s = host; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	h = (h ^ (port & 0xff)) * 1099511628211ull;
	return (h ^ (port >> 8)) * 1099511628211ull;
}

/* Merge one hit into tab (caller holds the table's lock).  1 = a new slot,
 * 0 = merged into an existing one, -ENOSPC = full. */
static int pt_merge(struct pt_table *tab, const char *sandbox_id, const struct policy_hit *hit)
{
	size_t i = pt_hash(sandbox_id, hit->host, hit->port) % POLICY_TALLY_SLOTS;

	for (;; i = (i + 1) % POLICY_TALLY_SLOTS) {
		struct pt_slot *s = &tab->slots[i];

		if (!s->used)
			break;
		if (s->hit.port == hit->port && strcmp(s->hit.host, hit->host) == 0 &&
		    strcmp(s->sandbox_id, sandbox_id) == 0) {
			if (hit->first_seen_us < s->hit.first_seen_us)
				s->hit.first_seen_us = hit->first_seen_us;
			if (hit->last_seen_us > s->hit.last_seen_us)
				s->hit.last_seen_us = hit->last_seen_us;
			/* Saturates like the store's count. */
			s->hit.count = s->hit.count <= INT64_MAX - hit->count ? s->hit.count + hit->count
									 : INT64_MAX;
			return 0;
		}
	}
	/* The loop ends on a free slot: n_used < PT_FILL_MAX < SLOTS. */
	if (tab->n_used >= PT_FILL_MAX)
		return -ENOSPC;
	tab->slots[i].used = true;
	snprintf(tab->slots[i].sandbox_id, sizeof(tab->slots[i].sandbox_id), "%s", sandbox_id);
	tab->slots[i].hit = *hit;
	tab->n_used++;
	return 1;
}

int policy_tally_record(struct policy_tally *t, const char *sandbox_id, const char *host,
			uint16_t port, int64_t now_us)
{
	struct policy_hit hit = { .port = port, .first_seen_us = now_us, .last_seen_us = now_us,
				  .count = 1 };
	size_t id_len;
	int r;

	if (!sandbox_id || !host || port == 0 ||
	    (id_len = strnlen(sandbox_id, POLICY_ID_MAX + 1)) == 0 || id_len > POLICY_ID_MAX ||
	    host_pattern_normalize_host(host, strlen(host), hit.host, NULL, 0) < 0)
		return -EINVAL;
	uv_mutex_lock(&t->mu);
	r = pt_merge(&t->active, sandbox_id, &hit);
	/* Wake the thread for the first hit of a batch (it then collects for
	 * flush_ms: hits merged into a slot must not cut that short, or a busy
	 * host would cost a write per request again) and when full. */
	if ((r == 1 && t->active.n_used == 1) || r == -ENOSPC)
		uv_cond_signal(&t->cond);
	uv_mutex_unlock(&t->mu);
	return r < 0 ? r : 0;
}

static int pt_cmp_slot(const void *a, const void *b)
{
	return strcmp(((const struct pt_slot *)a)->sandbox_id,
		      ((const struct pt_slot *)b)->sandbox_id);
}

/* Put a run back into the active table after a transient failure. */
static size_t pt_requeue(struct policy_tally *t, const struct pt_slot *run, size_t n)
{
	size_t lost = 0;

	uv_mutex_lock(&t->mu);
	for (size_t i = 0; i < n; i++)
		if (pt_merge(&t->active, run[i].sandbox_id, &run[i].hit) < 0)
			lost++;
	if (n > lost)
		uv_cond_signal(&t->cond); /* a batch again: the thread retries it */
	uv_mutex_unlock(&t->mu);
	return lost;
}

static void pt_log(const char *event, const char *sandbox_id, int r, const char *reason)
{
	struct log_line l;

	if (!log_begin(&l, LOG_LEVEL_WARN, event))
		return;
	log_str(&l, "sandbox", sandbox_id);
	if (r < 0)
		log_errno(&l, r);
	log_str(&l, "reason", reason);
	log_end(&l);
}

/* Write one sandbox's run (under flush_mu).  0, or the error that made it
 * keep the run in memory. */
static int pt_write_run(struct policy_tally *t, struct pt_slot *run, size_t n,
			struct policy_hit *hits)
{
	int r;

	for (size_t i = 0; i < n; i++)
		hits[i] = run[i].hit;
	r = policy_record_observed_batch(t->policy, run[0].sandbox_id, hits, n);
	if (r > 0)
		pt_log("policy_observed_full", run[0].sandbox_id, 0, policy_errmsg(t->policy));
	if (r >= 0)
		return 0;
	if (r == -ENOENT || r == -EINVAL) {
		/* Sandbox gone (its rows went with it), or nothing a retry fixes. */
		pt_log("policy_tally_dropped", run[0].sandbox_id, r, policy_errmsg(t->policy));
		return 0;
	}
	pt_log("policy_tally_flush_failed", run[0].sandbox_id, r, policy_errmsg(t->policy));
	if (pt_requeue(t, run, n) > 0)
		pt_log("policy_tally_lost", run[0].sandbox_id, -ENOSPC,
		       "observations could not be kept for a retry, ignoring");
	return r;
}

static int pt_flush(struct policy_tally *t)
{
	struct policy_hit *hits = NULL;
	struct pt_slot *slots;
	size_t n = 0;
	int r = 0;

	uv_mutex_lock(&t->flush_mu);
	uv_mutex_lock(&t->mu);
	if (t->active.n_used > 0) {
		struct pt_table full = t->active;

		t->active = t->spare;
		t->spare = full;
	}
	uv_mutex_unlock(&t->mu);
	if (t->spare.n_used == 0)
		goto out;
	slots = t->spare.slots;
	/* Compact, then group by sandbox: one transaction per sandbox. */
	for (size_t i = 0; i < POLICY_TALLY_SLOTS; i++)
		if (slots[i].used)
			slots[n++] = slots[i];
	qsort(slots, n, sizeof(*slots), pt_cmp_slot);
	if (!(hits = calloc(n, sizeof(*hits)))) {
		r = -ENOMEM;
		if (pt_requeue(t, slots, n) > 0)
			pt_log("policy_tally_lost", "-", r,
			       "observations could not be kept for a retry, ignoring");
		goto out;
	}
	for (size_t i = 0, j; i < n; i = j) {
		int w;

		for (j = i + 1; j < n && strcmp(slots[j].sandbox_id, slots[i].sandbox_id) == 0; j++)
			;
		if ((w = pt_write_run(t, slots + i, j - i, hits)) < 0 && r == 0)
			r = w;
	}
out:
	if (t->spare.n_used > 0) {
		memset(t->spare.slots, 0, POLICY_TALLY_SLOTS * sizeof(*t->spare.slots));
		t->spare.n_used = 0;
	}
	free(hits);
	uv_mutex_unlock(&t->flush_mu);
	return r;
}

int policy_tally_flush(struct policy_tally *t)
{
	return pt_flush(t);
}

static void pt_thread(void *arg)
{
	struct policy_tally *t = arg;
	uint64_t deadline, now;

	uv_mutex_lock(&t->mu);
	for (;;) {
		while (!t->stop && t->active.n_used == 0)
			uv_cond_wait(&t->cond, &t->mu);
		if (t->stop)
			break;
		/* Collect for flush_ms; only a full table or stop cuts it short. */
		deadline = uv_hrtime() + t->flush_ns;
		while (!t->stop && t->active.n_used < PT_FILL_MAX && (now = uv_hrtime()) < deadline)
			(void)uv_cond_timedwait(&t->cond, &t->mu, deadline - now);
		uv_mutex_unlock(&t->mu);
		/* Failures are logged per sandbox and retried next time. */
		pt_flush(t);
		uv_mutex_lock(&t->mu);
	}
	uv_mutex_unlock(&t->mu);
}

static void pt_free(struct policy_tally *t)
{
	policy_close(t->policy);
	free(t->active.slots);
	free(t->spare.slots);
	free(t);
}

int policy_tally_open(const char *state_dir, unsigned flush_ms, struct policy_tally **ret_tally,
		      char *err, size_t err_size)
{
	struct policy_tally *t = calloc(1, sizeof(*t));
	int r;

	if (!t) {
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	t->flush_ns = (uint64_t)(flush_ms ? flush_ms : POLICY_TALLY_FLUSH_MS_DEFAULT) * 1000000u;
	t->active.slots = calloc(POLICY_TALLY_SLOTS, sizeof(*t->active.slots));
	t->spare.slots = calloc(POLICY_TALLY_SLOTS, sizeof(*t->spare.slots));
	if (!t->active.slots || !t->spare.slots) {
		snprintf(err, err_size, "out of memory");
		pt_free(t);
		return -ENOMEM;
	}
	if ((r = policy_open(state_dir, &t->policy, err, err_size)) < 0) {
		pt_free(t);
		return r;
	}
	if ((r = uv_mutex_init(&t->mu)) < 0)
		goto fail_mu;
	if ((r = uv_mutex_init(&t->flush_mu)) < 0)
		goto fail_flush_mu;
	if ((r = uv_cond_init(&t->cond)) < 0)
		goto fail_cond;
	if ((r = uv_thread_create(&t->thread, pt_thread, t)) < 0)
		goto fail_thread;
	*ret_tally = t;
	return 0;
fail_thread:
	uv_cond_destroy(&t->cond);
fail_cond:
	uv_mutex_destroy(&t->flush_mu);
fail_flush_mu:
	uv_mutex_destroy(&t->mu);
fail_mu:
	snprintf(err, err_size, "observed-host tally: %s", uv_strerror(r));
	pt_free(t);
	return r;
}

void policy_tally_close(struct policy_tally *t)
{
	int r;

	if (!t)
		return;
	uv_mutex_lock(&t->mu);
	t->stop = true;
	uv_cond_signal(&t->cond);
	uv_mutex_unlock(&t->mu);
	(void)uv_thread_join(&t->thread);
	/* Whatever came in since the thread's last flush. */
	if ((r = pt_flush(t)) < 0)
		pt_log("policy_tally_close_failed", "-", r,
		       "observations of the last moments not saved, ignoring");
	uv_cond_destroy(&t->cond);
	uv_mutex_destroy(&t->flush_mu);
	uv_mutex_destroy(&t->mu);
	pt_free(t);
}
