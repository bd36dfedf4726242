/*
 * audit — rows, redaction, hash chain, writer thread, tail, query, export
 * and verification (audit.h).
 */
/* _GNU_SOURCE comes from the build (eventfd, pthread_condattr_setclock). */
#include "audit.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static const char *const audit__scheme[] = { "http", "https", "tcp" };
static const char *const audit__action[] = { "allow", "deny", "error" };

/* ---- validation -------------------------------------------------------- */

/* NUL inside the buffer, no control byte; optionally no space / non-empty. */
static bool audit__text_ok(const char *s, size_t size, bool required, bool spaces)
{
	size_t len = strnlen(s, size);

	if (len == size || (required && len == 0))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || (!spaces && c == ' '))
			return false;
	}
	return true;
}

static bool audit__list_ok(const void *items, size_t item_size, size_t n)
{
	if (n > STORE_AUDIT_LIST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		const char *s = (const char *)items + i * item_size;

		if (!audit__text_ok(s, item_size, true, false) || strpbrk(s, ",;\""))
			return false;
	}
	return true;
}

int audit_row_validate(const struct store_audit_row *r)
{
	if (!r || r->time_us <= 0 || (unsigned)r->scheme > STORE_AUDIT_TCP ||
	    (unsigned)r->action > STORE_AUDIT_ERROR || r->status > 999 ||
	    r->bytes_up < 0 || r->bytes_down < 0 || r->duration_us < 0 ||
	    !audit__text_ok(r->tenant_id, sizeof(r->tenant_id), true, false) ||
	    !audit__text_ok(r->sandbox_id, sizeof(r->sandbox_id), true, false) ||
	    !audit__text_ok(r->external_user_id, sizeof(r->external_user_id), false, true) ||
	    !audit__text_ok(r->external_workspace_id, sizeof(r->external_workspace_id), false,
			    true) ||
	    !audit__text_ok(r->host, sizeof(r->host), true, false) ||
	    !audit__text_ok(r->method, sizeof(r->method), false, false) ||
	    !audit__text_ok(r->path, sizeof(r->path), false, false) ||
	    !audit__text_ok(r->reason, sizeof(r->reason), false, true) ||
	    !audit__list_ok(r->rules, sizeof(r->rules[0]), r->n_rules) ||
	    !audit__list_ok(r->swapped, sizeof(r->swapped[0]), r->n_swapped) ||
	    !audit__list_ok(r->flagged, sizeof(r->flagged[0]), r->n_flagged))
		return -EINVAL;
	return 0;
}

int audit_completion_validate(const struct store_audit_completion *c)
{
	if (!c || c->request_id < 1 || c->time_us <= 0 || c->status > 999 || c->bytes_up < 0 ||
	    c->bytes_down < 0 || c->duration_us < 0)
		return -EINVAL;
	return 0;
}

/* ---- redaction --------------------------------------------------------- */

struct audit__out {
	char *buf;
	size_t size, len; /* len <= size - 1 always */
};

static void audit__put(struct audit__out *o, const char *s, size_t n)
{
	size_t room = o->size - 1 - o->len;

	if (n > room)
		n = room; /* cut: everything before was already redacted */
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static int audit__hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode and lowercase s[0..n) into out (cut at out_size - 1). */
static size_t audit__decode_lower(const char *s, size_t n, char *out, size_t out_size)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k + 1 < out_size; i++) {
		int hi, lo;
		char c = s[i];

		if (c == '%' && i + 2 < n && (hi = audit__hex(s[i + 1])) >= 0 &&
		    (lo = audit__hex(s[i + 2])) >= 0) {
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[k++] = c;
	}
	out[k] = '\0';
	return k;
}

static bool audit__has_placeholder(const char *s, size_t n)
{
	char dec[STORE_AUDIT_PATH_MAX + 1];

	/* A value longer than the buffer cannot be checked whole: redact. */
	if (n >= sizeof(dec))
		return true;
	audit__decode_lower(s, n, dec, sizeof(dec));
	return strstr(dec, "miosa-tok-") != NULL;
}

static bool audit__ends_with(const char *s, size_t n, const char *suffix)
{
	size_t m = strlen(suffix);

	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static bool audit__credential_name(const char *s, size_t n)
{
	static const char *const exact[] = {
		"key", "api_key", "apikey", "token", "access_token", "secret", "password",
		"auth", "signature", "sig", "code",
	};
	static const char *const suffix[] = { "key", "token", "secret", "password", "signature" };
	static const char *const part[] = { "auth", "sig", "code" };
	char name[256];
	size_t len;

	if (n >= sizeof(name))
		return true;
	len = audit__decode_lower(s, n, name, sizeof(name));
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (strcmp(name, exact[i]) == 0)
			return true;
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++)
		if (audit__ends_with(name, len, suffix[i]))
			return true;
	for (char *save = NULL, *c = strtok_r(name, "_-.", &save); c;
	     c = strtok_r(NULL, "_-.", &save))
		for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++)
			if (strcmp(c, part[i]) == 0)
				return true;
	return false;
}

static void audit__redact_param(struct audit__out *o, const char *p, size_t n)
{
	const char *eq = memchr(p, '=', n);

	if (!eq) {
		if (audit__has_placeholder(p, n))
			audit__put(o, AUDIT_REDACTED, strlen(AUDIT_REDACTED));
		else
			audit__put(o, p, n);
		return;
	}
	audit__put(o, p, (size_t)(eq - p) + 1);
	if (audit__credential_name(p, (size_t)(eq - p)) || audit__has_placeholder(p, n))
		audit__put(o, AUDIT_REDACTED, strlen(AUDIT_REDACTED));
	else
		audit__put(o, eq + 1, n - (size_t)(eq - p) - 1);
}

