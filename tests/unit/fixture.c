/* The unit suites' shared scratch state; the contract is in fixture.h. */
#define _XOPEN_SOURCE 700
#include "fixture.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "master_key.h"
#include "store.h"

int fixture_tmpdir(const char *name, char ret_dir[FIXTURE_DIR_MAX])
{
	char dir[FIXTURE_DIR_MAX];
	int n = snprintf(dir, sizeof(dir), "/tmp/miosa-%s-XXXXXX", name);

	ret_dir[0] = '\0';
	if (n < 0 || (size_t)n >= sizeof(dir))
		return -ENAMETOOLONG;
	if (!mkdtemp(dir))
		return -errno;
	memcpy(ret_dir, dir, sizeof(dir));
	return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p) == 0 ? 0 : -errno;
}

int fixture_rmtree(const char *dir)
{
	int r;

	if (!dir || !dir[0])
		return 0;
	/* nftw() stops at, and returns, the first non-zero from rm_entry. */
	r = nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return r == -1 ? -errno : r;
}

int fixture_master_key(const char *root, char *ret_path, size_t path_size,
		       struct master_key **ret_key, char *err, size_t err_size)
{
	char path[PATH_MAX];
	struct master_key *key = NULL;
	int n = snprintf(path, sizeof(path), "%s/master.key", root);
	int r;

	if (n < 0 || (size_t)n >= sizeof(path) || (size_t)n >= path_size) {
		snprintf(err, err_size, "%s/master.key: path too long", root);
		return -1;
	}
	/* 1 = created: a key already there would mean a stale directory. */
	r = master_key_load_or_create(path, &key, err, err_size);
	if (r != 1) {
		if (r == 0)
			snprintf(err, err_size, "%s: already exists", path);
		master_key_free(key);
		return -1;
	}
	memcpy(ret_path, path, (size_t)n + 1);
	*ret_key = key;
	return 0;
}

int fixture_add_sandbox(struct store *st, const char *tenant_id, const char *id,
			int64_t created_at_us)
{
	struct tenancy_sandbox *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->tenant_id, sizeof(s->tenant_id), "%s", tenant_id);
	s->transport.kind = TENANCY_TRANSPORT_NONE;
	s->created_at_us = created_at_us;
	r = store_sandbox_insert(st, s);
	free(s);
	return r;
}

int fixture_store_seed(const char *state_dir, const char *tenant_id, const char *name,
		       int64_t created_at_us, const char *const *sandbox_ids,
		       char *err, size_t err_size)
{
	struct tenancy_tenant t = { .created_at_us = created_at_us };
	struct store *st = NULL;
	int r = 0;

	snprintf(t.id, sizeof(t.id), "%s", tenant_id);
	snprintf(t.name, sizeof(t.name), "%s", name);
	if (store_open(state_dir, &st, err, err_size) != 0)
		return -1;
	if (store_tenant_insert(st, &t) != 0)
		r = -1;
	for (size_t i = 0; r == 0 && sandbox_ids[i]; i++)
		if (fixture_add_sandbox(st, tenant_id, sandbox_ids[i], created_at_us) != 0)
			r = -1;
	if (r != 0)
		snprintf(err, err_size, "seeding %s: %s", state_dir, store_errmsg(st));
	store_close(st);
	return r;
}
