/*
 * fixture.h — the scratch state the unit suites that touch disk share: a
 * private temporary directory, a fresh master key in it, and store rows
 * (one tenant, its sandboxes) for suites whose module needs them present.
 *
 * Contract:
 *  - fixture_tmpdir() makes a new 0700 directory "/tmp/miosa-<name>-XXXXXX"
 *    and writes its path to ret_dir (FIXTURE_DIR_MAX bytes); 0 on success,
 *    -errno on failure with ret_dir left an empty string.
 *  - fixture_rmtree() removes dir and everything below it, never following
 *    a symbolic link; an empty dir (setup failed before mkdtemp) is a no-op.
 *    0, or the -errno of the first entry it could not remove (it stops
 *    there).
 *  - fixture_master_key() creates "<root>/master.key" (which must not exist)
 *    and writes that path to ret_path and the loaded key to *ret_key, both
 *    only on success (0).  On failure, -1 with the reason in err.  The caller
 *    frees the key with master_key_free().
 *  - fixture_store_seed() opens the store under state_dir, inserts tenant
 *    tenant_id (named name) and one sandbox per id in the NULL-terminated
 *    sandbox_ids, all created at created_at_us, and closes it again; 0, or
 *    -1 with the reason in err.
 *  - fixture_add_sandbox() inserts one sandbox of tenant_id with no
 *    transport into an open store; store_sandbox_insert()'s return value.
 *
 * Nothing here asserts: setup functions return -1 and cmocka reports the
 * failed setup.  No global state.
 */
#ifndef MIOSA_TEST_FIXTURE_H
#define MIOSA_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#define FIXTURE_DIR_MAX 64

struct master_key;
struct store;

int fixture_tmpdir(const char *name, char ret_dir[FIXTURE_DIR_MAX]);
int fixture_rmtree(const char *dir);

int fixture_master_key(const char *root, char *ret_path, size_t path_size,
		       struct master_key **ret_key, char *err, size_t err_size);

int fixture_add_sandbox(struct store *st, const char *tenant_id, const char *id,
			int64_t created_at_us);
int fixture_store_seed(const char *state_dir, const char *tenant_id, const char *name,
		       int64_t created_at_us, const char *const *sandbox_ids,
		       char *err, size_t err_size);

#endif
