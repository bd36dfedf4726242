#include "master_key.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* crypto_kdf context: fixed forever, exactly crypto_kdf_CONTEXTBYTES long. */
static const char mk_kdf_context[crypto_kdf_CONTEXTBYTES + 1] = "miosa-k1";

_Static_assert(MASTER_KEY_BYTES == crypto_kdf_KEYBYTES, "master key is a crypto_kdf key");
_Static_assert(MASTER_KEY_SUBKEY_BYTES >= crypto_kdf_BYTES_MIN &&
	       MASTER_KEY_SUBKEY_BYTES <= crypto_kdf_BYTES_MAX, "subkey size");

struct master_key {
	unsigned char *bytes; /* sodium_malloc'd, read-only after load */
};

/* Format err and return r; %m in fmt describes -r. */
__attribute__((format(printf, 4, 5)))
static int mk_fail(char *err, size_t err_size, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_size > 0) {
		errno = -r;
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return r;
}

static int mk_sodium(char *err, size_t err_size)
{
	if (sodium_init() < 0)
		return mk_fail(err, err_size, -EIO, "libsodium failed to initialise");
	return 0;
}

static int mk_check(int fd, const char *path, char *err, size_t err_size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return mk_fail(err, err_size, -errno, "master key %s: cannot stat: %m", path);
	if (!S_ISREG(st.st_mode))
		return mk_fail(err, err_size, -EINVAL,
			       "master key %s is not a regular file", path);
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return mk_fail(err, err_size, -EPERM,
			       "master key %s is mode %04o; must not be %s by group or others (chmod 600)",
			       path, (unsigned)(st.st_mode & 07777),
			       (st.st_mode & (S_IRGRP | S_IROTH)) ? "readable" : "accessible");
	if (st.st_size != MASTER_KEY_BYTES)
		return mk_fail(err, err_size, -EINVAL,
			       "master key %s must be exactly %d bytes, found %jd",
			       path, MASTER_KEY_BYTES, (intmax_t)st.st_size);
	return 0;
}

static int mk_read_exact(int fd, unsigned char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(fd, buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* shrank since fstat */
		off += (size_t)n;
	}
	return 0;
}

