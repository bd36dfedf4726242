#include "backoff.h"

#include <assert.h>

void backoff_init(struct backoff *b, uint32_t base_ms, uint32_t cap_ms, uint64_t seed)
{
	assert(base_ms >= 1 && cap_ms >= base_ms);
	b->base_ms = base_ms;
	b->cap_ms = cap_ms;
	b->attempt = 0;
	/* xorshift64 has the all-zero state as a fixed point */
	b->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

static uint64_t backoff_random(struct backoff *b)
{
	uint64_t x = b->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	b->rng = x;
	return x;
}

/* min(cap, base * 2^attempt) without overflowing: stop doubling at cap. */
static uint32_t backoff_ceiling(const struct backoff *b)
{
	uint64_t ceiling = b->base_ms;

	for (uint32_t i = 0; i < b->attempt && ceiling < b->cap_ms; i++)
		ceiling *= 2;
	return ceiling < b->cap_ms ? (uint32_t)ceiling : b->cap_ms;
}

uint32_t backoff_next(struct backoff *b)
{
	uint32_t ceiling = backoff_ceiling(b);
	uint32_t half = ceiling / 2;

	if (b->attempt < UINT32_MAX)
		b->attempt++;
	return ceiling - half + (uint32_t)(backoff_random(b) % ((uint64_t)half + 1));
}

void backoff_reset(struct backoff *b)
{
	b->attempt = 0;
}
