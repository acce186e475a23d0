#include "sip/rtpstat.h"

#include <string.h>

/* A decimal number of at most 15 digits, optionally negative; false on
 * anything else. */
static bool num(const char *v, size_t len, double *out, bool *negative)
{
    size_t i = 0;
    double x = 0;

    *negative = false;
    if (i < len && v[i] == '-') {
        *negative = true;
        i++;
    }
    if (i == len || len - i > 15)
        return false;
    for (; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (v[i] - '0');
    }
    *out = *negative ? -x : x;
    return true;
}

static bool is_sep(char c)
{
    return c == ',' || c == ';' || c == ' ' || c == '\t';
}

bool kl_rtpstat_parse(const char *v, size_t len, kl_rtpstat_t *out)
{
    bool have_pr = false, have_pl = false;
    size_t i = 0;

    memset(out, 0, sizeof(*out));
    while (i < len) {
        size_t k, eq, e;
        double x;
        bool neg;

        while (i < len && is_sep(v[i]))
            i++;
        k = i;
        while (i < len && !is_sep(v[i]) && v[i] != '=')
            i++;
        if (i == len || v[i] != '=') {
            while (i < len && !is_sep(v[i]))
                i++;
            continue;
        }
        eq = i++;
        while (i < len && !is_sep(v[i]))
            i++;
        e = i;
        if (eq - k != 2 || !num(v + eq + 1, e - eq - 1, &x, &neg))
            continue;
        if (memcmp(v + k, "PR", 2) == 0 && !neg) {
            out->received = (uint64_t)x;
            have_pr = true;
        } else if (memcmp(v + k, "PL", 2) == 0) {
            out->lost = neg ? 0 : (uint64_t)x;
            have_pl = true;
        } else if (memcmp(v + k, "JI", 2) == 0 && !neg) {
            out->jitter_ms = x;
            out->have_jitter = true;
        } else if (memcmp(v + k, "LA", 2) == 0 && !neg) {
            out->latency_ms = x;
            out->have_latency = true;
        }
    }
    return have_pr && have_pl;
}

double kl_rtpstat_loss(const kl_rtpstat_t *s)
{
    double expected = (double)s->received + (double)s->lost;

    return expected > 0 ? (double)s->lost / expected : 0;
}

double kl_rtpstat_mos(const kl_rtpstat_t *s)
{
    double eff = s->latency_ms + 2 * s->jitter_ms + 10;
    double r = 93.2 - (eff < 160 ? eff / 40 : (eff - 120) / 10) - 2.5 * 100 * kl_rtpstat_loss(s);
    double mos;

    if (r <= 0)
        return 1.0;
    if (r >= 100)
        return 4.5;
    mos = 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r);
    return mos < 1 ? 1 : mos > 4.5 ? 4.5 : mos;
}
