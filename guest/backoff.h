/*
 * backoff — the reconnect schedule of the control stream: capped
 * exponential backoff with "equal jitter".
 *
 * Attempt n (0-based, counted since the last reset) waits a delay drawn
 * uniformly from [ceiling/2, ceiling], ceiling = min(cap, base * 2^n).  Half
 * of the ceiling is fixed so the agent never spins on a dead broker; the
 * other half is random so that many guests restarted together by one broker
 * restart do not reconnect in lockstep.
 *
 * Contract: pure arithmetic over caller-owned state, no I/O; the jitter
 * comes from a xorshift generator seeded by the caller (tests pass a fixed
 * seed, the agent a getrandom() one).  Not thread-safe.
 */
#ifndef MIOSA_BACKOFF_H
#define MIOSA_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint32_t base_ms;
	uint32_t cap_ms;
	uint32_t attempt; /* since the last reset */
	uint64_t rng;     /* xorshift64 state, never 0 */
};

/* base_ms >= 1 and cap_ms >= base_ms (programmer errors otherwise). */
void backoff_init(struct backoff *b, uint32_t base_ms, uint32_t cap_ms, uint64_t seed);

/* The delay before the next attempt; counts the attempt. */
uint32_t backoff_next(struct backoff *b);

/* After a success: the next delay starts from base_ms again. */
void backoff_reset(struct backoff *b);

#endif