static int mk_write_exact(int fd, const unsigned char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

/* Wrap sodium_malloc'd key bytes (made read-only here) in a handle. */
static int mk_wrap(unsigned char *bytes, struct master_key **ret_key)
{
	struct master_key *key;

	if (sodium_mprotect_readonly(bytes) != 0)
		return -ENOMEM;
	key = calloc(1, sizeof(*key));
	if (!key)
		return -ENOMEM;
	key->bytes = bytes;
	*ret_key = key;
	return 0;
}

static int mk_open_error(const char *path, int r, char *err, size_t err_size)
{
	if (r == -ENOENT)
		return mk_fail(err, err_size, r, "master key %s does not exist", path);
	if (r == -ELOOP)
		return mk_fail(err, err_size, r,
			       "master key %s is a symlink; refusing to follow it", path);
	return mk_fail(err, err_size, r, "master key %s is unreadable: %m", path);
}

int master_key_load(const char *path, struct master_key **ret_key,
		    char *err, size_t err_size)
{
	unsigned char *bytes = NULL;
	int fd = -1, r;

	if (!path || !ret_key)
		return mk_fail(err, err_size, -EINVAL, "master key: no path given");
	if ((r = mk_sodium(err, err_size)) != 0)
		return r;
	/* O_NONBLOCK: a FIFO planted at the path must not hang the open. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = mk_open_error(path, -errno, err, err_size);
		goto out;
	}
	if ((r = mk_check(fd, path, err, err_size)) != 0)
		goto out;
	bytes = sodium_malloc(MASTER_KEY_BYTES);
	if (!bytes) {
		r = mk_fail(err, err_size, -ENOMEM, "master key %s: out of secure memory", path);
		goto out;
	}
	if ((r = mk_read_exact(fd, bytes, MASTER_KEY_BYTES)) != 0) {
		r = mk_fail(err, err_size, r, "master key %s is unreadable: %m", path);
		goto out;
	}
	if ((r = mk_wrap(bytes, ret_key)) != 0) {
		r = mk_fail(err, err_size, r, "master key %s: out of memory", path);
		goto out;
	}
	bytes = NULL;
out:
	sodium_free(bytes);
	if (fd >= 0)
		close(fd);
	return r;
}

/* dirname() without modifying path or relying on static storage. */
static int mk_dirname(const char *path, char ret_dir[PATH_MAX])
{
	const char *slash = strrchr(path, '/');
	size_t len;

	if (!slash) {
		strcpy(ret_dir, ".");
		return 0;
	}
	len = slash == path ? 1 : (size_t)(slash - path);
	if (len >= PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(ret_dir, path, len);
	ret_dir[len] = '\0';
	return 0;
}

static int mk_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Write the key to a fresh temporary file beside path, synced; removed on failure. */
static int mk_write_tmp(const char *tmp, const unsigned char *bytes)
{
	int fd, r = 0;

	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* umask may have cleared the owner's read bit; the loader needs it. */
	if (fchmod(fd, 0600) < 0)
		r = -errno;
	if (r == 0)
		r = mk_write_exact(fd, bytes, MASTER_KEY_BYTES);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r != 0)
		(void)unlink(tmp);
	return r;
}

static int mk_tmp_name(const char *path, char ret_tmp[PATH_MAX])
{
	unsigned char rnd[8];
	char hex[sizeof(rnd) * 2 + 1];
	int n;

	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	n = snprintf(ret_tmp, PATH_MAX, "%s.tmp-%s", path, hex);
	return (n < 0 || n >= PATH_MAX) ? -ENAMETOOLONG : 0;
}

/* Put key bytes at path: temp file, link(2) into place (never replaces), fsync dir. */
static int mk_install(const char *path, const unsigned char *bytes, char *err, size_t err_size)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	bool tmp_made = false;
	int r;

	if ((r = mk_tmp_name(path, tmp)) != 0 || (r = mk_dirname(path, dir)) != 0) {
		r = mk_fail(err, err_size, r, "master key %s: path too long", path);
		goto out;
	}
	if ((r = mk_write_tmp(tmp, bytes)) != 0) {
		r = mk_fail(err, err_size, r, "master key %s: cannot create %s: %m", path, tmp);
		goto out;
	}
	tmp_made = true;
	if (link(tmp, path) < 0) {
		r = -errno;
		r = mk_fail(err, err_size, r, r == -EEXIST ? "master key %s already exists"
				: "master key %s: cannot create: %m", path);
		goto out;
	}
	if ((r = mk_fsync_dir(dir)) != 0)
		r = mk_fail(err, err_size, r, "master key %s: cannot sync directory %s: %m",
			    path, dir);
out:
	if (tmp_made)
		(void)unlink(tmp); /* the name in place (if any) keeps the inode */
	return r;
}

int master_key_create(const char *path, struct master_key **ret_key,
		      char *err, size_t err_size)
{
	unsigned char *bytes = NULL;
	int r;

	if (!path || !ret_key)
		return mk_fail(err, err_size, -EINVAL, "master key: no path given");
	if ((r = mk_sodium(err, err_size)) != 0)
		return r;
	bytes = sodium_malloc(MASTER_KEY_BYTES);
	if (!bytes)
		return mk_fail(err, err_size, -ENOMEM, "master key %s: out of secure memory", path);
	randombytes_buf(bytes, MASTER_KEY_BYTES);
	if ((r = mk_install(path, bytes, err, err_size)) != 0)
		goto out;
	if ((r = mk_wrap(bytes, ret_key)) != 0) {
		r = mk_fail(err, err_size, r, "master key %s: out of memory", path);
		goto out;
	}
	bytes = NULL;
out:
	sodium_free(bytes);
	return r;
}

int master_key_load_or_create(const char *path, struct master_key **ret_key,
			      char *err, size_t err_size)
{
	int r = master_key_load(path, ret_key, err, err_size);

	if (r != -ENOENT)
		return r;
	r = master_key_create(path, ret_key, err, err_size);
	if (r == 0)
		return 1;
	if (r == -EEXIST) /* another process created it first: use theirs */
		return master_key_load(path, ret_key, err, err_size);
	return r;
}

void master_key_free(struct master_key *key)
{
	if (!key)
		return;
	sodium_free(key->bytes);
	free(key);
}

int master_key_derive(const struct master_key *key, enum master_key_purpose purpose,
		      unsigned char **ret_subkey)
{
	unsigned char *sub;

	if (!key || !ret_subkey || purpose < MASTER_KEY_PURPOSE_SECRET_VALUES ||
	    purpose > MASTER_KEY_PURPOSE__LAST)
		return -EINVAL;
	sub = sodium_malloc(MASTER_KEY_SUBKEY_BYTES);
	if (!sub)
		return -ENOMEM;
	if (crypto_kdf_derive_from_key(sub, MASTER_KEY_SUBKEY_BYTES, (uint64_t)purpose,
				       mk_kdf_context, key->bytes) != 0 ||
	    sodium_mprotect_readonly(sub) != 0) {
		sodium_free(sub);
		return -ENOMEM;
	}
	*ret_subkey = sub;
	return 0;
}

void master_key_subkey_free(unsigned char *subkey)
{
	sodium_free(subkey);
}
