/*
 * audit — the egress audit log: one row per outbound request (HTTP), per
 * connection (other TCP) and per denial (M16, M17, B5).
 *
 * Never a secret value.  A row carries names only: the secrets swapped into
 * the request and the ones the exfiltration guard flagged are secret *names*
 * (request_transforms.secrets.swapped / flagged); there is no field for a
 * value.  The path keeps its query, but audit_submit() runs it through
 * audit_redact_path() first: a parameter whose value holds a placeholder
 * (`miosa-tok-…`) or whose name looks like a credential has its value
 * replaced by REDACTED, and a path segment holding a placeholder is
 * replaced whole.  Callers pass the guest's request line (placeholders, not
 * swapped values) and must never put a value in reason.
 *
 * Writer (fail closed, B5): audit_submit() may be called from any thread and
 * never blocks on SQLite: it validates, redacts, copies the row into a
 * bounded queue and returns.  One writer thread owns its own store handle;
 * it takes up to batch_max rows (waiting at most batch_ms after the first
 * one for the batch to fill), and commits them in one transaction (WAL,
 * synchronous=FULL).  Inside that transaction it reads the newest row, gives
 * each new row id = last id + 1 and prev_hash = the last row_hash, and
 * computes row_hash, so chain order is commit order.  Only after COMMIT
 * returns does it call each row's ack with 0 and the row id: a row that was
 * acknowledged survives SIGKILL and power loss.  If the transaction fails,
 * every row of the batch is acknowledged with the negative errno and
 * nothing of it is stored.  The data path forwards a request only after a
 * 0 ack; -EAGAIN from audit_submit() (queue full), any other submit error
 * and any failed ack mean "answer 503 with MIOSA-Audit: unavailable" (B10).
 *
 * Completions (fail closed stays first): the data path writes a request's
 * row and waits for its ack BEFORE forwarding it, so the row cannot hold
 * what happened next.  Once the exchange is over (response relayed,
 * upstream failed, guest gone, connection closed) it submits a completion
 * (status, bytes up/down, duration, referencing the row id) with
 * audit_complete(), which never waits: the completion is committed by the
 * writer like a row, as the next link of the same chain, and acknowledged
 * asynchronously.  A completion lost in a crash leaves its row with the
 * status it was written with (0 for an allowed HTTP request: unknown),
 * which is the honest state.  Reads (audit_query(), audit_export(), the
 * tail) present one merged row per request: the completion's status,
 * bytes and duration in place of the row's, completion_id set.
 *
 * Hash chain: row_hash = BLAKE2b-256(canonical(row) || prev_hash), see
 * audit_row_hash(), and for a completion audit_completion_hash() (its own
 * domain string, so a row can never pass for a completion); rows and
 * completions share one id sequence and the chain runs through both in id
 * order.  The first link's prev_hash is 32 zero bytes.  It detects
 * an edited, inserted, reordered or deleted row (audit_verify()), except a
 * deletion of the newest rows: keep the head (audit_verify()'s ret_head)
 * elsewhere to detect truncation.  The hash is not keyed: someone who can
 * rewrite state.db can rewrite the whole chain, which an exported head
 * exposes.
 *
 * Tail: subscribers get copies of committed merged rows matching their
 * filter, pushed by the writer after each commit into a per-subscriber
 * bounded queue.  A row submitted with AUDIT_SUBMIT_AWAIT_COMPLETION is
 * held back (at most AUDIT_TAIL_HOLD_MS, at most AUDIT_TAIL_HOLD_MAX rows)
 * until its completion commits, then published once, merged; if the
 * completion does not come in time it is published without it (a late
 * completion is then stored but not published again).  The filter applies
 * to the merged row, so a status filter sees the response status.  The writer never waits for a subscriber: one whose queue is full
 * is dropped; it still reads the rows queued before, then the marker
 * AUDIT_TAIL_DROPPED, then -EPIPE.
 *
 * Threads: the writer's ack callbacks run on the writer thread, after the
 * commit; they must be quick and must not call audit_writer_close().
 * Everything else here is thread-safe except where noted.
 *
 * Errors: 0 (or a count) / negative errno.
 */
#ifndef MIOSA_AUDIT_H
#define MIOSA_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define AUDIT_REDACTED "REDACTED"
#define AUDIT_QUEUE_DEFAULT 4096
#define AUDIT_QUEUE_MAX 65536
#define AUDIT_BATCH_DEFAULT 256
#define AUDIT_BATCH_MS_DEFAULT 2
#define AUDIT_SUBSCRIBERS_MAX 64
#define AUDIT_TAIL_QUEUE_DEFAULT 1024
#define AUDIT_PAGE_ROWS 512          /* export page size */
#define AUDIT_TAIL_HOLD_MS 3000      /* tail: wait this long for a completion */
#define AUDIT_TAIL_HOLD_MAX 4096     /* tail: rows waiting for their completion */

/* audit_submit_flags(): a completion (audit_complete()) will follow. */
#define AUDIT_SUBMIT_AWAIT_COMPLETION 1u

