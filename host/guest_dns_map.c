/*
 * guest_dns_map — the sandbox's synthetic DNS map across broker restarts.
 *
 * The map (dns_synth) is loop-owned; its rows live in the store (migration
 * 8).  Two rules make a restart invisible to the guest:
 *   - load before use: the first dns or egress stream of a sandbox after a
 *     broker start waits while a worker reads the rows and builds the map
 *     (dns_synth_import validates every row), so a cached address or an
 *     open connection maps to the name it was answered for, and new names
 *     are allocated after every stored address;
 *   - store before answering: an answer that made a new mapping is sent
 *     only after a worker committed the row.  If that write fails the guest
 *     gets SERVFAIL and the map is dropped and reloaded from the store: the
 *     memory never holds a mapping the store lacks (fail closed, and
 *     dns_synth needs no "forget").  The address handed out by nobody may
 *     then go to another name, which is harmless: no guest saw it.
 * While a load or a write is in flight (dns_busy) every dns and egress
 * stream of the sandbox waits in FIFO order, so no second query can see the
 * uncommitted mapping and no egress stream a half-loaded map.  One write in
 * flight per sandbox: a new name costs one commit, serialized.  Waiting
 * streams are bounded by GUEST_GATEWAY_CONNS_PER_SANDBOX; each holds a
 * reference on its connection, so a stream closed meanwhile is skipped.
 *
 * Loop thread only, except the *_work functions (workers: store only).
 */
#include "guest_gateway_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns_synth.h"
#include "dns_wire.h"
#include "log.h"
#include "store.h"

/* One stream waiting for the map: its query, or its egress open. */
struct gw_dns_wait {
	struct gw_dns_wait *next;
	struct gw_conn *c;
	bool egress;
	uint32_t port;
	uint8_t addr[16];
	size_t addr_len;
	size_t len;        /* query, or guest bytes read after GuestOpen */
	uint8_t data[];
};

struct gw_dns_job {
	uv_work_t work;
	struct gw_conn *c;                 /* a reference */
	char sandbox_id[TENANCY_OBJECT_ID_LEN + 1];
	int r;
	char err[160];
	/* load: out */
	struct dns_synth *map;
	/* write: in */
	uint32_t addr;
	char name[HOST_PATTERN_BUF];
	uint8_t *query;
	size_t query_len;
	size_t answer_len;
	uint8_t answer[DNS_WIRE_ANSWER_MAX];
};

static void gw_dns_pump(struct gw_sandbox *sb);

/* ---- load ---------------------------------------------------------------- */

