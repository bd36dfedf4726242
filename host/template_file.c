#include "template_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_pattern.h"
#include "template.pb-c.h"
#include "wire.h"

#define TF_MAGIC "\x89MPT\r\n\x1a\n"
#define TF_MAGIC_LEN 8u
#define TF_SUM_OFF 16u

typedef Miosa__TemplatePolicy TemplatePolicy;
typedef Miosa__TemplatePolicy__AllowEntry AllowEntry;

static int tf_fail(char *err, size_t err_size, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int tf_fail(char *err, size_t err_size, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_size > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return r;
}

static void put_u32be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_u32be(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* SHA-256 over the header's first 16 bytes and the payload. */
static void tf_checksum(const uint8_t *head, const uint8_t *payload, size_t len,
			uint8_t out[crypto_hash_sha256_BYTES])
{
	crypto_hash_sha256_state st;

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, head, TF_SUM_OFF);
	crypto_hash_sha256_update(&st, payload, len);
	crypto_hash_sha256_final(&st, out);
}

void template_state_clear(struct template_state *t)
{
	if (!t)
		return;
	free(t->policy.allow);
	memset(t, 0, sizeof(*t));
}

/* ---- the field rules, one place for decoder and encoder ------------------ */

static bool source_id_valid(const char *s)
{
	size_t len = s ? strnlen(s, POLICY_ID_MAX + 1) : 0;

	if (len == 0 || len > POLICY_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

/* Ports are few (<= 1024): a 64 Ki-bit set keeps the check linear. */
static int ports_check(const uint32_t *ports, size_t n, char *err, size_t err_size)
{
	uint8_t seen[65536 / 8] = { 0 };

	if (n > TEMPLATE_LISTEN_PORTS_MAX)
		return tf_fail(err, err_size, -EINVAL, "listen_ports: more than %u entries",
			       TEMPLATE_LISTEN_PORTS_MAX);
	for (size_t i = 0; i < n; i++) {
		uint32_t p = ports[i];

		if (p == 0 || p > 65535)
			return tf_fail(err, err_size, -EINVAL,
				       "listen_ports: port %u is not in 1..65535", p);
		if (seen[p / 8] & (1u << (p % 8)))
			return tf_fail(err, err_size, -EINVAL,
				       "listen_ports: port %u is listed twice", p);
		seen[p / 8] |= (uint8_t)(1u << (p % 8));
	}
	return 0;
}

/* Every field of a decoded (or about to be encoded) message; on success the
 * validated, normalized state goes to *ret. */
static int template_check(const TemplatePolicy *m, uint32_t header_version,
			  struct template_state *ret, char *err, size_t err_size)
{
	struct template_state t = { .version = header_version };
	char perr[POLICY_ERR_MAX];
	int r;

	if (m->format_version != header_version)
		return tf_fail(err, err_size, -EINVAL,
			       "format_version %u differs from the header's (%u)",
			       m->format_version, header_version);
	if (m->mode == MIOSA__TEMPLATE_POLICY__MODE__MODE_OBSERVE)
		t.policy.mode = POLICY_OBSERVE;
	else if (m->mode == MIOSA__TEMPLATE_POLICY__MODE__MODE_ENFORCE)
		t.policy.mode = POLICY_ENFORCE;
	else
		return tf_fail(err, err_size, -EINVAL, "mode: must be observe or enforce");
	if (m->n_allow > POLICY_ALLOW_MAX)
		return tf_fail(err, err_size, -EINVAL, "allow: more than %d entries",
			       POLICY_ALLOW_MAX);
	if ((r = ports_check(m->listen_ports, m->n_listen_ports, err, err_size)) < 0)
		return r;
	if (!source_id_valid(m->source_sandbox_id))
		return tf_fail(err, err_size, -EINVAL,
			       "source_sandbox_id: must be 1..%d bytes of 0x21..0x7e",
			       POLICY_ID_MAX);
	if (m->created_at_us < 0)
		return tf_fail(err, err_size, -EINVAL, "created_at_us: must be >= 0");

	if (m->n_allow > 0 && !(t.policy.allow = calloc(m->n_allow, sizeof(*t.policy.allow))))
		return tf_fail(err, err_size, -ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_allow; i++) {
		const AllowEntry *e = m->allow[i];
		const char *pat = e->pattern ? e->pattern : "";

		if (host_pattern_normalize(pat, strlen(pat), t.policy.allow[i].pattern, perr,
					   sizeof(perr)) < 0) {
			r = tf_fail(err, err_size, -EINVAL, "allow[%zu]: %s", i, perr);
			goto fail;
		}
		if (e->port > 65535) {
			r = tf_fail(err, err_size, -EINVAL, "allow[%zu]: port %u is not in 0..65535",
				    i, e->port);
			goto fail;
		}
		t.policy.allow[i].port = (uint16_t)e->port;
	}
	t.policy.n_allow = m->n_allow;
	for (size_t i = 0; i < m->n_listen_ports; i++)
		t.listen_ports[i] = (uint16_t)m->listen_ports[i];
	t.n_listen_ports = m->n_listen_ports;
	memcpy(t.source_sandbox_id, m->source_sandbox_id, strlen(m->source_sandbox_id) + 1);
	t.created_at_us = m->created_at_us;
	*ret = t;
	return 0;
fail:
	template_state_clear(&t);
	return r;
}

/* ---- decode --------------------------------------------------------------- */

int template_file_decode(const void *buf, size_t len, struct template_state *ret_state,
			 char *err, size_t err_size)
{
	const uint8_t *b = buf;
	uint8_t sum[crypto_hash_sha256_BYTES];
	ProtobufCMessage *m = NULL;
	struct wire_error werr;
	uint32_t version, plen;
	int r;

	if (len > TEMPLATE_FILE_MAX)
		return tf_fail(err, err_size, -EFBIG, "%zu bytes, more than the %u-byte limit",
			       len, TEMPLATE_FILE_MAX);
	if (len > 0 && memcmp(b, TF_MAGIC, len < TF_MAGIC_LEN ? len : TF_MAGIC_LEN) != 0)
		return tf_fail(err, err_size, -EBADMSG,
			       "not a miosa policy template (bad magic)");
	if (len < TEMPLATE_FILE_HEADER)
		return tf_fail(err, err_size, -EBADMSG,
			       "truncated: %zu bytes, shorter than the %u-byte header", len,
			       TEMPLATE_FILE_HEADER);
	version = get_u32be(b + 8);
	plen = get_u32be(b + 12);
	if (version == 0)
		return tf_fail(err, err_size, -EBADMSG, "format version 0 is invalid");
	if (version > TEMPLATE_FILE_VERSION)
		return tf_fail(err, err_size, -EPROTONOSUPPORT,
			       "format version %u is newer than this miosactl supports (%u)",
			       version, TEMPLATE_FILE_VERSION);
	/* Compare against what is there, never add to an offset. */
	if (plen > len - TEMPLATE_FILE_HEADER)
		return tf_fail(err, err_size, -EBADMSG,
			       "truncated: the header announces %u payload bytes, %zu are there",
			       plen, len - TEMPLATE_FILE_HEADER);
	if (plen < len - TEMPLATE_FILE_HEADER)
		return tf_fail(err, err_size, -EBADMSG, "%zu trailing bytes after the payload",
			       len - TEMPLATE_FILE_HEADER - plen);
	tf_checksum(b, b + TEMPLATE_FILE_HEADER, plen, sum);
	if (memcmp(sum, b + TF_SUM_OFF, sizeof(sum)) != 0)
		return tf_fail(err, err_size, -EBADMSG,
			       "checksum mismatch: the file is corrupt");
	r = wire_unpack(&miosa__template_policy__descriptor, b + TEMPLATE_FILE_HEADER, plen, &m,
			&werr);
	if (r < 0)
		return tf_fail(err, err_size, r, "payload: %s.%s: %s", werr.message, werr.field,
			       werr.reason);
	r = template_check((const TemplatePolicy *)m, version, ret_state, err, err_size);
	protobuf_c_message_free_unpacked(m, NULL);
	return r;
}

/* ---- encode --------------------------------------------------------------- */

int template_file_encode(const struct template_state *t, uint8_t **ret_buf, size_t *ret_len,
			 char *err, size_t err_size)
{
	TemplatePolicy m = MIOSA__TEMPLATE_POLICY__INIT;
	AllowEntry *entries = NULL, **ptrs = NULL;
	uint32_t ports[TEMPLATE_LISTEN_PORTS_MAX];
	struct template_state check = { 0 };
	struct wire_error werr;
	uint8_t *buf = NULL;
	size_t plen;
	int r;

	if (t->policy.n_allow > POLICY_ALLOW_MAX || t->n_listen_ports > TEMPLATE_LISTEN_PORTS_MAX)
		return tf_fail(err, err_size, -EINVAL, "too many allow entries or listen ports");
	m.format_version = TEMPLATE_FILE_VERSION;
	m.mode = t->policy.mode == POLICY_ENFORCE ? MIOSA__TEMPLATE_POLICY__MODE__MODE_ENFORCE
						  : MIOSA__TEMPLATE_POLICY__MODE__MODE_OBSERVE;
	if (t->policy.n_allow > 0 &&
	    (!(entries = calloc(t->policy.n_allow, sizeof(*entries))) ||
	     !(ptrs = calloc(t->policy.n_allow, sizeof(*ptrs))))) {
		r = tf_fail(err, err_size, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < t->policy.n_allow; i++) {
		miosa__template_policy__allow_entry__init(&entries[i]);
		entries[i].pattern = (char *)t->policy.allow[i].pattern;
		entries[i].port = t->policy.allow[i].port;
		ptrs[i] = &entries[i];
	}
	m.n_allow = t->policy.n_allow;
	m.allow = ptrs;
	for (size_t i = 0; i < t->n_listen_ports; i++)
		ports[i] = t->listen_ports[i];
	m.n_listen_ports = t->n_listen_ports;
	m.listen_ports = ports;
	m.source_sandbox_id = (char *)t->source_sandbox_id;
	m.created_at_us = t->created_at_us;

	/* Write only what the decoder accepts. */
	if ((r = template_check(&m, TEMPLATE_FILE_VERSION, &check, err, err_size)) < 0)
		goto out;
	plen = miosa__template_policy__get_packed_size(&m);
	if (plen > TEMPLATE_FILE_MAX - TEMPLATE_FILE_HEADER) {
		r = tf_fail(err, err_size, -EFBIG, "the policy needs %zu bytes, more than %u",
			    plen + TEMPLATE_FILE_HEADER, TEMPLATE_FILE_MAX);
		goto out;
	}
	if (!(buf = malloc(TEMPLATE_FILE_HEADER + plen))) {
		r = tf_fail(err, err_size, -ENOMEM, "out of memory");
		goto out;
	}
	memcpy(buf, TF_MAGIC, TF_MAGIC_LEN);
	put_u32be(buf + 8, TEMPLATE_FILE_VERSION);
	put_u32be(buf + 12, (uint32_t)plen);
	miosa__template_policy__pack(&m, buf + TEMPLATE_FILE_HEADER);
	if ((r = wire_check_text(&miosa__template_policy__descriptor, buf + TEMPLATE_FILE_HEADER,
				 plen, &werr)) < 0) {
		r = tf_fail(err, err_size, -EINVAL, "%s.%s: %s", werr.message, werr.field,
			    werr.reason);
		goto out;
	}
	tf_checksum(buf, buf + TEMPLATE_FILE_HEADER, plen, buf + TF_SUM_OFF);
	*ret_buf = buf;
	*ret_len = TEMPLATE_FILE_HEADER + plen;
	buf = NULL;
out:
	template_state_clear(&check);
	free(buf);
	free(entries);
	free(ptrs);
	return r;
}

/* ---- files ---------------------------------------------------------------- */

int template_file_path(const char *image, char *ret_path, size_t size)
{
	int n;

	if (!image || !*image)
		return -EINVAL;
	n = snprintf(ret_path, size, "%s%s", image, TEMPLATE_FILE_SUFFIX);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	return 0;
}

int template_file_read(const char *path, struct template_state *ret_state, char *err,
		       size_t err_size)
{
	char derr[TEMPLATE_ERR_MAX];
	uint8_t *buf = NULL;
	size_t got = 0;
	struct stat st;
	int fd, r;

	/* O_NONBLOCK: a FIFO planted at path must not hang us before the
	 * S_ISREG check (it changes nothing for a regular file). */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return tf_fail(err, err_size, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = tf_fail(err, err_size, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = tf_fail(err, err_size, S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL,
			    "%s: not a regular file", path);
		goto out;
	}
	/* One byte more than the limit, so an oversize file is told apart. */
	if (!(buf = malloc(TEMPLATE_FILE_MAX + 1))) {
		r = tf_fail(err, err_size, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	while (got < TEMPLATE_FILE_MAX + 1) {
		ssize_t n = read(fd, buf + got, TEMPLATE_FILE_MAX + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = tf_fail(err, err_size, -errno, "%s: read: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if ((r = template_file_decode(buf, got, ret_state, derr, sizeof(derr))) < 0)
		tf_fail(err, err_size, r, "%s: %s", path, derr);
out:
	free(buf);
	close(fd);
	return r;
}

/* The directory part of path ("." if none), for the temp file and fsync. */
static int tf_dir_of(const char *path, char *ret_dir, size_t size)
{
	const char *slash = strrchr(path, '/');
	size_t n;

	if (!slash)
		return snprintf(ret_dir, size, ".") < (int)size ? 0 : -ENAMETOOLONG;
	n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= size)
		return -ENAMETOOLONG;
	memcpy(ret_dir, path, n);
	ret_dir[n] = '\0';
	return 0;
}

static int tf_write_all(int fd, const uint8_t *p, size_t len)
{
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

int template_file_write(const char *path, const struct template_state *t, size_t *ret_size,
			char *err, size_t err_size)
{
	char dir[PATH_MAX], tmp[PATH_MAX], eerr[TEMPLATE_ERR_MAX];
	uint8_t *buf = NULL, rnd[8];
	int fd = -1, dfd = -1, r;
	bool made = false;
	size_t len = 0;

	if ((r = template_file_encode(t, &buf, &len, eerr, sizeof(eerr))) < 0)
		return tf_fail(err, err_size, r, "%s: %s", path, eerr);
	randombytes_buf(rnd, sizeof(rnd));
	if (tf_dir_of(path, dir, sizeof(dir)) < 0 ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", path, rnd[0],
		     rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]) >= (int)sizeof(tmp)) {
		r = tf_fail(err, err_size, -ENAMETOOLONG, "%s: path too long", path);
		goto out;
	}
	/* 0644 whatever the umask: the file is public, and the image it sits
	 * beside is read by other users (the VMM). */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		r = tf_fail(err, err_size, -errno, "%s: create %s: %s", path, tmp, strerror(errno));
		goto out;
	}
	made = true;
	if (fchmod(fd, 0644) < 0 || (r = tf_write_all(fd, buf, len)) < 0 || fsync(fd) < 0) {
		r = r < 0 ? r : -errno;
		tf_fail(err, err_size, r, "%s: write %s: %s", path, tmp, strerror(-r));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = tf_fail(err, err_size, -errno, "%s: close %s: %s", path, tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		r = tf_fail(err, err_size, -errno, "%s: rename: %s", path, strerror(errno));
		goto out;
	}
	made = false;
	/* The rename is durable once the directory is. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0) {
		r = tf_fail(err, err_size, -errno, "%s: fsync directory %s: %s", path, dir,
			    strerror(errno));
		goto out;
	}
	if (ret_size)
		*ret_size = len;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (made)
		unlink(tmp);
	free(buf);
	return r;
}
