#include "ossl_err.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

/* A bounded message under construction; once cut, nothing more is added. */
struct oe_msg {
	char *buf;
	size_t size;
	size_t len;
	bool cut;
};

static void oe_append(struct oe_msg *m, const char *s)
{
	static const char ellipsis[] = "...";
	size_t n = strlen(s);

	if (!m->buf || m->size == 0 || m->cut)
		return;
	if (n < m->size - m->len) {
		memcpy(m->buf + m->len, s, n + 1);
		m->len += n;
		return;
	}
	/* Cut: end in "..." when there is room for it, else as much as fits. */
	m->cut = true;
	if (m->size > sizeof(ellipsis)) {
		size_t keep = m->size - sizeof(ellipsis);

		if (m->len > keep)
			m->len = keep;
		memcpy(m->buf + m->len, s, keep - m->len);
		memcpy(m->buf + keep, ellipsis, sizeof(ellipsis));
		m->len = m->size - 1;
	} else {
		memcpy(m->buf + m->len, s, m->size - 1 - m->len);
		m->len = m->size - 1;
		m->buf[m->len] = '\0';
	}
}

static void oe_append_entry(struct oe_msg *m, unsigned long e)
{
	char fallback[32];
	const char *lib = ERR_lib_error_string(e);
	const char *reason = ERR_reason_error_string(e);

	if (m->len > 0)
		oe_append(m, "; ");
	if (lib) {
		oe_append(m, lib);
	} else {
		snprintf(fallback, sizeof(fallback), "lib(%d)", ERR_GET_LIB(e));
		oe_append(m, fallback);
	}
	oe_append(m, ":");
	if (reason) {
		oe_append(m, reason);
	} else {
		snprintf(fallback, sizeof(fallback), "reason(%d)", ERR_GET_REASON(e));
		oe_append(m, fallback);
	}
}

/* The specific -errno for one entry, or 0 when it has none. */
static int oe_map(unsigned long e)
{
	int lib = ERR_GET_LIB(e);
	int reason = ERR_GET_REASON(e);

	if (ERR_SYSTEM_ERROR(e))
		return reason > 0 ? -reason : 0;
	if (reason == ERR_R_MALLOC_FAILURE)
		return -ENOMEM;
	switch (lib) {
	case ERR_LIB_SSL:
		if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
			return -EKEYREJECTED;
		if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return -ECONNRESET;
		/* Alerts from the peer are reported as SSL_AD_REASON_OFFSET + alert. */
		if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
			return -ECONNABORTED;
		return -EPROTO;
	case ERR_LIB_PEM:
	case ERR_LIB_ASN1:
	case ERR_LIB_OSSL_DECODER:
		return -EBADMSG;
	default:
		return 0;
	}
}

int ossl_err_drain(int fallback, char *buf, size_t buf_size)
{
	struct oe_msg m = { .buf = buf, .size = buf_size };
	unsigned long e;
	int r = 0;

	if (buf && buf_size > 0)
		buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		if (r == 0)
			r = oe_map(e);
		oe_append_entry(&m, e);
	}
	return r != 0 ? r : fallback;
}

static int oe_verify_failed(const SSL *ssl, char *buf, size_t buf_size)
{
	struct oe_msg m = { .buf = buf, .size = buf_size };

	ERR_clear_error();
	if (buf && buf_size > 0)
		buf[0] = '\0';
	oe_append(&m, "certificate verify failed: ");
	oe_append(&m, X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
	return -EKEYREJECTED;
}

int ossl_err_ssl(const SSL *ssl, int ret, char *buf, size_t buf_size)
{
	int r;

	if (buf && buf_size > 0)
		buf[0] = '\0';
	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		return -ENOBUFS;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		/* No OpenSSL reason: the BIO failed or hit EOF mid-record. */
		r = ossl_err_drain(-ECONNRESET, buf, buf_size);
		return r;
	case SSL_ERROR_SSL:
		if (SSL_get_verify_result(ssl) != X509_V_OK)
			return oe_verify_failed(ssl, buf, buf_size);
		return ossl_err_drain(-EPROTO, buf, buf_size);
	default:
		/* WANT_CONNECT/ACCEPT/X509_LOOKUP/ASYNC/CLIENT_HELLO_CB ... */
		ERR_clear_error();
		return -EINPROGRESS;
	}
}