int audit_redact_path(const char *path, char *out, size_t out_size)
{
	struct audit__out o = { .buf = out, .size = out_size };
	size_t n, qpos;

	if (!path || !out || out_size == 0)
		return -EINVAL;
	out[0] = '\0';
	n = strlen(path);
	qpos = strcspn(path, "?");
	/* Segments of the path proper: one holding a placeholder goes whole. */
	for (size_t i = 0; i < qpos;) {
		size_t seg = strcspn(path + i, "/?");

		if (seg > qpos - i)
			seg = qpos - i;
		if (seg > 0 && audit__has_placeholder(path + i, seg))
			audit__put(&o, AUDIT_REDACTED, strlen(AUDIT_REDACTED));
		else
			audit__put(&o, path + i, seg);
		i += seg;
		if (i < qpos) {
			audit__put(&o, "/", 1);
			i++;
		}
	}
	if (qpos == n)
		return (int)o.len;
	audit__put(&o, "?", 1);
	for (size_t i = qpos + 1; i <= n;) {
		size_t len = strcspn(path + i, "&");

		audit__redact_param(&o, path + i, len);
		i += len;
		if (i < n)
			audit__put(&o, "&", 1);
		i++;
	}
	return (int)o.len;
}

/* ---- hash chain -------------------------------------------------------- */

/*
 * Canonical serialization: "miosa-audit-v1", then every field in a fixed
 * order, integers as 8-byte big-endian, strings as a 4-byte big-endian length
 * and their bytes, lists as a 4-byte count and their strings; then
 * prev_hash.  Length prefixes make it unambiguous.
 */
static void audit__h_u64(crypto_generichash_state *h, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	crypto_generichash_update(h, b, sizeof(b));
}

static void audit__h_str(crypto_generichash_state *h, const char *s, size_t size)
{
	size_t len = strnlen(s, size);
	uint8_t b[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			 (uint8_t)len };

	crypto_generichash_update(h, b, sizeof(b));
	crypto_generichash_update(h, (const uint8_t *)s, len);
}

static void audit__h_list(crypto_generichash_state *h, const void *items, size_t item_size,
			  size_t n)
{
	uint8_t b[4] = { 0, 0, 0, (uint8_t)n };

	crypto_generichash_update(h, b, sizeof(b));
	for (size_t i = 0; i < n; i++)
		audit__h_str(h, (const char *)items + i * item_size, item_size);
}

void audit_row_hash(const struct store_audit_row *r, uint8_t out[STORE_AUDIT_HASH_BYTES])
{
	static const char domain[] = "miosa-audit-v1";
	crypto_generichash_state h;

	crypto_generichash_init(&h, NULL, 0, STORE_AUDIT_HASH_BYTES);
	crypto_generichash_update(&h, (const uint8_t *)domain, sizeof(domain));
	audit__h_u64(&h, (uint64_t)r->id);
	audit__h_u64(&h, (uint64_t)r->time_us);
	audit__h_str(&h, r->tenant_id, sizeof(r->tenant_id));
	audit__h_str(&h, r->sandbox_id, sizeof(r->sandbox_id));
	audit__h_str(&h, r->external_user_id, sizeof(r->external_user_id));
	audit__h_str(&h, r->external_workspace_id, sizeof(r->external_workspace_id));
	audit__h_str(&h, r->host, sizeof(r->host));
	audit__h_u64(&h, r->port);
	audit__h_u64(&h, (uint64_t)r->scheme);
	audit__h_str(&h, r->method, sizeof(r->method));
	audit__h_str(&h, r->path, sizeof(r->path));
	audit__h_u64(&h, r->status);
	audit__h_u64(&h, (uint64_t)r->action);
	audit__h_str(&h, r->reason, sizeof(r->reason));
	audit__h_list(&h, r->rules, sizeof(r->rules[0]), r->n_rules);
	audit__h_list(&h, r->swapped, sizeof(r->swapped[0]), r->n_swapped);
	audit__h_list(&h, r->flagged, sizeof(r->flagged[0]), r->n_flagged);
	audit__h_u64(&h, (uint64_t)r->bytes_up);
	audit__h_u64(&h, (uint64_t)r->bytes_down);
	audit__h_u64(&h, (uint64_t)r->duration_us);
	crypto_generichash_update(&h, r->prev_hash, STORE_AUDIT_HASH_BYTES);
	crypto_generichash_final(&h, out, STORE_AUDIT_HASH_BYTES);
}

/* Same serialization rules as a row, under its own domain string. */
void audit_completion_hash(const struct store_audit_completion *c,
			   uint8_t out[STORE_AUDIT_HASH_BYTES])
{
	static const char domain[] = "miosa-audit-completion-v1";
	crypto_generichash_state h;

	crypto_generichash_init(&h, NULL, 0, STORE_AUDIT_HASH_BYTES);
	crypto_generichash_update(&h, (const uint8_t *)domain, sizeof(domain));
	audit__h_u64(&h, (uint64_t)c->id);
	audit__h_u64(&h, (uint64_t)c->request_id);
	audit__h_u64(&h, (uint64_t)c->time_us);
	audit__h_u64(&h, c->status);
	audit__h_u64(&h, (uint64_t)c->bytes_up);
	audit__h_u64(&h, (uint64_t)c->bytes_down);
	audit__h_u64(&h, (uint64_t)c->duration_us);
	crypto_generichash_update(&h, c->prev_hash, STORE_AUDIT_HASH_BYTES);
	crypto_generichash_final(&h, out, STORE_AUDIT_HASH_BYTES);
}

void audit_row_merge(struct store_audit_row *row, const struct store_audit_completion *c)
{
	row->status = c->status;
	row->bytes_up = c->bytes_up;
	row->bytes_down = c->bytes_down;
	row->duration_us = c->duration_us;
	row->completion_id = c->id;
}

/* ---- filters and time -------------------------------------------------- */

void audit_filter_init(struct store_audit_filter *f)
{
	memset(f, 0, sizeof(*f));
	f->status = -1;
	f->action = -1;
}

static bool audit__eq(const char *want, const char *have)
{
	return !want || strcmp(want, have) == 0;
}