/* Rows in dns_synth_export() form, for dns_synth_import() to validate. */
static int gw_dns_rows_text(const struct store_dns_mapping *rows, size_t n, char **ret_text,
			    size_t *ret_len)
{
	char *text;
	size_t off = 0, cap = n * (16 + HOST_PATTERN_BUF + 1) + 1;

	if (!(text = malloc(cap)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint32_t a = rows[i].addr;
		int k = snprintf(text + off, cap - off, "%u.%u.%u.%u %s\n", a >> 24,
				 (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff, rows[i].name);

		if (k < 0 || (size_t)k >= cap - off) {
			free(text);
			return -EINVAL;
		}
		off += (size_t)k;
	}
	text[off] = '\0';
	*ret_text = text;
	*ret_len = off;
	return 0;
}

static void gw_dns_load_work(uv_work_t *w)
{
	struct gw_dns_job *job = w->data;
	struct store_dns_mapping *rows = NULL;
	struct gw_worker_ctx *ctx;
	struct dns_synth *map = NULL;
	char *text = NULL;
	size_t n = 0, len = 0;
	int r;

	if ((r = gw_worker_ctx_get(job->c->gw, &ctx)) < 0) {
		snprintf(job->err, sizeof(job->err), "cannot open the store");
		goto out;
	}
	if ((r = store_begin_read(ctx->st)) < 0) {
		snprintf(job->err, sizeof(job->err), "%s", store_errmsg(ctx->st));
		goto out;
	}
	r = store_dns_map_list(ctx->st, job->sandbox_id, DNS_SYNTH_DEFAULT_MAX_NAMES, &rows, &n);
	if (r < 0)
		snprintf(job->err, sizeof(job->err), "%s", store_errmsg(ctx->st));
	store_rollback(ctx->st);
	if (r < 0)
		goto out;
	if ((r = gw_dns_rows_text(rows, n, &text, &len)) < 0 ||
	    (r = dns_synth_new(NULL, &map)) < 0) {
		snprintf(job->err, sizeof(job->err), "out of memory");
		goto out;
	}
	if ((r = dns_synth_import(map, text, len, job->err, sizeof(job->err))) < 0)
		goto out;
	job->map = map;
	map = NULL;
	r = 0;
out:
	dns_synth_free(map);
	free(text);
	free(rows);
	job->r = r;
}

/* Every waiting stream fails: dns streams are closed (the stub answers
 * SERVFAIL), egress streams refused. */
static void gw_dns_fail_waiting(struct gw_sandbox *sb)
{
	struct gw_dns_wait *w;

	while ((w = sb->dns_wait_head)) {
		struct gw_conn *c = w->c;

		if (!(sb->dns_wait_head = w->next))
			sb->dns_wait_tail = &sb->dns_wait_head;
		if (!c->closing) {
			if (w->egress)
				gw_send_open_result(c, false, "internal-error");
			else
				gw_conn_close(c, "the sandbox's DNS map cannot be loaded");
		}
		free(w);
		gw_conn_unref(c); /* sb stays alive: the load job's connection holds it */
	}
}

static void gw_dns_load_done(uv_work_t *w, int status)
{
	struct gw_dns_job *job = w->data;
	struct gw_conn *c = job->c;
	struct gw_sandbox *sb = c->sb;
	struct log_line l;

	sb->dns_busy = false;
	if (status == 0 && job->r == 0) {
		dns_synth_free(sb->dns);
		sb->dns = job->map;
		sb->dns_loaded = true;
		if (log_begin(&l, LOG_LEVEL_DEBUG, "guest_dns_map_loaded")) {
			log_str(&l, "sandbox", sb->id);
			log_uint(&l, "names", dns_synth_count(sb->dns));
			log_end(&l);
		}
	} else {
		if (log_begin(&l, LOG_LEVEL_ERROR, "guest_dns_map_load_failed")) {
			log_str(&l, "sandbox", sb->id);
			log_errno(&l, status < 0 ? status : job->r);
			log_str(&l, "reason", job->err);
			log_end(&l);
		}
		gw_dns_fail_waiting(sb); /* the next stream tries again */
	}
	gw_dns_pump(sb);
	free(job);
	gw_conn_unref(c);
}

static void gw_dns_load_start(struct gw_sandbox *sb)
{
	struct gw_dns_job *job;
	struct gw_conn *c = sb->dns_wait_head->c;

	if (!(job = calloc(1, sizeof(*job)))) {
		gw_dns_fail_waiting(sb);
		return;
	}
	job->c = c;
	snprintf(job->sandbox_id, sizeof(job->sandbox_id), "%s", sb->id);
	job->work.data = job;
	if (uv_queue_work(c->gw->loop, &job->work, gw_dns_load_work, gw_dns_load_done) < 0) {
		free(job);
		gw_dns_fail_waiting(sb);
		return;
	}
	c->refs++;
	sb->dns_busy = true;
}

/* ---- answer and store ---------------------------------------------------- */

static void gw_dns_write_work(uv_work_t *w)
{
	struct gw_dns_job *job = w->data;
	struct gw_worker_ctx *ctx;
	int r;

	if ((r = gw_worker_ctx_get(job->c->gw, &ctx)) < 0) {
		snprintf(job->err, sizeof(job->err), "cannot open the store");
		goto out;
	}
	if ((r = store_begin_write(ctx->st)) < 0 ||
	    (r = store_dns_map_insert(ctx->st, job->sandbox_id, job->addr, job->name)) < 0 ||
	    (r = store_commit(ctx->st)) < 0) {
		snprintf(job->err, sizeof(job->err), "%s", store_errmsg(ctx->st));
		store_rollback(ctx->st);
	}
out:
	job->r = r;
}

static void gw_dns_write_done(uv_work_t *w, int status)
{
	struct gw_dns_job *job = w->data;
	struct gw_conn *c = job->c;
	struct gw_sandbox *sb = c->sb;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t out_len;
	struct log_line l;

	sb->dns_busy = false;
	if (status == 0 && job->r == 0) {
		if (!c->closing)
			gw_dns_send(c, job->answer, job->answer_len);
	} else {
		if (log_begin(&l, LOG_LEVEL_ERROR, "guest_dns_map_store_failed")) {
			log_str(&l, "sandbox", sb->id);
			log_str(&l, "name", job->name);
			log_errno(&l, status < 0 ? status : job->r);
			log_str(&l, "reason", job->err);
			log_end(&l);
		}
		/* Drop the unstored mapping: reload what the store holds. */
		dns_synth_free(sb->dns);
		sb->dns = NULL;
		sb->dns_loaded = false;
		if (!c->closing) {
			if (dns_wire_build_error(job->query, job->query_len, DNS_RCODE_SERVFAIL, out,
						 sizeof(out), &out_len) == 0)
				gw_dns_send(c, out, out_len);
			else
				gw_conn_close(c, "the new mapping cannot be stored");
		}
	}
	gw_dns_pump(sb);
	free(job->query);
	free(job);
	gw_conn_unref(c);
}

static void gw_dns_answer(struct gw_conn *c, const uint8_t *query, size_t len)
{
	struct gw_sandbox *sb = c->sb;
	struct dns_synth_info info;
	struct gw_dns_job *job;
	int r;

	if (!(job = calloc(1, sizeof(*job)))) {
		gw_conn_close(c, "out of memory");
		return;
	}
	r = dns_synth_answer(sb->dns, query, len, job->answer, sizeof(job->answer),
			     &job->answer_len, &info);
	if (r < 0) {
		free(job);
		gw_conn_close(c, "query gets no answer");
		return;
	}
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_DEBUG, "guest_dns")) {
			log_str(&l, "sandbox", sb->id);
			log_peer(&l, "qname", info.qname_text, strlen(info.qname_text));
			log_uint(&l, "qtype", info.qtype);
			log_uint(&l, "rcode", info.rcode);
			log_uint(&l, "new", info.created);
			log_end(&l);
		}
	}
	if (!info.created) {
		gw_dns_send(c, job->answer, job->answer_len);
		free(job);
		return;
	}
	job->c = c;
	snprintf(job->sandbox_id, sizeof(job->sandbox_id), "%s", sb->id);
	snprintf(job->name, sizeof(job->name), "%s", info.name);
	job->addr = info.addr;
	job->work.data = job;
	if ((job->query = malloc(len)))
		memcpy(job->query, query, len);
	job->query_len = len;
	if (!job->query ||
	    uv_queue_work(c->gw->loop, &job->work, gw_dns_write_work, gw_dns_write_done) < 0) {
		free(job->query);
		free(job);
		dns_synth_free(sb->dns);
		sb->dns = NULL;
		sb->dns_loaded = false;
		gw_conn_close(c, "the new mapping cannot be stored");
		return;
	}
	c->refs++;
	sb->dns_busy = true;
}

