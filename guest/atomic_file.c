#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int atomic_file_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int atomic_file_open(const char *path, struct atomic_file *ret_file)
{
	struct atomic_file f = { .fd = -1 };
	int r;

	f.path = strdup(path);
	if (!f.path || asprintf(&f.tmp_path, "%s.XXXXXX", path) < 0) {
		free(f.path);
		return -ENOMEM;
	}
	f.fd = mkostemp(f.tmp_path, O_CLOEXEC);
	if (f.fd < 0) {
		r = -errno;
		free(f.tmp_path);
		free(f.path);
		return r;
	}
	*ret_file = f;
	return 0;
}

int atomic_file_append(struct atomic_file *f, const void *data, size_t len)
{
	return atomic_file_write_all(f->fd, data, len);
}

void atomic_file_abort(struct atomic_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->tmp_path)
		unlink(f->tmp_path);
	free(f->tmp_path);
	free(f->path);
	*f = (struct atomic_file){ .fd = -1 };
}

int atomic_file_commit(struct atomic_file *f, mode_t mode)
{
	int r = 0;

	if (fchmod(f->fd, mode) < 0)
		r = -errno;
	if (close(f->fd) < 0 && r == 0)
		r = -errno;
	f->fd = -1;
	if (r == 0 && rename(f->tmp_path, f->path) < 0)
		r = -errno;
	if (r < 0) {
		atomic_file_abort(f);
		return r;
	}
	free(f->tmp_path);
	free(f->path);
	*f = (struct atomic_file){ .fd = -1 };
	return 0;
}

int atomic_file_write(const char *path, const void *data, size_t len, mode_t mode)
{
	struct atomic_file f;
	int r;

	if ((r = atomic_file_open(path, &f)) < 0)
		return r;
	if ((r = atomic_file_append(&f, data, len)) < 0) {
		atomic_file_abort(&f);
		return r;
	}
	return atomic_file_commit(&f, mode);
}
