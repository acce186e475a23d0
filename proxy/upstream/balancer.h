/* Smooth weighted round-robin (nginx's algorithm) and the slow-start weight
 * factor of DESIGN.md. Pure policy: no I/O, time is a parameter. */
#ifndef KL_UPSTREAM_BALANCER_H
#define KL_UPSTREAM_BALANCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kl_swrr {
    size_t n;
    int64_t *current;
    unsigned *weight;
} kl_swrr_t;

/* Returns KL_OK or KL_ENOMEM; every weight starts at 1. */
int kl_swrr_init(kl_swrr_t *b, size_t n);
void kl_swrr_free(kl_swrr_t *b);
void kl_swrr_set_weight(kl_swrr_t *b, size_t i, unsigned w);

/* Picks an item among those <eligible> says yes to (NULL: all) with weight
 * > 0: each adds its weight to its current value, the largest wins and gives
 * back the total. Items left out of one pick keep their current value, so
 * excluding one does not bend the others' long-run shares. Returns the index
 * or -1 when nothing is eligible. */
int kl_swrr_pick(kl_swrr_t *b, bool (*eligible)(void *arg, size_t i), void *arg);

/* max(min_weight, (t/window)^(1/aggression)), 1.0 once the window is over
 * (or when start_ms is 0: not ramping). */
double kl_slowstart_factor(uint64_t now_ms, uint64_t start_ms, uint32_t window_ms,
                           double aggression, unsigned min_weight_percent);

#endif
