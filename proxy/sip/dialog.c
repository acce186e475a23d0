/* Established calls (DESIGN.md "Resilience semantics", bulkheads): a
 * minimal record per dialog, from the INVITE 2xx to the BYE, keyed by
 * Call-ID. It gives calls in flight by zone and class, the session
 * duration histogram, and the router's call counts (bulkheads), which it
 * holds until the call ends. A call whose BYE never passes keel (the caller
 * or the server vanished) is forgotten after KL__DIALOG_MAX_AGE, or when
 * KL__DIALOG_MAX newer calls push it out, and its counts given back. */
#include "sip/proxy-int.h"

#include "sip/rtpstat.h"

#include "core/stats.h"

#include <stdlib.h>
#include <string.h>

struct kl_dialog {
    kl_hnode_t hn;
    kl_dialog_t *prev, *next; /* oldest first */
    char zone[64];
    void *handle; /* the router's (dialog_begin), given back by dialog_end */
    kl_class_t cls;
    uint64_t start_ms;
    size_t keylen;
    char key[];
};

static void dialog_gauge(kl_proxy_t *p, const kl_dialog_t *d, double delta)
{
    const char *l[] = {d->zone, kl_class_name(d->cls)};

    kl_stats_add(p->w->stats, KL_ST_CALLS_IN_FLIGHT, l, delta);
}

static void dialog_unlink(kl_proxy_t *p, kl_dialog_t *d)
{
    kl_htab_del(&p->dialogs, &d->hn);
    if (d->prev != NULL)
        d->prev->next = d->next;
    else
        p->dlg_head = d->next;
    if (d->next != NULL)
        d->next->prev = d->prev;
    else
        p->dlg_tail = d->prev;
    p->ndialogs--;
    dialog_gauge(p, d, -1);
    p->rops->dialog_end(p->router, d->handle);
    d->handle = NULL;
}

void kl__dialog_start(kl_proxy_t *p, const char *call_id, const kl_target_t *t, kl_class_t cls,
                      uint64_t now_ms)
{
    size_t n = strlen(call_id);
    kl_dialog_t *d;

    if (n == 0 || kl_htab_get(&p->dialogs, call_id, n) != NULL)
        return; /* a second 2xx (forked or late) of the same call */
    if (p->ndialogs >= KL__DIALOG_MAX && p->dlg_head != NULL) {
        kl_dialog_t *old = p->dlg_head;

        dialog_unlink(p, old);
        free(old);
    }
    d = calloc(1, sizeof(*d) + n + 1);
    if (d == NULL)
        return;
    memcpy(d->key, call_id, n + 1);
    d->keylen = n;
    snprintf(d->zone, sizeof(d->zone), "%s", t->zone != NULL ? t->zone : "");
    d->handle = p->rops->dialog_begin(p->router, t);
    d->cls = cls;
    d->start_ms = now_ms;
    kl_htab_add(&p->dialogs, &d->hn, d->key, n);
    d->prev = p->dlg_tail;
    if (p->dlg_tail != NULL)
        p->dlg_tail->next = d;
    else
        p->dlg_head = d;
    p->dlg_tail = d;
    p->ndialogs++;
    dialog_gauge(p, d, +1);
}

bool kl__dialog_end(kl_proxy_t *p, const char *call_id, size_t len, uint64_t now_ms)
{
    kl_hnode_t *hn = len > 0 ? kl_htab_get(&p->dialogs, call_id, len) : NULL;
    kl_dialog_t *d;

    if (hn == NULL)
        return false;
    d = kl_container_of(hn, kl_dialog_t, hn);
    {
        const char *l[] = {d->zone};

        kl_stats_observe(p->w->stats, KL_ST_CALL_DURATION, l,
                         (double)(now_ms - d->start_ms) / 1000.0);
    }
    dialog_unlink(p, d);
    free(d);
    return true;
}

void kl__dialog_quality(kl_proxy_t *p, const kl_sip_msg_t *m, const char *zone, bool from_platform)
{
    static const char *const names[] = {"P-RTP-Stat", "X-RTP-Stat"};
    const char *l[] = {zone != NULL ? zone : "", from_platform ? "platform" : "caller"};

    for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
        int i = kl_sip_hdr_find_name(m, names[n], -1);
        kl_rtpstat_t st;

        if (i < 0 || !kl_rtpstat_parse(m->buf + m->hdrs[i].value_off, m->hdrs[i].value_len, &st))
            continue;
        kl_stats_add(p->w->stats, KL_ST_RTP_REPORTS, l, 1);
        kl_stats_add(p->w->stats, KL_ST_RTP_PACKETS_RECEIVED, l, (double)st.received);
        kl_stats_add(p->w->stats, KL_ST_RTP_PACKETS_LOST, l, (double)st.lost);
        if (st.have_jitter)
            kl_stats_observe(p->w->stats, KL_ST_RTP_JITTER, l, st.jitter_ms / 1000.0);
        kl_stats_observe(p->w->stats, KL_ST_RTP_MOS, l, kl_rtpstat_mos(&st));
        return; /* one report per message */
    }
}

void kl__dialog_expire(kl_proxy_t *p, uint64_t now_ms)
{
    while (p->dlg_head != NULL && now_ms - p->dlg_head->start_ms > KL__DIALOG_MAX_AGE) {
        kl_dialog_t *d = p->dlg_head;

        dialog_unlink(p, d);
        free(d);
    }
}

void kl__dialog_free_all(kl_proxy_t *p)
{
    kl_dialog_t *d = p->dlg_head, *next;

    for (; d != NULL; d = next) {
        next = d->next;
        p->rops->dialog_end(p->router, d->handle);
        free(d);
    }
    p->dlg_head = p->dlg_tail = NULL;
    p->ndialogs = 0;
    kl_htab_free(&p->dialogs);
}
