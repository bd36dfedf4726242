#include "kmod.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cursor.h"

static bool path_byte_ok(uint8_t b)
{
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
	       b == '.' || b == '_' || b == '-' || b == '+' || b == '/';
}

/* Every component between slashes is non-empty and neither "." nor "..";
 * a leading '/' (absolute path) is the only empty component allowed. */
static bool components_ok(const char *p, size_t len)
{
	size_t start = p[0] == '/' ? 1 : 0;

	for (size_t i = start; i <= len; i++) {
		if (i < len && p[i] != '/')
			continue;
		size_t n = i - start;
		if (n == 0 || (n == 1 && p[start] == '.') ||
		    (n == 2 && p[start] == '.' && p[start + 1] == '.'))
			return false;
		start = i + 1;
	}
	return true;
}

static bool entry_ok(const char *p, size_t len)
{
	static const char suffix[] = ".ko";
	const size_t slen = sizeof(suffix) - 1;

	if (len == 0 || len > KMOD_PATH_MAX || len <= slen ||
	    memcmp(p + len - slen, suffix, slen) != 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!path_byte_ok((uint8_t)p[i]))
			return false;
	/* "dir/.ko" has an empty module name */
	if (p[len - slen - 1] == '/')
		return false;
	return components_ok(p, len);
}

static bool is_duplicate(const char *text, const struct kmod_order *o, const char *p, size_t len)
{
	for (size_t i = 0; i < o->count; i++)
		if (o->entry[i].len == len && memcmp(text + o->entry[i].off, p, len) == 0)
			return true;
	return false;
}

int kmod_order_parse(const char *text, size_t len, struct kmod_order *ret_order,
		     size_t *err_line)
{
	struct kmod_order o = { .count = 0 };
	struct cursor c;
	size_t line = 0;
	int r = 0;

	if (len > KMOD_ORDER_MAX) {
		r = -EFBIG;
		goto out;
	}
	cursor_init(&c, text, len);
	while (cursor_remaining(&c) > 0) {
		const char *p = (const char *)cursor_pos(&c);
		size_t n, skip;

		line++;
		if (cursor_find(&c, '\n', cursor_remaining(&c), &n) == 0) {
			skip = n + 1;
		} else {
			n = cursor_remaining(&c);
			skip = n;
		}
		if (cursor_skip(&c, skip) < 0) { /* cannot happen: skip <= remaining */
			r = -EINVAL;
			goto out;
		}
		if (n == 0 || p[0] == '#')
			continue;
		if (!entry_ok(p, n) || is_duplicate(text, &o, p, n)) {
			r = -EINVAL;
			goto out;
		}
		if (o.count == KMOD_MAX_MODULES) {
			r = -E2BIG;
			goto out;
		}
		o.entry[o.count++] = (struct kmod_entry){ .off = (size_t)(p - text), .len = n };
	}
out:
	if (r < 0) {
		if (err_line)
			*err_line = line;
		return r;
	}
	*ret_order = o;
	return 0;
}

int kmod_order_read(const char *path, char *buf, size_t cap, size_t *ret_len)
{
	size_t len = 0;
	int fd, r = 0;

	if (cap < KMOD_ORDER_MAX + 1)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* read one byte past the cap to tell a file at the cap from a longer one */
	while (len < KMOD_ORDER_MAX + 1) {
		ssize_t n = read(fd, buf + len, KMOD_ORDER_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (r == 0 && len > KMOD_ORDER_MAX)
		r = -EFBIG;
	if (r < 0)
		return r;
	*ret_len = len;
	return 0;
}

int kmod_load(int dirfd, const char *path)
{
	int fd, r = 0;

	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* glibc has no wrapper; "" = no module parameters, 0 = no flags */
	if (syscall(SYS_finit_module, fd, "", 0) < 0)
		r = errno == EEXIST ? 1 : -errno;
	close(fd);
	return r;
}
