/*
 * fuzz_target.h — what every fuzz target here shares: the libFuzzer entry
 * point each defines (linked with -fsanitize=fuzzer, or with replay_main.c
 * to replay corpus/NAME/ in `meson test`), and CHECK for the invariants a
 * target asserts.  CHECK aborts, so libFuzzer and the replay both report
 * the input; it is for properties of the code under test, never for input
 * the code is expected to reject.
 */
#ifndef MIOSA_FUZZ_TARGET_H
#define MIOSA_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)              \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

#endif
