/*
 * template_file — a template's policy file, IMAGE.policy.pb (MISSION M15):
 * the policy state of a sandbox saved beside the VM image it was made into,
 * loaded when a sandbox is created from that image.
 *
 * Format (docs/cli.md "Templates"; the payload is proto/template.proto):
 *   offset  0  8 bytes  magic "\x89MPT\r\n\x1a\n" (the high byte and the
 *                       CR/LF/^Z catch a text-mode or 7-bit transfer)
 *   offset  8  u32 BE   format version (TEMPLATE_FILE_VERSION)
 *   offset 12  u32 BE   payload length
 *   offset 16  32 bytes SHA-256 over bytes 0..15 and the payload
 *   offset 48  payload  miosa.TemplatePolicy, exactly "payload length" bytes
 * The whole file is at most TEMPLATE_FILE_MAX bytes.
 *
 * Decoding checks, in this order, so corruption is caught before a single
 * protobuf byte is read: size, magic, version (a newer one is refused before
 * its checksum is looked at: a later format may checksum differently),
 * length, checksum; then wire_unpack() (UTF-8, budget) and every field in
 * one place, template_check():
 *   format_version equal to the header's; mode observe or enforce;
 *   at most POLICY_ALLOW_MAX allow entries, each pattern valid by
 *   host_pattern_normalize() and stored normalized, port 0..65535;
 *   at most TEMPLATE_LISTEN_PORTS_MAX listen ports, each 1..65535, distinct;
 *   source_sandbox_id 1..POLICY_ID_MAX bytes of 0x21..0x7e; created_at >= 0.
 * The encoder applies the same rules to what it writes.
 *
 * The file is public data: policy only, never a secret or a placeholder.
 *
 * Contract: 0 / negative errno; ret_* written only on success; err (if not
 * NULL) receives one line saying what failed, which never quotes file bytes
 * except a rejected pattern (host_pattern.h wording, bounded).  Codes:
 *   -EBADMSG          corrupt: truncated, bad magic, checksum mismatch,
 *                     trailing bytes, not a valid encoding
 *   -EPROTONOSUPPORT  format version newer than TEMPLATE_FILE_VERSION
 *   -EFBIG            larger than TEMPLATE_FILE_MAX
 *   -EINVAL           well-formed, but a field breaks its rule
 *   -ENOMEM; the file functions add open/read/write errors (-errno).
 * Pure functions apart from template_file_read()/_write(); thread-safe.
 */
#ifndef MIOSA_TEMPLATE_FILE_H
#define MIOSA_TEMPLATE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

#define TEMPLATE_FILE_VERSION 1u
#define TEMPLATE_FILE_MAX (1u << 20)
#define TEMPLATE_FILE_HEADER 48u
#define TEMPLATE_FILE_SUFFIX ".policy.pb"
#define TEMPLATE_LISTEN_PORTS_MAX 1024u
#define TEMPLATE_ERR_MAX 512u

struct template_state {
	uint32_t version;                 /* decode: the file's; encode: ignored */
	struct policy_template policy;    /* mode, allowlist (malloc'd) */
	uint16_t listen_ports[TEMPLATE_LISTEN_PORTS_MAX];
	size_t n_listen_ports;
	char source_sandbox_id[POLICY_ID_MAX + 1];
	int64_t created_at_us;
};

/* Frees the allowlist and zeroes *t; NULL is a no-op. */
void template_state_clear(struct template_state *t);

/* A malloc'd file image of t (format TEMPLATE_FILE_VERSION). */
__attribute__((warn_unused_result))
int template_file_encode(const struct template_state *t, uint8_t **ret_buf, size_t *ret_len,
			 char *err, size_t err_size);
__attribute__((warn_unused_result))
int template_file_decode(const void *buf, size_t len, struct template_state *ret_state,
			 char *err, size_t err_size);

/* image + TEMPLATE_FILE_SUFFIX into ret_path; -ENAMETOOLONG, -EINVAL (empty). */
__attribute__((warn_unused_result))
int template_file_path(const char *image, char *ret_path, size_t size);

/*
 * Read and decode path (at most TEMPLATE_FILE_MAX + 1 bytes are read); err
 * starts with path.  -ENOENT when there is no such file.
 */
__attribute__((warn_unused_result))
int template_file_read(const char *path, struct template_state *ret_state, char *err,
		       size_t err_size);

/*
 * Encode t and replace path atomically: a temporary file in the same
 * directory (O_EXCL, mode 0644), written, fsync'd, renamed over path, then
 * the directory fsync'd.  A failure up to the rename leaves path untouched
 * and removes the temporary file; only a failing directory fsync reports an
 * error with the new file already in place (not yet known to be durable).
 * ret_size (may be NULL) receives the bytes written.
 */
__attribute__((warn_unused_result))
int template_file_write(const char *path, const struct template_state *t, size_t *ret_size,
			char *err, size_t err_size);

#endif
