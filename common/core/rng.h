/* rng.h - the project's seeded random numbers (xoshiro256**, seeded by
 * splitmix64). Never rand(). Seeds are derived from what is computed
 * (run seed, epoch, cycle, candidate...) with rng_derive, never the rank. */
#ifndef ABC_RNG_H
#define ABC_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s[4];
};

/* Seeds the generator deterministically from one 64-bit seed. */
void rng_seed(struct rng *r, uint64_t seed);
/* Next raw 64-bit value. */
uint64_t rng_u64(struct rng *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t rng_below(struct rng *r, uint64_t n);
/* Uniform double in [0, 1). */
double rng_uniform(struct rng *r);
/* Standard normal (Box-Muller). */
double rng_normal(struct rng *r);
/* A seed derived from a base seed and up to three labels, e.g.
 * rng_derive(run_seed, cycle, phase, candidate). Pure function. */
uint64_t rng_derive(uint64_t base, uint64_t a, uint64_t b, uint64_t c);
/* Fisher-Yates shuffle of idx[0..n). */
void rng_shuffle_int(struct rng *r, int *idx, int n);

#endif