bool audit_filter_match(const struct store_audit_filter *f, const struct store_audit_row *r)
{
	return (!f->since_us || r->time_us >= f->since_us) &&
	       (!f->until_us || r->time_us < f->until_us) &&
	       audit__eq(f->tenant_id, r->tenant_id) && audit__eq(f->sandbox_id, r->sandbox_id) &&
	       audit__eq(f->host, r->host) &&
	       /* Strict equality; an unset id ("") matches no filter value. */
	       (!f->external_user_id ||
		(r->external_user_id[0] && strcmp(f->external_user_id, r->external_user_id) == 0)) &&
	       (!f->external_workspace_id ||
		(r->external_workspace_id[0] &&
		 strcmp(f->external_workspace_id, r->external_workspace_id) == 0)) &&
	       (f->status < 0 || f->status == r->status) &&
	       (f->action < 0 || f->action == (int)r->action);
}

/* Fixed-width decimal field; -1 if not all digits. */
static int audit__digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t audit__days(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int audit__rfc3339(const char *s, int64_t *ret_us)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, off = 0;
	int64_t us = 0, t;
	size_t i = 19;

	if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return -EINVAL;
	y = audit__digits(s, 4), mo = audit__digits(s + 5, 2), d = audit__digits(s + 8, 2);
	h = audit__digits(s + 11, 2), mi = audit__digits(s + 14, 2), sec = audit__digits(s + 17, 2);
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) ||
	    h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
		return -EINVAL;
	if (sec == 60)
		sec = 59; /* a leap second sorts with the second before it */
	if (s[i] == '.') {
		int k = 0;

		for (i++; s[i] >= '0' && s[i] <= '9'; i++, k++)
			if (k < 6)
				us = us * 10 + (s[i] - '0');
		if (k == 0)
			return -EINVAL;
		for (; k < 6; k++)
			us *= 10;
	}
	if ((s[i] == 'Z' || s[i] == 'z') && s[i + 1] == '\0') {
		off = 0;
	} else if ((s[i] == '+' || s[i] == '-') && strlen(s + i) == 6 && s[i + 3] == ':') {
		int oh = audit__digits(s + i + 1, 2), om = audit__digits(s + i + 4, 2);

		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return -EINVAL;
		off = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
	} else {
		return -EINVAL;
	}
	t = audit__days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off * 60;
	if (t < 0)
		return -EINVAL;
	*ret_us = t * 1000000 + us;
	return 0;
}

int audit_parse_time(const char *text, int64_t now_us, int64_t *ret_us)
{
	static const struct { char unit; int64_t us; } units[] = {
		{ 's', 1000000 }, { 'm', 60000000 }, { 'h', 3600000000 }, { 'd', 86400000000 },
	};
	size_t n;
	int64_t v = 0;

	if (!text || !ret_us)
		return -EINVAL;
	n = strlen(text);
	if (n >= 2 && n <= 10 && strspn(text, "0123456789") == n - 1) {
		for (size_t i = 0; i + 1 < n; i++)
			v = v * 10 + (text[i] - '0');
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			if (text[n - 1] != units[i].unit)
				continue;
			if (v > now_us / units[i].us)
				return -EINVAL;
			*ret_us = now_us - v * units[i].us;
			return 0;
		}
		return -EINVAL;
	}
	return audit__rfc3339(text, ret_us);
}

/* ---- writer ------------------------------------------------------------ */

struct audit__entry {
	struct audit__entry *next;
	audit_ack_fn ack;
	void *userdata;
	bool is_completion;          /* comp, else row */
	unsigned flags;              /* AUDIT_SUBMIT_* */
	int64_t hold_until_ms;       /* held for the tail: publish by then */
	union {
		struct store_audit_row row;
		struct store_audit_completion comp;
	};
};

struct audit__list {
	struct audit__entry *head, **tail;
	size_t n;
};

struct audit_tail {
	pthread_mutex_t mu;
	struct audit__list q;        /* rows waiting for the reader */
	size_t max;
	bool dropped, marker_sent, ended;
	int efd;
	struct audit_writer *w;      /* NULL once detached */
	struct store_audit_filter f;
	char strs[5][STORE_ID_MAX + 1];
};

struct audit_writer {
	pthread_mutex_t mu;
	pthread_cond_t cv;           /* submit -> writer */
	struct audit__list q;
	size_t queue_max, batch_max;
	int batch_ms;
	bool closing;
	pthread_t thread;
	struct store *st;            /* the writer thread's own handle */
	struct audit_writer_stats stats;
	struct audit_tail *subs[AUDIT_SUBSCRIBERS_MAX];
	size_t n_subs;
	struct audit__list held;     /* committed rows awaiting their completion (tail) */
};

static void audit__list_init(struct audit__list *l)
{
	l->head = NULL;
	l->tail = &l->head;
	l->n = 0;
}

static void audit__list_push(struct audit__list *l, struct audit__entry *e)
{
	e->next = NULL;
	*l->tail = e;
	l->tail = &e->next;
	l->n++;
}

static struct audit__entry *audit__list_pop(struct audit__list *l)
{
	struct audit__entry *e = l->head;

	if (!e)
		return NULL;
	l->head = e->next;
	if (!l->head)
		l->tail = &l->head;
	l->n--;
	return e;
}

static void audit__list_free(struct audit__list *l)
{
	struct audit__entry *e;

	while ((e = audit__list_pop(l)))
		free(e);
}

