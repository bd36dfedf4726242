#include "ctl_value.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* Room for the value, a CRLF to strip and one byte that proves "too long". */
#define CV_BUF_SIZE (CTL_VALUE_MAX + 3u)

__attribute__((format(printf, 4, 5)))
static int cv_fail(char *err, size_t err_size, int r, const char *fmt, ...)
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

/* RFC 3629 §4: no overlongs, no surrogates, nothing above U+10FFFF. */
static bool cv_is_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t need;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, cp = c & 0x1f, min = 0x80;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, cp = c & 0x0f, min = 0x800;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, cp = c & 0x07, min = 0x10000;
		else
			return false;
		if (need > n - i - 1)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Terminal: echo off for one line, restored on every way out          */

static struct termios cv_saved_termios;
static int cv_tty_fd = -1;

static void cv_on_signal(int sig)
{
	/* tcsetattr, signal and raise are async-signal-safe. */
	if (cv_tty_fd >= 0)
		tcsetattr(cv_tty_fd, TCSAFLUSH, &cv_saved_termios);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Not SIGTSTP: a job-control shell saves the terminal modes of a stopped
 * job and puts them back on fg, so echo stays off while we read. */
static const int cv_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
#define CV_NSIG (sizeof(cv_signals) / sizeof(cv_signals[0]))

static int cv_echo_off(int fd, struct sigaction old[CV_NSIG])
{
	struct sigaction sa = { .sa_handler = cv_on_signal };
	struct termios t;

	if (tcgetattr(fd, &cv_saved_termios) < 0)
		return -errno;
	cv_tty_fd = fd;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < CV_NSIG; i++)
		sigaction(cv_signals[i], &sa, &old[i]);
	t = cv_saved_termios;
	t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	t.c_lflag |= ICANON;
	if (tcsetattr(fd, TCSAFLUSH, &t) < 0) {
		int r = -errno;

		for (size_t i = 0; i < CV_NSIG; i++)
			sigaction(cv_signals[i], &old[i], NULL);
		cv_tty_fd = -1;
		return r;
	}
	return 0;
}

static void cv_echo_restore(int fd, const struct sigaction old[CV_NSIG])
{
	tcsetattr(fd, TCSAFLUSH, &cv_saved_termios);
	cv_tty_fd = -1;
	for (size_t i = 0; i < CV_NSIG; i++)
		sigaction(cv_signals[i], &old[i], NULL);
}

static void cv_write_stderr(const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

/* Read until EOF (or, on a terminal, the end of the line). */
static int cv_read_all(int fd, bool line, unsigned char *buf, size_t cap, size_t *ret_len)
{
	size_t len = 0;

	while (len < cap) {
		ssize_t n = read(fd, buf + len, cap - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
		if (line && buf[len - 1] == '\n')
			break;
	}
	*ret_len = len;
	return 0;
}

static void cv_sanitize(const char *in, char *out, size_t size)
{
	size_t i = 0;

	for (; in[i] && i + 1 < size; i++)
		out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
	out[i] = '\0';
}

int ctl_value_read_fd(int fd, const char *what, struct ctl_value *ret_value, char *err,
		      size_t err_size)
{
	struct sigaction old[CV_NSIG];
	bool tty = isatty(fd) == 1;
	unsigned char *buf;
	size_t len = 0;
	int r;

	if (sodium_init() < 0)
		return cv_fail(err, err_size, -EIO, "libsodium failed to initialise");
	buf = sodium_malloc(CV_BUF_SIZE + 1);
	if (!buf)
		return cv_fail(err, err_size, -ENOMEM, "out of memory");
	if (tty) {
		char name[130], prompt[200];

		cv_sanitize(what ? what : "", name, sizeof(name));
		if ((r = cv_echo_off(fd, old)) < 0) {
			cv_fail(err, err_size, r, "cannot turn terminal echo off: %m");
			goto fail;
		}
		snprintf(prompt, sizeof(prompt), "Value for secret %s (input is hidden): ", name);
		cv_write_stderr(prompt);
		r = cv_read_all(fd, true, buf, CV_BUF_SIZE, &len);
		cv_echo_restore(fd, old);
		cv_write_stderr("\n");
	} else {
		r = cv_read_all(fd, false, buf, CV_BUF_SIZE, &len);
	}
	if (r < 0) {
		cv_fail(err, err_size, r, "cannot read the secret value: %m");
		goto fail;
	}
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len > CTL_VALUE_MAX) {
		r = cv_fail(err, err_size, -EFBIG, "the secret value is over %u bytes", CTL_VALUE_MAX);
		goto fail;
	}
	if (len == 0) {
		r = cv_fail(err, err_size, -ENODATA, "refusing an empty secret value");
		goto fail;
	}
	if (!cv_is_utf8(buf, len)) {
		r = cv_fail(err, err_size, -EILSEQ,
			    "the secret value is not valid UTF-8 (the API carries it in a JSON string)");
		goto fail;
	}
	buf[len] = '\0';
	ret_value->bytes = buf;
	ret_value->len = len;
	return 0;
fail:
	sodium_free(buf);
	return r;
}

int ctl_value_read(const char *path, const char *name, struct ctl_value *ret_value, char *err,
		   size_t err_size)
{
	int fd, r;

	if (!path || strcmp(path, "-") == 0)
		return ctl_value_read_fd(STDIN_FILENO, name, ret_value, err, err_size);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return cv_fail(err, err_size, -errno, "cannot open %.200s: %m", path);
	r = ctl_value_read_fd(fd, name, ret_value, err, err_size);
	close(fd);
	return r;
}

void ctl_value_free(struct ctl_value *v)
{
	if (!v)
		return;
	sodium_free(v->bytes); /* wipes; NULL is a no-op */
	v->bytes = NULL;
	v->len = 0;
}