/* ---- rows -------------------------------------------------------------- */

/*
 * Check a row before it is queued: required strings set, every string within
 * its limit and free of control bytes, enums and numbers in range, names in
 * the lists non-empty and without ',' (the stored list separator).  id and
 * hashes are ignored (the writer sets them).  -EINVAL with no detail on
 * purpose: a row's content may not be quoted back.
 */
__attribute__((warn_unused_result))
int audit_row_validate(const struct store_audit_row *row);

/*
 * Copy path to out (NUL-terminated) with credential query values and
 * placeholder-bearing parameters and segments replaced by REDACTED.
 * Parameter names are compared case-insensitively after percent-decoding;
 * credential-like names: key, api_key, apikey, token, access_token, secret,
 * password, auth, signature, sig, code, and any name ending in key, token,
 * secret, password or signature, or with a '_', '-' or '.' separated
 * component auth, sig or code.  Redaction comes first, so an over-long
 * result is cut at out_size - 1 bytes without ever exposing a value.
 * Returns the length written.
 */
__attribute__((warn_unused_result))
int audit_redact_path(const char *path, char *out, size_t out_size);

/* Check a completion before it is queued: request_id >= 1, time_us > 0,
 * status <= 999, sizes and duration >= 0.  -EINVAL. */
__attribute__((warn_unused_result))
int audit_completion_validate(const struct store_audit_completion *c);

/* row_hash of row (its id, fields and prev_hash; not completion_id). */
void audit_row_hash(const struct store_audit_row *row, uint8_t out[STORE_AUDIT_HASH_BYTES]);
/* row_hash of a completion (id, request_id, fields and prev_hash). */
void audit_completion_hash(const struct store_audit_completion *c,
			   uint8_t out[STORE_AUDIT_HASH_BYTES]);
/* Put c's status, bytes and duration into row, completion_id = c->id. */
void audit_row_merge(struct store_audit_row *row, const struct store_audit_completion *c);

/* Does row match f (same semantics as store_audit_query, cursor ignored)? */
bool audit_filter_match(const struct store_audit_filter *f, const struct store_audit_row *row);
/* A filter that matches everything (status/action = -1). */
void audit_filter_init(struct store_audit_filter *f);

/*
 * Parse a filter time: a duration back from now_us ("30s", "5m", "24h",
 * "7d") or RFC 3339 ("2024-05-01T12:00:00Z", fraction and ±hh:mm offset
 * allowed).  -EINVAL on anything else or out of range.
 */
__attribute__((warn_unused_result))
int audit_parse_time(const char *text, int64_t now_us, int64_t *ret_us);

/* ---- writer ------------------------------------------------------------ */

struct audit_writer;

struct audit_writer_opts {
	size_t queue_max;   /* rows waiting; 0 = AUDIT_QUEUE_DEFAULT */
	size_t batch_max;   /* rows per transaction; 0 = AUDIT_BATCH_DEFAULT */
	int batch_ms;       /* wait for a batch to fill; <0 = AUDIT_BATCH_MS_DEFAULT */
};

struct audit_writer_stats {
	uint64_t rows;      /* committed */
	uint64_t batches;   /* committed transactions */
	uint64_t failed;    /* rows acknowledged with an error */
	uint64_t rejected;  /* submits refused with -EAGAIN */
};

/* status: 0 = committed as row id; negative errno = not stored. */
typedef void (*audit_ack_fn)(void *userdata, int status, int64_t id);

/* Opens its own store handle on state_dir and starts the writer thread.
 * opts may be NULL.  err receives the reason on failure. */
__attribute__((warn_unused_result))
int audit_writer_open(const char *state_dir, const struct audit_writer_opts *opts,
		      struct audit_writer **ret_writer, char *err, size_t err_size);
/* Commits what is queued, acknowledges it, ends the tail subscriptions
 * (AUDIT_TAIL_DROPPED is not sent; readers see -EPIPE after the last row)
 * and frees.  NULL is a no-op.  Not from an ack callback. */
void audit_writer_close(struct audit_writer *w);

/*
 * Queue a copy of row; ack (may be NULL) is called once, from the writer
 * thread, after the row's transaction.  -EINVAL: invalid row; -EAGAIN: queue
 * full (answer 503); -ESHUTDOWN: the writer is closing; -ENOMEM.  On error
 * ack is never called.
 */
__attribute__((warn_unused_result))
int audit_submit(struct audit_writer *w, const struct store_audit_row *row,
		 audit_ack_fn ack, void *userdata);
/* audit_submit() with flags (AUDIT_SUBMIT_AWAIT_COMPLETION or 0). */
__attribute__((warn_unused_result))
int audit_submit_flags(struct audit_writer *w, const struct store_audit_row *row,
		       unsigned flags, audit_ack_fn ack, void *userdata);
/* audit_submit() and wait for the ack: 0 and the id once committed. */
__attribute__((warn_unused_result))
int audit_submit_wait(struct audit_writer *w, const struct store_audit_row *row,
		      int64_t *ret_id);
