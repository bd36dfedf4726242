/*
 * tls_sniff reads the first bytes of any guest TCP stream on a port other
 * than 80/443.  Invariants checked on every input:
 *   - it never reads past len (ASan) and always returns a known verdict;
 *   - a verdict other than NEED_MORE is final: more bytes appended never
 *     change it (the caller decides once);
 *   - NEED_MORE is only returned below TLS_SNIFF_MAX_BYTES.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "tls_sniff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum tls_sniff_verdict v = tls_sniff_client_hello(data, size);
	uint8_t *more;

	if (v > TLS_SNIFF_MALFORMED || !tls_sniff_verdict_name(v)[0])
		abort();
	if (v == TLS_SNIFF_NEED_MORE) {
		if (size >= TLS_SNIFF_MAX_BYTES)
			abort();
		return 0;
	}
	if (!(more = malloc(size + 16)))
		return 0;
	memcpy(more, data, size);
	memset(more + size, 0x5a, 16);
	if (tls_sniff_client_hello(more, size + 16) != v)
		abort();
	free(more);
	return 0;
}
