#include "trust.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"

/* Debian/Ubuntu/Alpine, Fedora/RHEL, then the BSD-style name. */
static const char *const system_bundles[] = {
	TRUST_SYSTEM_BUNDLE,
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/cert.pem",
};

/* Reads a whole regular file of at most TRUST_SYSTEM_BUNDLE_MAX bytes. */
static int read_bounded(const char *path, char **ret_data, size_t *ret_len)
{
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = fstat(fd, &st) < 0 ? -errno : 0;
	if (r == 0 && !S_ISREG(st.st_mode))
		r = -EINVAL;
	if (r == 0 && (uint64_t)st.st_size > TRUST_SYSTEM_BUNDLE_MAX)
		r = -EFBIG;
	/* +1: a file that grows while we read is cut at its stat size */
	if (r == 0 && !(data = malloc((size_t)st.st_size + 1)))
		r = -ENOMEM;
	while (r == 0 && len < (size_t)st.st_size) {
		ssize_t n = read(fd, data + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (r < 0) {
		free(data);
		return r;
	}
	data[len] = '\0';
	*ret_data = data;
	*ret_len = len;
	return 0;
}

static bool holds_pem(const char *bundle, size_t len, const char *pem)
{
	return len > 0 && memmem(bundle, len, pem, strlen(pem)) != NULL;
}

static const char *find_system_bundle(void)
{
	for (size_t i = 0; i < sizeof(system_bundles) / sizeof(system_bundles[0]); i++)
		if (access(system_bundles[i], R_OK) == 0)
			return system_bundles[i];
	return NULL;
}

/* sys (may be empty), a newline if sys lacks one, the CA, a final newline. */
static int write_bundle(const char *path, const char *sys, size_t sys_len, const char *ca_pem)
{
	struct atomic_file f;
	size_t ca_len = strlen(ca_pem);
	int r;

	if ((r = atomic_file_open(path, &f)) < 0)
		return r;
	if ((r = atomic_file_append(&f, sys, sys_len)) < 0 ||
	    (sys_len > 0 && sys[sys_len - 1] != '\n' && (r = atomic_file_append(&f, "\n", 1)) < 0) ||
	    (!holds_pem(sys, sys_len, ca_pem) && (r = atomic_file_append(&f, ca_pem, ca_len)) < 0) ||
	    (ca_len > 0 && ca_pem[ca_len - 1] != '\n' && (r = atomic_file_append(&f, "\n", 1)) < 0)) {
		atomic_file_abort(&f);
		return r;
	}
	return atomic_file_commit(&f, 0644);
}

static int write_ca(const char *path, const char *ca_pem)
{
	return write_bundle(path, "", 0, ca_pem);
}

int trust_write_runtime(const char *runtime_dir, const char *ca_pem, const char *system_bundle,
			char **ret_bundle_path, char **ret_ca_path)
{
	char *bundle_path = NULL, *ca_path = NULL, *sys = NULL;
	size_t sys_len = 0;
	int r = -ENOMEM;

	if (asprintf(&bundle_path, "%s/%s", runtime_dir, TRUST_BUNDLE_FILE) < 0) {
		bundle_path = NULL;
		goto out;
	}
	if (asprintf(&ca_path, "%s/%s", runtime_dir, TRUST_CA_FILE) < 0) {
		ca_path = NULL;
		goto out;
	}
	if (!system_bundle)
		system_bundle = find_system_bundle();
	if (system_bundle && (r = read_bounded(system_bundle, &sys, &sys_len)) < 0)
		goto out;
	if ((r = write_ca(ca_path, ca_pem)) < 0 ||
	    (r = write_bundle(bundle_path, sys ? sys : "", sys_len, ca_pem)) < 0)
		goto out;
	*ret_bundle_path = bundle_path;
	*ret_ca_path = ca_path;
	bundle_path = ca_path = NULL;
	r = 0;
out:
	free(sys);
	free(bundle_path);
	free(ca_path);
	return r;
}

int trust_append_system(const char *system_bundle, const char *ca_pem)
{
	char *sys = NULL;
	size_t sys_len = 0, ca_len = strlen(ca_pem);
	int fd, r;

	if ((r = read_bounded(system_bundle, &sys, &sys_len)) < 0)
		return r;
	if (holds_pem(sys, sys_len, ca_pem)) {
		free(sys);
		return 1;
	}
	fd = open(system_bundle, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if ((sys_len > 0 && sys[sys_len - 1] != '\n' && (r = atomic_file_write_all(fd, "\n", 1)) < 0) ||
	    (r = atomic_file_write_all(fd, ca_pem, ca_len)) < 0 ||
	    (ca_len > 0 && ca_pem[ca_len - 1] != '\n' && (r = atomic_file_write_all(fd, "\n", 1)) < 0)) {
		close(fd);
		goto out;
	}
	r = close(fd) < 0 ? -errno : 0;
out:
	free(sys);
	return r;
}
