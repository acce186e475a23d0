/* Media quality reported in signalling (DESIGN.md "Observability": RTP
 * loss, jitter and MOS per zone). keel relays no media, so it reads what the
 * endpoints say about theirs when a call ends: the P-RTP-Stat header
 * (X-RTP-Stat on some platforms) that many SBCs, gateways and PBXs put on a
 * BYE or its 200: comma-separated KEY=VALUE pairs, PS/OS packets and octets
 * sent, PR/OR received, PL lost, JI jitter (ms), LA latency (ms), DU
 * duration (s). Pure functions: no I/O. */
#ifndef KL_SIP_RTPSTAT_H
#define KL_SIP_RTPSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kl_rtpstat {
    uint64_t received; /* PR */
    uint64_t lost;     /* PL (a negative count, duplicates, is taken as 0) */
    double jitter_ms;  /* JI */
    double latency_ms; /* LA, 0 when absent */
    bool have_jitter;  /* JI was there */
    bool have_latency; /* LA was there */
} kl_rtpstat_t;

/* Parses the header value <v> (<len> bytes, not NUL-terminated). Returns
 * true when it carried at least PR and PL (a report worth counting); keys
 * it does not know are skipped, a malformed pair is ignored. */
bool kl_rtpstat_parse(const char *v, size_t len, kl_rtpstat_t *out);

/* Share of packets lost, 0..1 (0 when nothing was expected). */
double kl_rtpstat_loss(const kl_rtpstat_t *s);

/* Estimated MOS (1.0..4.5) by the simplified ITU-T G.107 E-model (Cole and
 * Rosenbluth, 2001), for G.711 with packet loss concealment: effective
 * latency = latency + 2 x jitter + 10 ms; R = 93.2 - latency impairment -
 * 2.5 x loss percent; MOS = 1 + 0.035 R + 7e-6 R (R - 60)(100 - R). */
double kl_rtpstat_mos(const kl_rtpstat_t *s);

#endif
