/*
 * audit_retention — pruning of the audit log by age and row count (issue 6).
 *
 * What goes: the oldest links of the hash chain only (rows and their
 * completions, a prefix of their one id sequence), so what remains still
 * forms one chain; the store keeps the anchor (id and hash of the newest
 * pruned link) and audit_verify() starts from it and reports how many
 * links were pruned (store.h, migration 7).  A row goes when it is older
 * than days (by its time_us) or when more than max_rows rows remain (rows
 * are requests: completions do not count); a completion when it is older
 * than days or its row went.  Pruning stops at the first link that is
 * neither, so a row with a later time_us than its successors (a clock step)
 * or the completion of a kept row holds back the age limit until the count
 * limit or its own age takes it; a completion of a pruned row that comes
 * after a kept row stays until its turn (queries never show it).  0 for
 * either limit means "no limit"; both 0 = keep forever (the default).
 *
 * Never stalls the writer: one transaction deletes at most batch links, and
 * the pruner thread waits AUDIT_PRUNE_PACE_MS between transactions, so the
 * audit writer (its own connection, BEGIN IMMEDIATE with a busy timeout)
 * waits at most one short delete before its next commit.
 *
 * Threads: audit_prune() on the caller's store handle (blocking; not the
 * event loop).  The pruner is one thread with its own store handle; its
 * report callback runs on that thread after each pass that pruned links or
 * failed, and must be quick.  Errors: count / negative errno.
 */
#ifndef MIOSA_AUDIT_RETENTION_H
#define MIOSA_AUDIT_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define AUDIT_PRUNE_BATCH_DEFAULT 1000    /* links per transaction */
#define AUDIT_PRUNE_BATCH_MAX 100000
#define AUDIT_PRUNE_INTERVAL_MS_DEFAULT 60000
#define AUDIT_PRUNE_PACE_MS 10            /* between two transactions of a pass */
#define AUDIT_RETENTION_DAYS_MAX 36500u

struct audit_retention {
	unsigned days;        /* keep rows younger than this; 0 = no age limit */
	uint64_t max_rows;    /* keep at most this many rows; 0 = no count limit */
};

/*
 * One transaction: delete at most batch of the oldest links that policy no
 * longer keeps at now_us, move the anchor.  Returns the count deleted (0 =
 * nothing to prune).  The store's message says why on failure.
 */
__attribute__((warn_unused_result))
int audit_prune(struct store *st, const struct audit_retention *policy, int64_t now_us,
		size_t batch);

struct audit_pruner;

/* After a pass (transactions until nothing was left to prune, or a failure):
 * status 0 and the links it pruned (rows and completions), or the negative
 * errno and the store's message (never a row's content). */
typedef void (*audit_pruner_report_fn)(void *userdata, int status, uint64_t pruned,
				       const char *errmsg);

struct audit_pruner_opts {
	struct audit_retention policy;
	int interval_ms;      /* between passes; 0 = AUDIT_PRUNE_INTERVAL_MS_DEFAULT */
	size_t batch;         /* links per transaction; 0 = AUDIT_PRUNE_BATCH_DEFAULT */
	audit_pruner_report_fn report;  /* may be NULL */
	void *userdata;
};

/* Opens its own store handle on state_dir and starts the pruner thread,
 * whose first pass runs at once.  -EINVAL for a policy that keeps
 * everything (start nothing then) or options out of range. */
__attribute__((warn_unused_result))
int audit_pruner_start(const char *state_dir, const struct audit_pruner_opts *opts,
		       struct audit_pruner **ret_pruner, char *err, size_t err_size);
/* Ends the pass in progress after its current transaction, joins, frees.
 * NULL is a no-op.  Not from the report callback. */
void audit_pruner_stop(struct audit_pruner *p);

#endif
