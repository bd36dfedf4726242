/*
 * policy_tool — sets a sandbox's network policy straight through policy.h
 * (a second SQLite connection), for a broker that is NOT running: a running
 * broker caches each sandbox's policy and keeps recent observed hosts in
 * memory (policy_tally.h), so it neither sees a change made here nor shows
 * this tool its latest observations.  Against a running broker use the
 * control API (miosactl network ...).
 *
 * usage: policy_tool STATE_DIR SANDBOX lockdown|observe
 *        policy_tool STATE_DIR SANDBOX allow PATTERN
 *        policy_tool STATE_DIR SANDBOX pending   (prints "host port count")
 */
#include <stdio.h>
#include <string.h>

#include "policy.h"

int main(int argc, char **argv)
{
	struct policy_status st;
	struct policy *p;
	char err[256] = "";
	int r;

	if (argc < 4) {
		fprintf(stderr, "usage: policy_tool STATE_DIR SANDBOX lockdown|observe|allow P|pending\n");
		return 2;
	}
	if ((r = policy_open(argv[1], &p, err, sizeof(err))) < 0) {
		fprintf(stderr, "policy_tool: %s\n", err);
		return 1;
	}
	if (strcmp(argv[3], "lockdown") == 0)
		r = policy_lockdown(p, argv[2]);
	else if (strcmp(argv[3], "observe") == 0)
		r = policy_observe(p, argv[2]);
	else if (strcmp(argv[3], "allow") == 0 && argc == 5)
		r = policy_allow(p, argv[2], argv[4], 0);
	else if (strcmp(argv[3], "pending") == 0) {
		if ((r = policy_status(p, argv[2], &st)) == 0) {
			for (size_t i = 0; i < st.n_pending; i++)
				printf("%s %u %lld\n", st.pending[i].host, st.pending[i].port,
				       (long long)st.pending[i].count);
			policy_status_clear(&st);
		}
	} else
		r = -22;
	if (r < 0)
		fprintf(stderr, "policy_tool: %s\n", policy_errmsg(p));
	policy_close(p);
	return r < 0 ? 1 : 0;
}