/* ---- waiting ------------------------------------------------------------- */

static void gw_dns_run(struct gw_conn *c, const struct gw_dns_wait *w)
{
	Miosa__EgressOpen open = MIOSA__EGRESS_OPEN__INIT;

	if (!w->egress) {
		gw_dns_answer(c, w->data, w->len);
		return;
	}
	open.dst_addr.data = (uint8_t *)w->addr;
	open.dst_addr.len = w->addr_len;
	open.dst_port = w->port;
	gw_egress_open(c, &open, w->data, w->len);
}

static void gw_dns_pump(struct gw_sandbox *sb)
{
	struct gw_dns_wait *w;

	while (!sb->dns_busy && (w = sb->dns_wait_head)) {
		struct gw_conn *c = w->c;
		bool more;

		if (!sb->dns_loaded) {
			gw_dns_load_start(sb);
			continue; /* busy now, or every waiting stream failed */
		}
		if (!(sb->dns_wait_head = w->next))
			sb->dns_wait_tail = &sb->dns_wait_head;
		more = sb->dns_wait_head != NULL;
		if (!c->closing)
			gw_dns_run(c, w);
		free(w);
		gw_conn_unref(c); /* may free sb when nothing else holds it */
		if (!more)
			return;
	}
}

static bool gw_dns_ready(const struct gw_sandbox *sb)
{
	return sb->dns_loaded && !sb->dns_busy && !sb->dns_wait_head;
}

/* Queue c behind the load or write in flight (or start the load). */
static void gw_dns_park(struct gw_conn *c, bool egress, const uint8_t *addr, size_t addr_len,
			uint32_t port, const uint8_t *data, size_t len)
{
	struct gw_sandbox *sb = c->sb;
	struct gw_dns_wait *w;

	if (!(w = calloc(1, sizeof(*w) + len))) {
		if (egress)
			gw_send_open_result(c, false, "internal-error");
		else
			gw_conn_close(c, "out of memory");
		return;
	}
	w->c = c;
	w->egress = egress;
	w->port = port;
	if (addr_len)
		memcpy(w->addr, addr, addr_len);
	w->addr_len = addr_len;
	if (len)
		memcpy(w->data, data, len);
	w->len = len;
	*sb->dns_wait_tail = w;
	sb->dns_wait_tail = &w->next;
	c->refs++;
	gw_dns_pump(sb);
}

void gw_dns_map_query(struct gw_conn *c, const uint8_t *query, size_t len)
{
	if (gw_dns_ready(c->sb))
		gw_dns_answer(c, query, len);
	else
		gw_dns_park(c, false, NULL, 0, 0, query, len);
}

void gw_dns_map_egress(struct gw_conn *c, const Miosa__EgressOpen *open, const uint8_t *rest,
		       size_t rest_len)
{
	/* An address over 16 bytes is refused whatever the map holds. */
	if (gw_dns_ready(c->sb) || open->dst_addr.len > sizeof(((struct gw_dns_wait *)0)->addr))
		gw_egress_open(c, open, rest, rest_len);
	else
		gw_dns_park(c, true, open->dst_addr.data, open->dst_addr.len, open->dst_port, rest,
			    rest_len);
}