/* One transaction: chain the batch onto the newest link and insert it. */
static int audit__commit_tx(struct store *st, struct audit__list *batch)
{
	uint8_t prev[STORE_AUDIT_HASH_BYTES];
	int64_t last = 0;
	int r;

	if ((r = store_begin_write(st)) != 0)
		return r;
	r = store_audit_last(st, &last, prev);
	if (r == -ENOENT) {
		last = 0;
		memset(prev, 0, sizeof(prev));
		r = 0;
	}
	for (struct audit__entry *e = batch->head; r == 0 && e; e = e->next) {
		if (e->is_completion) {
			e->comp.id = ++last;
			memcpy(e->comp.prev_hash, prev, sizeof(prev));
			audit_completion_hash(&e->comp, e->comp.row_hash);
			memcpy(prev, e->comp.row_hash, sizeof(prev));
			r = store_audit_completion_insert(st, &e->comp);
			continue;
		}
		e->row.id = ++last;
		memcpy(e->row.prev_hash, prev, sizeof(prev));
		audit_row_hash(&e->row, e->row.row_hash);
		memcpy(prev, e->row.row_hash, sizeof(prev));
		r = store_audit_insert(st, &e->row);
	}
	if (r == 0)
		r = store_commit(st);
	if (r != 0)
		store_rollback(st);
	return r;
}

/*
 * Commit the batch.  A batch of completions only is committed without a
 * WAL sync: a completion may then be lost with power (leaving the honest
 * "status unknown"), never with a SIGKILL, and the next synced commit
 * makes it durable; so its commit cannot hold the next request's row
 * behind an fsync.  The mode is set for every batch, so a batch with a row
 * is never committed unsynced (if setting it fails, the batch fails).
 */
static int audit__commit(struct store *st, struct audit__list *batch)
{
	bool rows = false;
	int r;

	for (struct audit__entry *e = batch->head; e && !rows; e = e->next)
		rows = !e->is_completion;
	if ((r = store_set_sync_full(st, rows)) != 0)
		return r;
	return audit__commit_tx(st, batch);
}

static void audit__signal(int efd)
{
	uint64_t one = 1;

	/* EAGAIN only if the counter is saturated: readable either way. */
	(void)!write(efd, &one, sizeof(one));
}

/* Under w->mu: hand a copy of one committed (merged) row to the
 * subscribers whose filter it matches. */
static void audit__publish_row(struct audit_writer *w, const struct store_audit_row *row)
{
	for (size_t i = 0; i < w->n_subs;) {
		struct audit_tail *t = w->subs[i];
		struct audit__entry *c = NULL;
		bool drop = false;

		if (!audit_filter_match(&t->f, row)) {
			i++;
			continue;
		}
		pthread_mutex_lock(&t->mu);
		if (t->q.n >= t->max || !(c = malloc(sizeof(*c)))) {
			drop = true; /* never wait for a reader */
			t->dropped = true;
			t->w = NULL;
		} else {
			c->ack = NULL;
			c->userdata = NULL;
			c->is_completion = false;
			c->row = *row;
			audit__list_push(&t->q, c);
		}
		pthread_mutex_unlock(&t->mu);
		audit__signal(t->efd);
		if (drop)
			w->subs[i] = w->subs[--w->n_subs];
		else
			i++;
	}
}

/* Under w->mu: publish held rows whose time is up (all with now_ms < 0). */
static void audit__release_held(struct audit_writer *w, int64_t now_ms)
{
	while (w->held.head && (now_ms < 0 || w->held.head->hold_until_ms <= now_ms)) {
		struct audit__entry *e = audit__list_pop(&w->held);

		audit__publish_row(w, &e->row);
		free(e);
	}
}

static int64_t audit__mono_ms(void);

/*
 * Under w->mu, after a commit: a row that awaits its completion is held
 * (only while someone subscribes: nobody else reads the tail), others are
 * published; a completion publishes its held row, merged.  The hold list
 * is FIFO with one hold time, so its head has the earliest deadline.
 */
static void audit__publish(struct audit_writer *w, struct audit__list *batch)
{
	int64_t now = audit__mono_ms();

	for (struct audit__entry **pe = &batch->head; *pe;) {
		struct audit__entry *e = *pe;

		if (e->is_completion) {
			struct audit__entry **ph = &w->held.head, *h = NULL;

			for (; *ph; ph = &(*ph)->next)
				if ((*ph)->row.id == e->comp.request_id) {
					h = *ph;
					break;
				}
			if (h) {
				*ph = h->next;
				if (!*ph)
					w->held.tail = ph;
				w->held.n--;
				audit_row_merge(&h->row, &e->comp);
				audit__publish_row(w, &h->row);
				free(h);
			}
		} else if ((e->flags & AUDIT_SUBMIT_AWAIT_COMPLETION) && w->n_subs > 0) {
			struct audit__entry *h = malloc(sizeof(*h));

			if (h) {
				if (w->held.n >= AUDIT_TAIL_HOLD_MAX) {
					struct audit__entry *old = audit__list_pop(&w->held);

					audit__publish_row(w, &old->row);
					free(old);
				}
				*h = *e;
				h->ack = NULL;
				h->userdata = NULL;
				h->hold_until_ms = now + AUDIT_TAIL_HOLD_MS;
				audit__list_push(&w->held, h);
			} else {
				audit__publish_row(w, &e->row); /* unmerged beats missing */
			}
		} else {
			audit__publish_row(w, &e->row);
		}
		pe = &e->next;
	}
	audit__release_held(w, now);
}