__attribute__((warn_unused_result))
int audit_submit_wait_flags(struct audit_writer *w, const struct store_audit_row *row,
			    unsigned flags, int64_t *ret_id);
/*
 * Queue a copy of completion c (its id and hashes are ignored) and return
 * at once; ack (may be NULL) is called from the writer thread once it is
 * committed (0, its id) or failed.  Errors as audit_submit().  The caller
 * submits at most one completion per row it wrote and acknowledged.
 */
__attribute__((warn_unused_result))
int audit_complete(struct audit_writer *w, const struct store_audit_completion *c,
		   audit_ack_fn ack, void *userdata);
void audit_writer_stats(struct audit_writer *w, struct audit_writer_stats *ret_stats);

/* ---- tail -------------------------------------------------------------- */

struct audit_tail;

#define AUDIT_TAIL_DROPPED 1

/*
 * Subscribe to committed rows matching filter (copied; its strings too).
 * queue_max: rows buffered for this subscriber (0 = default).  -EMFILE past
 * AUDIT_SUBSCRIBERS_MAX.  One thread reads a subscription at a time.
 */
__attribute__((warn_unused_result))
int audit_tail_subscribe(struct audit_writer *w, const struct store_audit_filter *filter,
			 size_t queue_max, struct audit_tail **ret_tail);
/*
 * Next row, waiting up to timeout_ms (0 = poll, <0 = forever): 0 and the
 * row; AUDIT_TAIL_DROPPED once when the subscriber fell behind and was
 * dropped; then -EPIPE (also after the writer closed); -ETIMEDOUT.
 */
__attribute__((warn_unused_result))
int audit_tail_next(struct audit_tail *t, int timeout_ms, struct store_audit_row *ret_row);
/* Readable (eventfd) whenever audit_tail_next() may have something, for an
 * event loop.  Owned by the subscription. */
int audit_tail_fd(const struct audit_tail *t);
void audit_tail_close(struct audit_tail *t); /* NULL is a no-op */

/* ---- query, export, verify (caller's store handle, blocking) ------------ */

/* One page, newest first; *ret_next_cursor = before_id for the next page, or
 * 0 when this page was the last.  Free *ret_rows with free(). */
__attribute__((warn_unused_result))
int audit_query(struct store *st, const struct store_audit_filter *f, size_t limit,
		struct store_audit_row **ret_rows, size_t *ret_n, int64_t *ret_next_cursor);

enum audit_format { AUDIT_JSONL, AUDIT_CSV };

/* Receives export output in pieces; a negative return aborts the export
 * with that value. */
typedef int (*audit_write_fn)(void *userdata, const char *buf, size_t len);

/*
 * Stream every matching row, newest first, in pages of AUDIT_PAGE_ROWS.
 * JSONL: one compact object per line, keys in the order of audit_row_json().
 * CSV (RFC 4180): a header line, CRLF line ends, a field quoted when it
 * holds ',', '"', CR or LF, quotes doubled; lists joined by ';'.  Formula
 * injection: a text field starting with '=', '+', '-', '@', TAB or CR is
 * prefixed with '\'' so spreadsheets show it as text.  Returns the row count.
 */
__attribute__((warn_unused_result))
int audit_export(struct store *st, const struct store_audit_filter *f, enum audit_format fmt,
		 audit_write_fn write, void *userdata);
/* One row as the JSONL object (no newline); free() the result. */
char *audit_row_json(const struct store_audit_row *row);

/*
 * Walk the chain from the first link, rows and completions in id order: 0
 * when every link points to the one before (prev_hash, and id = the
 * previous link's id + 1, whichever table either is in) and its hash
 * recomputes (and a completion's request_id is an earlier id); -EBADMSG
 * with *ret_bad_id = the first link that does not (a row's or a
 * completion's id).  After pruning (audit_retention.h) the walk starts from
 * the anchor: the first remaining link must link to it, so a changed anchor
 * or a deleted oldest link is reported as that first link.  A kept
 * completion whose request row was pruned is a valid link (its hash covers
 * request_id).  The anchor itself is not protected: whoever can rewrite
 * state.db can set it to match; compare the pruned count with what
 * retention should have removed.  ret_checked / ret_head (newest link's
 * hash; the anchor's after pruning everything; zeros for an empty log) may
 * be NULL.
 */
__attribute__((warn_unused_result))
int audit_verify(struct store *st, int64_t *ret_bad_id, uint64_t *ret_checked,
		 uint8_t ret_head[STORE_AUDIT_HASH_BYTES]);

struct audit_verify_result {
	uint64_t checked;      /* links walked, rows and completions (with the bad one) */
	uint64_t pruned;       /* links pruned before the walk's start (anchor id) */
	int64_t bad_id;        /* first link that does not link; 0 when intact */
	uint8_t head[STORE_AUDIT_HASH_BYTES];
};
/* audit_verify() with the pruned count: 0 (intact) or -EBADMSG both fill
 * *ret; any other error leaves it alone. */
__attribute__((warn_unused_result))
int audit_verify_chain(struct store *st, struct audit_verify_result *ret);

#endif
