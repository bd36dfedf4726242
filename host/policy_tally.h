/*
 * policy_tally — the observed-host tally (M12) kept off the egress data
 * path: every allowed request is counted in memory and written to the
 * store in batches by the tally's own thread, instead of one SQLite write
 * transaction (and fsync) per request on the verdict worker.
 *
 * What it promises:
 *   - policy_tally_record() never touches the store: it merges the hit
 *     into a bounded in-memory table (count, first/last seen per sandbox,
 *     host, port) under a mutex and returns.  When the table is full it
 *     returns -ENOSPC and the caller writes the hit itself
 *     (policy_record_observed()): back-pressure, never a lost observation.
 *   - The tally thread writes what was collected at most flush_ms after the
 *     first hit of a batch (one write transaction per sandbox:
 *     policy_record_observed_batch()), earlier when the table fills up.
 *   - policy_tally_flush() returns only once every hit recorded before the
 *     call is committed (or could not be: then -errno, and the hits stay in
 *     memory for the next flush).  Flushes are serialized, so a flush that
 *     finds the table empty because the thread just took it waits for that
 *     write.  Every reader of the observed list (network status, pending,
 *     lockdown) calls it first, so what the reader sees includes every
 *     connection recorded before it.
 *   - policy_tally_close() stops the thread and flushes what is left: a
 *     clean shutdown loses nothing.  A SIGKILL loses the hits of the last
 *     flush_ms at most — observations only (first/last seen and counts of
 *     the observed list); never an audit row (audit.h writes those before
 *     the request is forwarded) and never a policy change.
 *   - A hit of a sandbox deleted before its flush is dropped (its rows go
 *     with the sandbox anyway); a full observed list in the store drops new
 *     hosts as policy.h says (logged once per flush).
 *
 * Threads: every function is thread-safe except close, which runs once,
 * after the last record/flush call.  The tally owns one policy handle
 * (used only under its flush lock) and one thread.
 *
 * Errors: 0 / negative errno; open writes a message into err.
 */
#ifndef MIOSA_POLICY_TALLY_H
#define MIOSA_POLICY_TALLY_H

#include <stddef.h>
#include <stdint.h>

#define POLICY_TALLY_FLUSH_MS_DEFAULT 200
#define POLICY_TALLY_SLOTS 512        /* (sandbox, host, port) keys held in memory */

struct policy_tally;

/* flush_ms 0 = POLICY_TALLY_FLUSH_MS_DEFAULT. */
__attribute__((warn_unused_result))
int policy_tally_open(const char *state_dir, unsigned flush_ms, struct policy_tally **ret_tally,
		      char *err, size_t err_size);
void policy_tally_close(struct policy_tally *t); /* NULL is a no-op */

/*
 * Count one allowed connection of sandbox_id to (host, port) at now_us.
 * 0 = counted in memory; -EINVAL = malformed sandbox id, host or port 0
 * (nothing counted); -ENOSPC = the table is full: write it yourself.
 */
__attribute__((warn_unused_result))
int policy_tally_record(struct policy_tally *t, const char *sandbox_id, const char *host,
			uint16_t port, int64_t now_us);

/* Commit everything recorded before this call.  Blocks on SQLite. */
__attribute__((warn_unused_result))
int policy_tally_flush(struct policy_tally *t);

#endif
