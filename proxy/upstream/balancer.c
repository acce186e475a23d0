#include "upstream/balancer.h"

#include "core/errors.h"

#include <math.h>
#include <stdlib.h>

int kl_swrr_init(kl_swrr_t *b, size_t n)
{
    b->n = n;
    b->current = calloc(n ? n : 1, sizeof(*b->current));
    b->weight = calloc(n ? n : 1, sizeof(*b->weight));
    if (b->current == NULL || b->weight == NULL) {
        kl_swrr_free(b);
        return KL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        b->weight[i] = 1;
    return KL_OK;
}

void kl_swrr_free(kl_swrr_t *b)
{
    free(b->current);
    free(b->weight);
    b->current = NULL;
    b->weight = NULL;
    b->n = 0;
}

void kl_swrr_set_weight(kl_swrr_t *b, size_t i, unsigned w)
{
    if (i < b->n)
        b->weight[i] = w;
}

int kl_swrr_pick(kl_swrr_t *b, bool (*eligible)(void *arg, size_t i), void *arg)
{
    int64_t total = 0;
    int best = -1;

    for (size_t i = 0; i < b->n; i++) {
        if (b->weight[i] == 0 || (eligible != NULL && !eligible(arg, i)))
            continue;
        b->current[i] += b->weight[i];
        total += b->weight[i];
        if (best < 0 || b->current[i] > b->current[best])
            best = (int)i;
    }
    if (best >= 0)
        b->current[best] -= total;
    return best;
}

double kl_slowstart_factor(uint64_t now_ms, uint64_t start_ms, uint32_t window_ms,
                           double aggression, unsigned min_weight_percent)
{
    double t, f, min = min_weight_percent / 100.0;

    if (start_ms == 0 || window_ms == 0 || now_ms >= start_ms + window_ms)
        return 1.0;
    if (now_ms <= start_ms)
        return min;
    t = (double)(now_ms - start_ms) / (double)window_ms;
    f = pow(t, 1.0 / (aggression > 0 ? aggression : 1.0));
    return f < min ? min : (f > 1.0 ? 1.0 : f);
}
