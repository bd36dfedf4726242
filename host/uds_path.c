/* uds_path — see uds_path.h. */
#include "uds_path.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int uds_path_probe(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int r;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 || errno == EAGAIN ||
	    errno == EINPROGRESS)
		r = 1;
	else if (errno == ECONNREFUSED || errno == ENOENT)
		r = 0;
	else
		r = -errno;
	close(fd);
	return r;
}

int uds_path_clear(const struct sockaddr_un *sun, bool *ret_removed, const char **ret_why)
{
	struct stat st;
	int r;

	if (lstat(sun->sun_path, &st) < 0) {
		if (errno == ENOENT) {
			*ret_removed = false;
			return 0;
		}
		*ret_why = "cannot be examined";
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		*ret_why = "exists and is not a socket; refusing to replace it";
		return -EEXIST;
	}
	if ((r = uds_path_probe(sun)) != 0) {
		*ret_why = r > 0 ? "is in use by another process" : "cannot be probed";
		return r > 0 ? -EADDRINUSE : r;
	}
	if (unlink(sun->sun_path) < 0 && errno != ENOENT) {
		*ret_why = "is a stale socket that cannot be removed";
		return -errno;
	}
	*ret_removed = true;
	return 0;
}
