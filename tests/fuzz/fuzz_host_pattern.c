/*
 * host_pattern sees guest-controlled names (Host, SNI, DNS questions) and
 * operator patterns.  Invariants checked on every input:
 *   - normalization never reads past len, and its output is NUL-terminated,
 *     at most HOST_PATTERN_MAX bytes, lower case, and a fixed point
 *     (normalizing it again yields the same bytes and kind);
 *   - an error leaves the output untouched and carries a message;
 *   - a normalized exact name matches itself; a wildcard never matches its
 *     own apex.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "host_pattern.h"

static void check_fixed_point(const char *norm, int kind, bool as_pattern)
{
	char again[HOST_PATTERN_BUF], err[128];
	size_t n = strlen(norm);
	int r;

	if (n == 0 || n > HOST_PATTERN_MAX)
		abort();
	for (size_t i = 0; i < n; i++)
		if (norm[i] >= 'A' && norm[i] <= 'Z')
			abort();
	r = as_pattern ? host_pattern_normalize(norm, n, again, err, sizeof(err))
		       : host_pattern_normalize_host(norm, n, again, err, sizeof(err));
	if (r != kind || strcmp(again, norm) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[HOST_PATTERN_BUF], err[128];
	char *copy;
	int r;

	/* An exact-size heap copy so ASan catches any read past len. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);

	memset(out, 0x5a, sizeof(out));
	err[0] = '\0';
	r = host_pattern_normalize(copy, size, out, err, sizeof(err));
	if (r > 0) {
		check_fixed_point(out, r, true);
		if (r == HOST_PATTERN_NAME && !host_pattern_match(out, out))
			abort();
		if (r == HOST_PATTERN_WILDCARD && host_pattern_match(out, out + 2))
			abort();
	} else if (r < 0) {
		if (out[0] != 0x5a || err[0] == '\0')
			abort();
	} else {
		abort();
	}

	r = host_pattern_normalize_host(copy, size, out, err, sizeof(err));
	if (r > 0) {
		if (r == HOST_PATTERN_WILDCARD)
			abort();
		check_fixed_point(out, r, false);
	}
	free(copy);
	return 0;
}
