/*
 * master_key — the 32-byte root key, kept in a file apart from state.db (M7).
 *
 * The file holds exactly MASTER_KEY_BYTES random bytes and nothing else.  It
 * is created on first run (0600, O_EXCL, fsync'd file and directory) and on
 * every later run refused unless it is a regular file (not a symlink) with
 * permissions no looser than 0600 and exactly 32 bytes long.  Error
 * messages name the path and the problem ("master key /x/master.key is mode
 * 0644; must not be readable by group or others (chmod 600)").
 *
 * In memory the key lives in sodium_malloc'd, read-only pages and is never
 * handed out: callers get purpose-specific subkeys derived with crypto_kdf,
 * so the value cipher, CA keys and OAuth tokens never share a key and a
 * subkey leak does not expose the root.
 *
 * Ownership: master_key_free() wipes and frees the key; each subkey from
 * master_key_derive() is released with master_key_subkey_free().
 * Threads: a loaded key is immutable; deriving from it concurrently is safe.
 * Blocking: file I/O and fsync; call from a worker, never the event loop.
 * Errors: 0 (or 1, see load_or_create) / negative errno; err (if not NULL)
 * receives a one-line reason on failure.
 */
#ifndef MIOSA_MASTER_KEY_H
#define MIOSA_MASTER_KEY_H

#include <stddef.h>

#define MASTER_KEY_BYTES 32
#define MASTER_KEY_SUBKEY_BYTES 32

/*
 * Subkey ids.  Persisted implicitly (data encrypted under a subkey needs the
 * same id forever): append, never renumber.
 */
enum master_key_purpose {
	MASTER_KEY_PURPOSE_SECRET_VALUES = 1, /* vault: secret values */
	MASTER_KEY_PURPOSE_CA_KEYS = 2,       /* sandbox CA private keys */
	MASTER_KEY_PURPOSE_OAUTH_TOKENS = 3,  /* OAuth access/refresh tokens */
	MASTER_KEY_PURPOSE_KEY_CHECK = 4,     /* vault: "is this the right key for state.db" */
	MASTER_KEY_PURPOSE_API_KEYS = 5,      /* tenancy: keyed BLAKE2b of control API keys */
	MASTER_KEY_PURPOSE__LAST = MASTER_KEY_PURPOSE_API_KEYS /* keep equal to the last one */
};

struct master_key;

/* Load an existing key file; -ENOENT if it does not exist. */
__attribute__((warn_unused_result))
int master_key_load(const char *path, struct master_key **ret_key,
		    char *err, size_t err_size);

/*
 * Create a new key file; -EEXIST if anything exists at path.  The parent
 * directory must exist.  The file appears atomically, complete and synced
 * (written under a temporary name, then hard-linked into place), so a crash
 * never leaves a short key behind.
 */
__attribute__((warn_unused_result))
int master_key_create(const char *path, struct master_key **ret_key,
		      char *err, size_t err_size);

/* Load, or create on first run.  Returns 1 if it created the file, else 0. */
__attribute__((warn_unused_result))
int master_key_load_or_create(const char *path, struct master_key **ret_key,
			      char *err, size_t err_size);

/* Wipe and free; NULL is a no-op. */
void master_key_free(struct master_key *key);

/*
 * Derive the subkey for a purpose: MASTER_KEY_SUBKEY_BYTES in sodium_malloc'd
 * read-only memory.  0 or -EINVAL (unknown purpose) / -ENOMEM.
 */
__attribute__((warn_unused_result))
int master_key_derive(const struct master_key *key, enum master_key_purpose purpose,
		      unsigned char **ret_subkey);

/* Wipe and free a subkey; NULL is a no-op. */
void master_key_subkey_free(unsigned char *subkey);

#endif
