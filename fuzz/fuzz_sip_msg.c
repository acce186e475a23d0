/* libFuzzer harness for the SIP message layer: parse (datagram or stream,
 * by the first byte), the request/response checks, a locally built reply,
 * the forwarding splices and the media report (P-RTP-Stat) reader. Links
 * keel_core. */
#include "sip/msg.h"
#include "sip/rtpstat.h"
#include "core/errors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    kl_sip_msg_t m;
    kl_sip_verdict_t v;
    bool stream;
    int rc;

    if (!init) {
        kl_sip_init();
        init = 1;
    }
    if (size < 1)
        return 0;
    stream = data[0] & 1;
    rc = kl_sip_msg_parse(&m, (const char *)data + 1, size - 1, stream, &v);
    if (rc == KL_OK) {
        char out[8192];
        kl_splice_t e[3];
        size_t n = 0;
        char mf[8];

        if (m.is_request) {
            if (kl_sip_msg_check_request(&m, &v) == KL_OK || v.code != 0)
                kl_sip_reply_raw(&m, v.code ? v.code : 200, "OK", "tag", NULL, out, sizeof(out));
            e[n++] =
                (kl_splice_t){.off = kl_sip_msg_headers_off(&m), .ins = "Via: X\r\n", .inslen = 8};
            if (kl_sip_msg_max_forwards(&m) > 0 &&
                kl_sip_edit_max_forwards(&m, kl_sip_msg_max_forwards(&m) - 1, mf, &e[n]) == KL_OK)
                n++;
            if (kl_sip_edit_pop_first(&m, KL_HDR_ROUTE, &e[n]) == KL_OK)
                n++;
        } else {
            kl_sip_msg_check_response(&m);
            if (kl_sip_edit_pop_first(&m, KL_HDR_VIA, &e[n]) == KL_OK)
                n++;
        }
        /* the splice helpers must produce ordered edits, or be refused */
        kl_splice_apply(m.buf, m.len, e, n, out, sizeof(out));
        {
            int i = kl_sip_hdr_find_name(&m, "P-RTP-Stat", -1);
            kl_rtpstat_t st;

            if (i >= 0 && kl_rtpstat_parse(m.buf + m.hdrs[i].value_off, m.hdrs[i].value_len, &st))
                (void)kl_rtpstat_mos(&st);
        }
    } else if (v.code != 0) {
        char out[8192];

        kl_sip_reply_raw(&m, v.code, v.reason, "tag", NULL, out, sizeof(out));
    }
    kl_sip_msg_free(&m);
    return 0;
}
