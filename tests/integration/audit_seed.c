/*
 * audit_seed — writes audit rows into a broker's state dir for the
 * integration tests (network_audit.sh) until the data path writes them
 * itself.  It goes through the real writer (audit_writer_open +
 * audit_submit_wait), so ids, the hash chain and group commit are the
 * module's; WAL lets it run next to a live broker.
 *
 *   audit_seed STATE_DIR ROW...
 *
 * ROW = TENANT,SANDBOX,HOST,PORT,SCHEME,STATUS,ACTION,SWAPPED,EXT_USER,AGE_S[,DONE]
 * with "-" for an empty field; SWAPPED is names joined by ';'; AGE_S puts
 * the row that many seconds in the past.  DONE = STATUS:UP:DOWN:DURATION_US
 * also commits a completion of the row (audit_complete(), waited for), as
 * the data path does once a response was relayed.  Prints each committed
 * row id.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"

#define SEED_FIELDS 11

static int seed_copy(char *dst, size_t size, const char *src)
{
	if (strcmp(src, "-") == 0)
		src = "";
	if (strlen(src) >= size)
		return -EINVAL;
	memcpy(dst, src, strlen(src) + 1);
	return 0;
}

static int seed_parse(char *spec, struct store_audit_row *row,
		      struct store_audit_completion *done, bool *ret_done)
{
	char *f[SEED_FIELDS], *save = NULL, *tok, *name;
	size_t n = 0;
	struct timespec ts;

	for (tok = strtok_r(spec, ",", &save); tok && n < SEED_FIELDS;
	     tok = strtok_r(NULL, ",", &save))
		f[n++] = tok;
	if (n < SEED_FIELDS - 1 || tok)
		return -EINVAL;
	*ret_done = n == SEED_FIELDS;
	if (*ret_done) {
		long long st, up, down, dur;
		char tail;

		if (sscanf(f[10], "%lld:%lld:%lld:%lld%c", &st, &up, &down, &dur, &tail) != 4)
			return -EINVAL;
		memset(done, 0, sizeof(*done));
		done->status = (uint16_t)st;
		done->bytes_up = up;
		done->bytes_down = down;
		done->duration_us = dur;
	}
	memset(row, 0, sizeof(*row));
	clock_gettime(CLOCK_REALTIME, &ts);
	row->time_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 -
		       (int64_t)atoll(f[9]) * 1000000;
	if (seed_copy(row->tenant_id, sizeof(row->tenant_id), f[0]) ||
	    seed_copy(row->sandbox_id, sizeof(row->sandbox_id), f[1]) ||
	    seed_copy(row->host, sizeof(row->host), f[2]) ||
	    seed_copy(row->external_user_id, sizeof(row->external_user_id), f[8]))
		return -EINVAL;
	row->port = (uint16_t)atoi(f[3]);
	row->scheme = strcmp(f[4], "tcp") == 0	  ? STORE_AUDIT_TCP
		      : strcmp(f[4], "http") == 0 ? STORE_AUDIT_HTTP
						  : STORE_AUDIT_HTTPS;
	if (row->scheme != STORE_AUDIT_TCP) {
		strcpy(row->method, "GET");
		strcpy(row->path, "/v1/models");
	}
	row->status = (uint16_t)atoi(f[5]);
	if (*ret_done)
		done->time_us = row->time_us + done->duration_us;
	row->action = strcmp(f[6], "deny") == 0    ? STORE_AUDIT_DENY
		      : strcmp(f[6], "error") == 0 ? STORE_AUDIT_ERROR
						   : STORE_AUDIT_ALLOW;
	if (row->action == STORE_AUDIT_DENY)
		strcpy(row->reason, "host-not-allowed");
	if (strcmp(f[7], "-") != 0)
		for (name = strtok_r(f[7], ";", &save); name && row->n_swapped < STORE_AUDIT_LIST_MAX;
		     name = strtok_r(NULL, ";", &save))
			if (seed_copy(row->swapped[row->n_swapped++], sizeof(row->swapped[0]), name))
				return -EINVAL;
	row->n_rules = 1;
	strcpy(row->rules[0], row->action == STORE_AUDIT_ALLOW ? "observe-mode"
							       : "deny:host-not-allowed");
	return 0;
}

struct seed_ack {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int status;
};

static void seed_ack_fn(void *userdata, int status, int64_t id)
{
	struct seed_ack *a = userdata;

	(void)id;
	pthread_mutex_lock(&a->mu);
	a->done = true;
	a->status = status;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* audit_complete() never waits; a seeder that exits must. */
static int seed_complete(struct audit_writer *w, const struct store_audit_completion *c)
{
	struct seed_ack a = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 };
	int r;

	if ((r = audit_complete(w, c, seed_ack_fn, &a)) != 0)
		return r;
	pthread_mutex_lock(&a.mu);
	while (!a.done)
		pthread_cond_wait(&a.cv, &a.mu);
	pthread_mutex_unlock(&a.mu);
	return a.status;
}

int main(int argc, char **argv)
{
	struct audit_writer *w = NULL;
	struct store_audit_row *row;
	char err[256] = "";
	int r, ex = 1;

	if (argc < 3) {
		fprintf(stderr, "usage: audit_seed STATE_DIR ROW...\n");
		return 2;
	}
	if (!(row = malloc(sizeof(*row))))
		return 1;
	if ((r = audit_writer_open(argv[1], NULL, &w, err, sizeof(err))) != 0) {
		fprintf(stderr, "audit_seed: %s\n", err);
		goto out;
	}
	for (int i = 2; i < argc; i++) {
		struct store_audit_completion done;
		bool has_done = false;
		int64_t id = 0;

		if (seed_parse(argv[i], row, &done, &has_done) != 0) {
			fprintf(stderr, "audit_seed: row %d is malformed\n", i - 1);
			goto out;
		}
		if ((r = audit_submit_wait_flags(w, row, has_done ? AUDIT_SUBMIT_AWAIT_COMPLETION : 0,
						 &id)) != 0) {
			fprintf(stderr, "audit_seed: row %d: %s\n", i - 1, strerror(-r));
			goto out;
		}
		done.request_id = id;
		if (has_done && (r = seed_complete(w, &done)) != 0) {
			fprintf(stderr, "audit_seed: completion of row %d: %s\n", i - 1, strerror(-r));
			goto out;
		}
		printf("%lld\n", (long long)id);
	}
	ex = 0;
out:
	audit_writer_close(w);
	free(row);
	return ex;
}
