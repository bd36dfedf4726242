/*
 * trust — puts the sandbox CA where TLS clients in the guest look for it.
 *
 *   DIR/ca.pem         the sandbox CA alone (NODE_EXTRA_CA_CERTS: Node adds
 *                      it to its built-in roots);
 *   DIR/ca-bundle.pem  the system bundle followed by the sandbox CA
 *                      (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE
 *                      replace the default store, so they need both);
 *   init mode only: the CA appended to the system bundle
 *   (/etc/ssl/certs/ca-certificates.crt) when that file exists, so programs
 *   started by others (login shells, cron) trust it too.
 *
 * Contract: 0 or negative errno, no logging, blocking file I/O on small files
 * (run on HelloAck only).  ca_pem was checked by proto/wire.c (<= 16 KiB,
 * starts with a PEM certificate).  Idempotent: a CA already in a bundle is
 * not added twice (a reconnect repeats HelloAck; a persistent rootfs keeps
 * the earlier append).
 */
#ifndef MIOSA_TRUST_H
#define MIOSA_TRUST_H

#define TRUST_CA_FILE "ca.pem"
#define TRUST_BUNDLE_FILE "ca-bundle.pem"
#define TRUST_SYSTEM_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
/* A system bundle larger than this is refused (-EFBIG): Debian's is ~200 KiB. */
#define TRUST_SYSTEM_BUNDLE_MAX (8u * 1024 * 1024)

/*
 * Writes runtime_dir/ca.pem and runtime_dir/ca-bundle.pem, the latter from
 * system_bundle (NULL: the first of the usual distribution paths that exists;
 * none found: the bundle holds the sandbox CA alone).  *ret_bundle_path and
 * *ret_ca_path are malloc'd.
 */
__attribute__((warn_unused_result))
int trust_write_runtime(const char *runtime_dir, const char *ca_pem, const char *system_bundle,
			char **ret_bundle_path, char **ret_ca_path);

/*
 * Appends ca_pem to system_bundle unless it already holds it: 0 appended,
 * 1 already there, -ENOENT when the file does not exist.
 */
__attribute__((warn_unused_result))
int trust_append_system(const char *system_bundle, const char *ca_pem);

#endif