static void audit__deadline(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *audit__writer_main(void *arg)
{
	struct audit_writer *w = arg;
	struct audit__list batch;
	struct timespec until;
	int r;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->q.n == 0 && !w->closing) {
			if (!w->held.head) {
				pthread_cond_wait(&w->cv, &w->mu);
				continue;
			}
			/* Wake for the oldest held row's deadline too. */
			until.tv_sec = w->held.head->hold_until_ms / 1000;
			until.tv_nsec = (long)(w->held.head->hold_until_ms % 1000) * 1000000L;
			if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
				audit__release_held(w, audit__mono_ms());
		}
		if (w->q.n == 0) {
			audit__release_held(w, -1); /* closing: what is held goes out unmerged */
			break; /* closing and drained */
		}
		/* Group commit: give the batch batch_ms to fill. */
		if (w->batch_ms > 0 && w->q.n < w->batch_max && !w->closing) {
			audit__deadline(&until, w->batch_ms);
			while (w->q.n < w->batch_max && !w->closing &&
			       pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
				;
		}
		audit__list_init(&batch);
		while (batch.n < w->batch_max && w->q.n > 0)
			audit__list_push(&batch, audit__list_pop(&w->q));
		pthread_mutex_unlock(&w->mu);

		r = audit__commit(w->st, &batch);

		pthread_mutex_lock(&w->mu);
		if (r == 0) {
			w->stats.rows += batch.n;
			w->stats.batches++;
			audit__publish(w, &batch);
		} else {
			w->stats.failed += batch.n;
		}
		pthread_mutex_unlock(&w->mu);
		/* Acks after COMMIT returned: an acknowledged row is on disk. */
		for (struct audit__entry *e = batch.head; e; e = e->next)
			if (e->ack)
				e->ack(e->userdata, r,
				       r != 0 ? 0 : e->is_completion ? e->comp.id : e->row.id);
		audit__list_free(&batch);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int audit_writer_open(const char *state_dir, const struct audit_writer_opts *opts,
		      struct audit_writer **ret_writer, char *err, size_t err_size)
{
	struct audit_writer *w;
	pthread_condattr_t ca;
	int r;

	if (!ret_writer || (opts && (opts->queue_max > AUDIT_QUEUE_MAX ||
				     opts->batch_max > AUDIT_QUEUE_MAX || opts->batch_ms > 10000))) {
		snprintf(err, err_size, "audit writer options out of range");
		return -EINVAL;
	}
	if (sodium_init() < 0) {
		snprintf(err, err_size, "libsodium failed to initialize");
		return -EIO;
	}
	if (!(w = calloc(1, sizeof(*w)))) {
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	w->queue_max = opts && opts->queue_max ? opts->queue_max : AUDIT_QUEUE_DEFAULT;
	w->batch_max = opts && opts->batch_max ? opts->batch_max : AUDIT_BATCH_DEFAULT;
	w->batch_ms = opts && opts->batch_ms >= 0 ? opts->batch_ms : AUDIT_BATCH_MS_DEFAULT;
	audit__list_init(&w->q);
	audit__list_init(&w->held);
	if ((r = store_open(state_dir, &w->st, err, err_size)) != 0) {
		free(w);
		return r;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((r = -pthread_create(&w->thread, NULL, audit__writer_main, w)) != 0) {
		snprintf(err, err_size, "cannot start the audit writer thread");
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		store_close(w->st);
		free(w);
		return r;
	}
	*ret_writer = w;
	return 0;
}

void audit_writer_close(struct audit_writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->closing = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	for (size_t i = 0; i < w->n_subs; i++) {
		struct audit_tail *t = w->subs[i];

		pthread_mutex_lock(&t->mu);
		t->ended = true;
		t->w = NULL;
		pthread_mutex_unlock(&t->mu);
		audit__signal(t->efd);
	}
	audit__list_free(&w->held); /* empty: the writer thread released it */
	store_close(w->st);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

/* Queue e (taken in every case). */
static int audit__enqueue(struct audit_writer *w, struct audit__entry *e)
{
	int r;

	pthread_mutex_lock(&w->mu);
	if (w->closing) {
		r = -ESHUTDOWN;
	} else if (w->q.n >= w->queue_max) {
		w->stats.rejected++;
		r = -EAGAIN;
	} else {
		audit__list_push(&w->q, e);
		/* Wake the writer when it may be idle or its batch is full. */
		if (w->q.n == 1 || w->q.n >= w->batch_max)
			pthread_cond_signal(&w->cv);
		e = NULL;
		r = 0;
	}
	pthread_mutex_unlock(&w->mu);
	free(e);
	return r;
}

int audit_submit_flags(struct audit_writer *w, const struct store_audit_row *row,
		       unsigned flags, audit_ack_fn ack, void *userdata)
{
	struct audit__entry *e;
	int r;

	if (!w || (flags & ~AUDIT_SUBMIT_AWAIT_COMPLETION) || (r = audit_row_validate(row)) != 0)
		return -EINVAL;
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	e->row = *row;
	e->ack = ack;
	e->userdata = userdata;
	e->flags = flags;
	if ((r = audit_redact_path(row->path, e->row.path, sizeof(e->row.path))) < 0) {
		free(e);
		return r;
	}
	e->row.id = 0;
	e->row.completion_id = 0;
	return audit__enqueue(w, e);
}

int audit_submit(struct audit_writer *w, const struct store_audit_row *row, audit_ack_fn ack,
		 void *userdata)
{
	return audit_submit_flags(w, row, 0, ack, userdata);
}

int audit_complete(struct audit_writer *w, const struct store_audit_completion *c,
		   audit_ack_fn ack, void *userdata)
{
	struct audit__entry *e;

	if (!w || audit_completion_validate(c) != 0)
		return -EINVAL;
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	e->is_completion = true;
	e->comp = *c;
	e->comp.id = 0;
	e->ack = ack;
	e->userdata = userdata;
	return audit__enqueue(w, e);
}

struct audit__wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int status;
	int64_t id;
};

static void audit__wait_ack(void *userdata, int status, int64_t id)
{
	struct audit__wait *c = userdata;

	pthread_mutex_lock(&c->mu);
	c->done = true;
	c->status = status;
	c->id = id;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

int audit_submit_wait(struct audit_writer *w, const struct store_audit_row *row,
		      int64_t *ret_id)
{
	return audit_submit_wait_flags(w, row, 0, ret_id);
}

int audit_submit_wait_flags(struct audit_writer *w, const struct store_audit_row *row,
			    unsigned flags, int64_t *ret_id)
{
	struct audit__wait c = { .done = false };
	int r;

	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	if ((r = audit_submit_flags(w, row, flags, audit__wait_ack, &c)) == 0) {
		pthread_mutex_lock(&c.mu);
		while (!c.done)
			pthread_cond_wait(&c.cv, &c.mu);
		pthread_mutex_unlock(&c.mu);
		r = c.status;
	}
	pthread_cond_destroy(&c.cv);
	pthread_mutex_destroy(&c.mu);
	if (r == 0 && ret_id)
		*ret_id = c.id;
	return r;
}

void audit_writer_stats(struct audit_writer *w, struct audit_writer_stats *ret_stats)
{
	pthread_mutex_lock(&w->mu);
	*ret_stats = w->stats;
	pthread_mutex_unlock(&w->mu);
}

/* ---- tail -------------------------------------------------------------- */

static const char *audit__keep(char *dst, const char *src)
{
	if (!src)
		return NULL;
	snprintf(dst, STORE_ID_MAX + 1, "%s", src);
	return dst;
}

int audit_tail_subscribe(struct audit_writer *w, const struct store_audit_filter *filter,
			 size_t queue_max, struct audit_tail **ret_tail)
{
	struct audit_tail *t;
	int r = 0;

	if (!w || !ret_tail || queue_max > AUDIT_QUEUE_MAX)
		return -EINVAL;
	if (!(t = calloc(1, sizeof(*t))))
		return -ENOMEM;
	if ((t->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		r = -errno;
		free(t);
		return r;
	}
	pthread_mutex_init(&t->mu, NULL);
	audit__list_init(&t->q);
	t->max = queue_max ? queue_max : AUDIT_TAIL_QUEUE_DEFAULT;
	if (filter)
		t->f = *filter;
	else
		audit_filter_init(&t->f);
	t->f.tenant_id = audit__keep(t->strs[0], t->f.tenant_id);
	t->f.sandbox_id = audit__keep(t->strs[1], t->f.sandbox_id);
	t->f.host = audit__keep(t->strs[2], t->f.host);
	t->f.external_user_id = audit__keep(t->strs[3], t->f.external_user_id);
	t->f.external_workspace_id = audit__keep(t->strs[4], t->f.external_workspace_id);
	t->w = w;
	pthread_mutex_lock(&w->mu);
	if (w->closing)
		r = -ESHUTDOWN;
	else if (w->n_subs == AUDIT_SUBSCRIBERS_MAX)
		r = -EMFILE;
	else
		w->subs[w->n_subs++] = t;
	pthread_mutex_unlock(&w->mu);
	if (r != 0) {
		t->w = NULL;
		audit_tail_close(t);
		return r;
	}
	*ret_tail = t;
	return 0;
}

static int64_t audit__mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int audit_tail_next(struct audit_tail *t, int timeout_ms, struct store_audit_row *ret_row)
{
	int64_t end = timeout_ms > 0 ? audit__mono_ms() + timeout_ms : 0;

	for (;;) {
		struct audit__entry *e;
		struct pollfd p = { .fd = t->efd, .events = POLLIN };
		uint64_t cnt;
		int wait, n;

		pthread_mutex_lock(&t->mu);
		e = audit__list_pop(&t->q);
		if (!e && t->dropped && !t->marker_sent) {
			t->marker_sent = true;
			pthread_mutex_unlock(&t->mu);
			return AUDIT_TAIL_DROPPED;
		}
		if (!e && (t->dropped || t->ended)) {
			pthread_mutex_unlock(&t->mu);
			return -EPIPE;
		}
		pthread_mutex_unlock(&t->mu);
		if (e) {
			*ret_row = e->row;
			free(e);
			return 0;
		}
		wait = timeout_ms < 0 ? -1 : timeout_ms == 0 ? 0 : (int)(end - audit__mono_ms());
		if (timeout_ms >= 0 && wait < 0)
			wait = 0;
		n = poll(&p, 1, wait);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
		(void)!read(t->efd, &cnt, sizeof(cnt));
	}
}

int audit_tail_fd(const struct audit_tail *t)
{
	return t->efd;
}

void audit_tail_close(struct audit_tail *t)
{
	struct audit_writer *w;

	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	w = t->w;
	pthread_mutex_unlock(&t->mu);
	if (w) {
		/* Still registered: the writer cannot drop it while we hold w->mu. */
		pthread_mutex_lock(&w->mu);
		for (size_t i = 0; i < w->n_subs; i++)
			if (w->subs[i] == t) {
				w->subs[i] = w->subs[--w->n_subs];
				break;
			}
		pthread_mutex_unlock(&w->mu);
	}
	audit__list_free(&t->q);
	close(t->efd);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* ---- query ------------------------------------------------------------- */

int audit_query(struct store *st, const struct store_audit_filter *f, size_t limit,
		struct store_audit_row **ret_rows, size_t *ret_n, int64_t *ret_next_cursor)
{
	struct store_audit_row *rows = NULL;
	size_t n = 0;
	int r;

	if (!st || !f || limit == 0 || limit > AUDIT_QUEUE_MAX)
		return -EINVAL;
	/* One row more than asked: its presence says there is a next page. */
	if ((r = store_audit_query(st, f, limit + 1, &rows, &n)) != 0)
		return r;
	*ret_next_cursor = n > limit ? rows[limit - 1].id : 0;
	*ret_n = n > limit ? limit : n;
	*ret_rows = rows;
	return 0;
}

/* ---- export ------------------------------------------------------------ */

static void audit__hexhash(const uint8_t *h, char out[2 * STORE_AUDIT_HASH_BYTES + 1])
{
	sodium_bin2hex(out, 2 * STORE_AUDIT_HASH_BYTES + 1, h, STORE_AUDIT_HASH_BYTES);
}

static json_t *audit__json_list(const void *items, size_t item_size, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_string((const char *)items + i * item_size));
	return a;
}

static json_t *audit__json_opt(const char *s)
{
	return s[0] ? json_string(s) : json_null();
}

char *audit_row_json(const struct store_audit_row *r)
{
	char prev[2 * STORE_AUDIT_HASH_BYTES + 1], hash[sizeof(prev)];
	char *out = NULL;
	json_t *o;
	size_t n;

	audit__hexhash(r->prev_hash, prev);
	audit__hexhash(r->row_hash, hash);
	/* Keys in this order (jansson keeps insertion order). */
	o = json_pack("{sI sI ss ss so so ss si ss ss ss si ss ss so s{s{soso}} sI sI sI ss ss so}",
		      "id", (json_int_t)r->id, "time_us", (json_int_t)r->time_us,
		      "tenant_id", r->tenant_id, "sandbox_id", r->sandbox_id,
		      "external_user_id", audit__json_opt(r->external_user_id),
		      "external_workspace_id", audit__json_opt(r->external_workspace_id),
		      "host", r->host, "port", (int)r->port, "scheme", audit__scheme[r->scheme],
		      "method", r->method, "path", r->path, "status", (int)r->status,
		      "action", audit__action[r->action], "reason", r->reason,
		      "rules", audit__json_list(r->rules, sizeof(r->rules[0]), r->n_rules),
		      "request_transforms", "secrets",
		      "swapped", audit__json_list(r->swapped, sizeof(r->swapped[0]), r->n_swapped),
		      "flagged", audit__json_list(r->flagged, sizeof(r->flagged[0]), r->n_flagged),
		      "bytes_up", (json_int_t)r->bytes_up, "bytes_down", (json_int_t)r->bytes_down,
		      "duration_us", (json_int_t)r->duration_us, "prev_hash", prev,
		      "row_hash", hash, "completion_id",
		      r->completion_id ? json_integer(r->completion_id) : json_null());
	if (!o)
		return NULL;
	/* Into plain malloc'd memory, as the contract says (free()): json_dumps()
	 * would use jansson's allocator, which a process (the broker's control
	 * API) may have replaced. */
	n = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (n > 0 && n < SIZE_MAX && (out = malloc(n + 1)) &&
	    json_dumpb(o, out, n, JSON_COMPACT | JSON_PRESERVE_ORDER) == n) {
		out[n] = '\0';
	} else {
		free(out);
		out = NULL;
	}
	json_decref(o);
	return out;
}

struct audit__buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void audit__buf_add(struct audit__buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap - b->len < n)
			cap *= 2;
		if (!(p = realloc(b->p, cap))) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* RFC 4180 field, with the formula-injection prefix. */
static void audit__csv_text(struct audit__buf *b, const char *s, bool first)
{
	bool quote = strpbrk(s, ",\"\r\n") != NULL;

	if (!first)
		audit__buf_add(b, ",", 1);
	if (quote)
		audit__buf_add(b, "\"", 1);
	if (s[0] && strchr("=+-@\t\r", s[0]))
		audit__buf_add(b, "'", 1);
	for (; *s; s++) {
		audit__buf_add(b, s, 1);
		if (*s == '"')
			audit__buf_add(b, "\"", 1); /* RFC 4180: a quote is doubled */
	}
	if (quote)
		audit__buf_add(b, "\"", 1);
}

static void audit__csv_int(struct audit__buf *b, int64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), ",%" PRId64, v);

	audit__buf_add(b, num, (size_t)n);
}

static void audit__csv_list(struct audit__buf *b, const void *items, size_t item_size, size_t n)
{
	char joined[STORE_AUDIT_LIST_MAX * (STORE_NAME_MAX + 1) + 1];
	size_t off = 0;

	joined[0] = '\0';
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(joined + off, sizeof(joined) - off, "%s%s", i ? ";" : "",
					(const char *)items + i * item_size);
	audit__csv_text(b, joined, false);
}

static const char audit__csv_header[] =
	"id,time_us,tenant_id,sandbox_id,external_user_id,external_workspace_id,host,port,"
	"scheme,method,path,status,action,reason,rules,secrets_swapped,secrets_flagged,"
	"bytes_up,bytes_down,duration_us,prev_hash,row_hash,completion_id\r\n";

static void audit__csv_row(struct audit__buf *b, const struct store_audit_row *r)
{
	char prev[2 * STORE_AUDIT_HASH_BYTES + 1], hash[sizeof(prev)], id[24];

	snprintf(id, sizeof(id), "%" PRId64, r->id);
	audit__buf_add(b, id, strlen(id));
	audit__csv_int(b, r->time_us);
	audit__csv_text(b, r->tenant_id, false);
	audit__csv_text(b, r->sandbox_id, false);
	audit__csv_text(b, r->external_user_id, false);
	audit__csv_text(b, r->external_workspace_id, false);
	audit__csv_text(b, r->host, false);
	audit__csv_int(b, r->port);
	audit__csv_text(b, audit__scheme[r->scheme], false);
	audit__csv_text(b, r->method, false);
	audit__csv_text(b, r->path, false);
	audit__csv_int(b, r->status);
	audit__csv_text(b, audit__action[r->action], false);
	audit__csv_text(b, r->reason, false);
	audit__csv_list(b, r->rules, sizeof(r->rules[0]), r->n_rules);
	audit__csv_list(b, r->swapped, sizeof(r->swapped[0]), r->n_swapped);
	audit__csv_list(b, r->flagged, sizeof(r->flagged[0]), r->n_flagged);
	audit__csv_int(b, r->bytes_up);
	audit__csv_int(b, r->bytes_down);
	audit__csv_int(b, r->duration_us);
	audit__hexhash(r->prev_hash, prev);
	audit__hexhash(r->row_hash, hash);
	audit__csv_text(b, prev, false);
	audit__csv_text(b, hash, false);
	if (r->completion_id)
		audit__csv_int(b, r->completion_id);
	else
		audit__buf_add(b, ",", 1); /* empty: not completed */
	audit__buf_add(b, "\r\n", 2);
}

static int audit__format_page(struct audit__buf *b, enum audit_format fmt,
			      const struct store_audit_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (fmt == AUDIT_CSV) {
			audit__csv_row(b, &rows[i]);
			continue;
		}
		char *line = audit_row_json(&rows[i]);

		if (!line)
			return -ENOMEM;
		audit__buf_add(b, line, strlen(line));
		audit__buf_add(b, "\n", 1);
		free(line);
	}
	return b->oom ? -ENOMEM : 0;
}

int audit_export(struct store *st, const struct store_audit_filter *f, enum audit_format fmt,
		 audit_write_fn write, void *userdata)
{
	struct store_audit_filter page = *f;
	struct audit__buf b = { 0 };
	int64_t total = 0, next;
	int r;

	if (!write || (fmt != AUDIT_JSONL && fmt != AUDIT_CSV))
		return -EINVAL;
	if (fmt == AUDIT_CSV && (r = write(userdata, audit__csv_header,
					    sizeof(audit__csv_header) - 1)) < 0)
		return r;
	do {
		struct store_audit_row *rows = NULL;
		size_t n = 0;

		if ((r = audit_query(st, &page, AUDIT_PAGE_ROWS, &rows, &n, &next)) != 0)
			break;
		b.len = 0;
		r = audit__format_page(&b, fmt, rows, n);
		free(rows);
		if (r == 0 && b.len > 0)
			r = write(userdata, b.p, b.len);
		if (r < 0)
			break;
		r = 0;
		total += (int64_t)n;
		page.before_id = next;
	} while (next != 0);
	free(b.p);
	if (r < 0)
		return r;
	return total > INT32_MAX ? INT32_MAX : (int)total;
}

/* ---- verify ------------------------------------------------------------ */

/* One table's side of the chain walk: a page, refilled when used up. */
struct audit__walk {
	bool completions;
	struct store_audit_row *rows;
	struct store_audit_completion *comps;
	size_t n, i;
	int64_t after;               /* last id fetched */
	bool end;                    /* the last page was short */
};

/* The side's next link id, refilling its page; 0 when it has no more. */
static int audit__walk_peek(struct store *st, struct audit__walk *k, int64_t *ret_id)
{
	int r = 0;

	if (k->i == k->n && !k->end) {
		free(k->rows);
		free(k->comps);
		k->rows = NULL;
		k->comps = NULL;
		k->n = k->i = 0;
		r = k->completions
			    ? store_audit_completions_after(st, k->after, AUDIT_PAGE_ROWS, &k->comps,
							    &k->n)
			    : store_audit_list_after(st, k->after, AUDIT_PAGE_ROWS, &k->rows, &k->n);
		if (r != 0)
			return r;
		k->end = k->n < AUDIT_PAGE_ROWS;
		if (k->n > 0)
			k->after = k->completions ? k->comps[k->n - 1].id : k->rows[k->n - 1].id;
	}
	*ret_id = k->i == k->n ? 0 : k->completions ? k->comps[k->i].id : k->rows[k->i].id;
	return 0;
}

int audit_verify_chain(struct store *st, struct audit_verify_result *ret)
{
	uint8_t prev[STORE_AUDIT_HASH_BYTES] = { 0 }, h[STORE_AUDIT_HASH_BYTES];
	struct audit__walk rows = { .completions = false }, comps = { .completions = true };
	uint64_t checked = 0;
	int64_t last = 0, bad = 0, anchor = 0;
	int r;

	if (!st || !ret)
		return -EINVAL;
	if ((r = store_begin_read(st)) != 0)
		return r;
	/* Pruned log: the chain of what remains starts at the anchor, on both
	 * sides (pruning removes a prefix of the ids over both tables). */
	r = store_audit_anchor(st, &anchor, prev);
	if (r == -ENOENT) {
		anchor = 0;
		memset(prev, 0, sizeof(prev));
		r = 0;
	}
	rows.after = comps.after = last = anchor;
	/* Merge the two id-ordered tables back into the one chain, whose ids
	 * are consecutive: a gap (a link deleted from either table) is
	 * reported as the link after it. */
	while (r == 0 && !bad) {
		int64_t rid, cid, id;
		const uint8_t *link_prev, *link_hash;

		if ((r = audit__walk_peek(st, &rows, &rid)) != 0 ||
		    (r = audit__walk_peek(st, &comps, &cid)) != 0)
			break;
		if (rid == 0 && cid == 0)
			break;
		if (rid != 0 && (cid == 0 || rid < cid)) {
			const struct store_audit_row *x = &rows.rows[rows.i++];

			audit_row_hash(x, h);
			id = x->id;
			link_prev = x->prev_hash;
			link_hash = x->row_hash;
		} else {
			const struct store_audit_completion *x = &comps.comps[comps.i++];

			audit_completion_hash(x, h);
			id = x->id;
			link_prev = x->prev_hash;
			link_hash = x->row_hash;
			/* Its request may be pruned (request_id <= anchor): the
			 * completion's own hash still covers request_id. */
			if (x->request_id < 1 || x->request_id >= x->id)
				bad = x->id;
		}
		if (id != last + 1 || sodium_memcmp(link_prev, prev, sizeof(prev)) != 0 ||
		    sodium_memcmp(link_hash, h, sizeof(h)) != 0)
			bad = id;
		memcpy(prev, link_hash, sizeof(prev));
		last = id;
		checked++;
	}
	free(rows.rows);
	free(comps.comps);
	store_rollback(st);
	if (r != 0)
		return r;
	ret->checked = checked;
	ret->pruned = (uint64_t)anchor;
	ret->bad_id = bad;
	memcpy(ret->head, prev, sizeof(prev));
	return bad ? -EBADMSG : 0;
}

int audit_verify(struct store *st, int64_t *ret_bad_id, uint64_t *ret_checked,
		 uint8_t ret_head[STORE_AUDIT_HASH_BYTES])
{
	struct audit_verify_result v;
	int r;

	if (!ret_bad_id)
		return -EINVAL;
	r = audit_verify_chain(st, &v);
	if (r != 0 && r != -EBADMSG)
		return r;
	if (ret_checked)
		*ret_checked = v.checked;
	if (r == -EBADMSG) {
		*ret_bad_id = v.bad_id;
		return r;
	}
	if (ret_head)
		memcpy(ret_head, v.head, sizeof(v.head));
	return 0;
}
