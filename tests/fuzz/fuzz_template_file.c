/*
 * Fuzz target for host/template_file.h: IMAGE.policy.pb files, which reach
 * miosactl from wherever images come from.
 *
 * Input: byte 0 picks what the rest is.  Even: a whole file, decoded as is
 * (header, version, checksum paths).  Odd: a payload, framed here with a
 * correct header and checksum first, so the protobuf decoding and the field
 * rules are reached instead of stopping at the checksum.  Whatever decodes
 * must re-encode, decode again to the same state, and re-encode to the same
 * bytes (the encoder writes what the decoder accepts, canonically).  Checked
 * invariants abort; leaks are caught by LeakSanitizer.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "template_file.h"

static uint8_t file[TEMPLATE_FILE_MAX + 1];

static size_t frame_payload(const uint8_t *payload, size_t len)
{
	crypto_hash_sha256_state st;

	if (len > sizeof(file) - TEMPLATE_FILE_HEADER)
		len = sizeof(file) - TEMPLATE_FILE_HEADER;
	memcpy(file, "\x89MPT\r\n\x1a\n", 8);
	file[8] = 0, file[9] = 0, file[10] = 0, file[11] = TEMPLATE_FILE_VERSION;
	file[12] = (uint8_t)(len >> 24), file[13] = (uint8_t)(len >> 16);
	file[14] = (uint8_t)(len >> 8), file[15] = (uint8_t)len;
	memcpy(file + TEMPLATE_FILE_HEADER, payload, len);
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, file, 16);
	crypto_hash_sha256_update(&st, file + TEMPLATE_FILE_HEADER, len);
	crypto_hash_sha256_final(&st, file + 16);
	return TEMPLATE_FILE_HEADER + len;
}

static void check_same(const struct template_state *a, const struct template_state *b)
{
	CHECK(a->policy.mode == b->policy.mode && a->policy.n_allow == b->policy.n_allow);
	for (size_t i = 0; i < a->policy.n_allow; i++)
		CHECK(strcmp(a->policy.allow[i].pattern, b->policy.allow[i].pattern) == 0 &&
		      a->policy.allow[i].port == b->policy.allow[i].port);
	CHECK(a->n_listen_ports == b->n_listen_ports &&
	      memcmp(a->listen_ports, b->listen_ports,
		     a->n_listen_ports * sizeof(a->listen_ports[0])) == 0);
	CHECK(strcmp(a->source_sandbox_id, b->source_sandbox_id) == 0);
	CHECK(a->created_at_us == b->created_at_us);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct template_state t = { 0 }, again = { 0 };
	uint8_t *enc = NULL, *enc2 = NULL;
	size_t len, enc_len = 0, enc2_len = 0;
	char err[TEMPLATE_ERR_MAX];

	if (size == 0 || sodium_init() < 0)
		return 0;
	if (data[0] & 1) {
		len = frame_payload(data + 1, size - 1);
	} else {
		len = size - 1 < sizeof(file) ? size - 1 : sizeof(file);
		memcpy(file, data + 1, len);
	}
	err[0] = '\0';
	if (template_file_decode(file, len, &t, err, sizeof(err)) < 0) {
		CHECK(err[0] != '\0');
		return 0;
	}
	CHECK(t.version == TEMPLATE_FILE_VERSION);
	CHECK(template_file_encode(&t, &enc, &enc_len, err, sizeof(err)) == 0);
	CHECK(template_file_decode(enc, enc_len, &again, err, sizeof(err)) == 0);
	check_same(&t, &again);
	CHECK(template_file_encode(&again, &enc2, &enc2_len, err, sizeof(err)) == 0);
	CHECK(enc_len == enc2_len && memcmp(enc, enc2, enc_len) == 0);
	template_state_clear(&t);
	template_state_clear(&again);
	free(enc);
	free(enc2);
	return 0;
}
