/*
 * ossl_err — the one place OpenSSL failures become our errors.
 *
 * OpenSSL reports failure through a per-thread error queue.  Every module
 * that calls OpenSSL turns a failure into a negative errno with one of the
 * two functions below, which also EMPTY the calling thread's queue: a stale
 * entry left behind would make the next, unrelated SSL_get_error() on that
 * thread report an error that never happened.
 *
 * Mapping (the first queued entry that maps to something specific wins;
 * entries are examined oldest first, the oldest being the root cause):
 *   system error (ERR_LIB_SYS, e.g. fopen)       -> -errno it carries
 *   ERR_R_MALLOC_FAILURE (any library)           -> -ENOMEM
 *   SSL: certificate verify failed               -> -EKEYREJECTED
 *   SSL: unexpected EOF                          -> -ECONNRESET
 *   SSL: alert received from the peer            -> -ECONNABORTED
 *   SSL: anything else                           -> -EPROTO
 *   PEM / ASN.1 / decoder (malformed input)      -> -EBADMSG
 *   anything else, or an empty queue             -> the caller's fallback
 *
 * Messages: "lib:reason" per entry, joined by "; ", oldest first, always
 * NUL-terminated and cut at the buffer size (ending in "..." when cut).
 * Only the library and reason strings OpenSSL compiles in are used, never
 * the per-entry data strings (they can quote file names, peer-sent names or
 * other caller data): a message can be logged as it is and never carries
 * key material.
 *
 * Threads: works on the calling thread's queue only; no shared state.
 */
#ifndef MIOSA_OSSL_ERR_H
#define MIOSA_OSSL_ERR_H

#include <stddef.h>

#include <openssl/ssl.h>

#define OSSL_ERR_MSG_MAX 256 /* a sensible size for message buffers */

/*
 * Drain the calling thread's error queue.  Returns the mapped -errno, or
 * fallback (which must be negative) when no entry maps to anything
 * specific.  buf may be NULL; otherwise it receives the message ("" for an
 * empty queue).
 */
__attribute__((warn_unused_result))
int ossl_err_drain(int fallback, char *buf, size_t buf_size);

/*
 * Classify the result ret <= 0 of SSL_do_handshake / SSL_read / SSL_write /
 * SSL_shutdown on ssl, and drain the queue:
 *   -EAGAIN        SSL_ERROR_WANT_READ: feed more input (flush output first)
 *   -ENOBUFS       SSL_ERROR_WANT_WRITE: drain output, then call again
 *   -EINPROGRESS   another WANT_* (callback asked to be called again)
 *   0              SSL_ERROR_ZERO_RETURN: the peer sent close_notify (EOF)
 *   -EKEYREJECTED  certificate verification failed; buf says why
 *                  ("certificate verify failed: Hostname mismatch")
 *   -ECONNRESET    the transport ended without close_notify
 *   others         as ossl_err_drain(-EPROTO, ...)
 * buf as for ossl_err_drain ("" for the WANT_* and EOF cases).
 */
__attribute__((warn_unused_result))
int ossl_err_ssl(const SSL *ssl, int ret, char *buf, size_t buf_size);

#endif
