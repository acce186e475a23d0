/* SIP messages: keel indexes the raw bytes itself, checks framing and the
 * mandatory headers, and hands libosip2 the header section only (DESIGN.md
 * "Parsing and forwarding"). */
#include "sip/msg.h"

#include "core/errors.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- libosip2 setup ---- */

static void msg_trace_off(const char *fi, int li, osip_trace_level_t level, const char *chfr,
                          va_list ap)
{
    (void)fi;
    (void)li;
    (void)level;
    (void)chfr;
    (void)ap;
}

static void msg_init_once(void)
{
    parser_init();
    osip_trace_initialize_func(OSIP_INFO4, msg_trace_off);
}

int kl_sip_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, msg_init_once);
    return KL_OK;
}

void kl_sip_shutdown(void)
{
}

/* ---- names ---- */

static const struct {
    const char *name;
    char compact;
    kl_hdr_id_t id;
} hdr_names[] = {
    {"via", 'v', KL_HDR_VIA},
    {"from", 'f', KL_HDR_FROM},
    {"to", 't', KL_HDR_TO},
    {"call-id", 'i', KL_HDR_CALL_ID},
    {"cseq", 0, KL_HDR_CSEQ},
    {"max-forwards", 0, KL_HDR_MAX_FORWARDS},
    {"content-length", 'l', KL_HDR_CONTENT_LENGTH},
    {"content-type", 'c', KL_HDR_CONTENT_TYPE},
    {"route", 0, KL_HDR_ROUTE},
    {"record-route", 0, KL_HDR_RECORD_ROUTE},
    {"contact", 'm', KL_HDR_CONTACT},
    {"user-agent", 0, KL_HDR_USER_AGENT},
    {"proxy-require", 0, KL_HDR_PROXY_REQUIRE},
    {"require", 0, KL_HDR_REQUIRE},
    {"supported", 'k', KL_HDR_SUPPORTED},
    {"allow", 0, KL_HDR_ALLOW},
    {"retry-after", 0, KL_HDR_RETRY_AFTER},
};

static kl_hdr_id_t hdr_id(const char *name, size_t len)
{
    if (len == 1) {
        char c = (char)tolower((unsigned char)name[0]);

        for (size_t i = 0; i < sizeof(hdr_names) / sizeof(hdr_names[0]); i++) {
            if (hdr_names[i].compact == c)
                return hdr_names[i].id;
        }
        return KL_HDR_OTHER;
    }
    for (size_t i = 0; i < sizeof(hdr_names) / sizeof(hdr_names[0]); i++) {
        if (strlen(hdr_names[i].name) == len && strncasecmp(hdr_names[i].name, name, len) == 0)
            return hdr_names[i].id;
    }
    return KL_HDR_OTHER;
}

static const char *const method_names[] = {
    [KL_M_INVITE] = "INVITE",
    [KL_M_ACK] = "ACK",
    [KL_M_BYE] = "BYE",
    [KL_M_CANCEL] = "CANCEL",
    [KL_M_OPTIONS] = "OPTIONS",
    [KL_M_REGISTER] = "REGISTER",
    [KL_M_MESSAGE] = "MESSAGE",
    [KL_M_INFO] = "INFO",
    [KL_M_UPDATE] = "UPDATE",
    [KL_M_PRACK] = "PRACK",
    [KL_M_SUBSCRIBE] = "SUBSCRIBE",
    [KL_M_NOTIFY] = "NOTIFY",
    [KL_M_REFER] = "REFER",
    [KL_M_PUBLISH] = "PUBLISH",
};

kl_method_t kl_sip_method_from_str(const char *s, size_t len)
{
    for (int i = 1; i <= KL_M_PUBLISH; i++) {
        if (strlen(method_names[i]) == len && memcmp(method_names[i], s, len) == 0)
            return (kl_method_t)i;
    }
    return KL_M_OTHER;
}

const char *kl_sip_method_name(kl_method_t m)
{
    return (m > KL_M_OTHER && m <= KL_M_PUBLISH) ? method_names[m] : NULL;
}

/* RFC 3261 §25 token characters */
static bool is_token(unsigned char c)
{
    return isalnum(c) || strchr("-.!%*_+`'~", c) != NULL;
}

/* ---- verdicts ---- */

#define VERDICT(v, c, r, w)                                                                        \
    do {                                                                                           \
        (v)->code = (c);                                                                           \
        (v)->reason = (r);                                                                         \
        (v)->why = (w);                                                                            \
    } while (0)

/* ---- parsing ---- */

static bool parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 10)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* Two headers of a kind that allows one value must agree (byte for byte,
 * ignoring surrounding whitespace). */
static bool single_hdr_dup(const kl_sip_msg_t *m, kl_hdr_id_t id)
{
    int a = m->first[id];

    if (a < 0)
        return false;
    for (size_t i = (size_t)a + 1; i < m->nhdrs; i++) {
        const kl_sip_hdr_t *x = &m->hdrs[a], *y = &m->hdrs[i];

        if (y->id != id)
            continue;
        if (x->value_len != y->value_len ||
            memcmp(m->buf + x->value_off, m->buf + y->value_off, x->value_len) != 0)
            return true;
    }
    return false;
}

int kl_sip_msg_parse(kl_sip_msg_t *m, const char *buf, size_t len, bool stream, kl_sip_verdict_t *v)
{
    const char *p, *end, *eol, *sp1, *sp2;
    size_t off = 0, start;
    bool blank = false;
    int cl_idx;

    memset(m, 0, sizeof(*m));
    for (int i = 0; i < KL_HDR_COUNT; i++)
        m->first[i] = -1;
    VERDICT(v, 0, NULL, NULL);

    /* keep-alives and leading CRLFs (RFC 3261 §18.3, RFC 5626) */
    while (off < len && (buf[off] == '\r' || buf[off] == '\n' || buf[off] == ' '))
        off++;
    if (off == len) {
        VERDICT(v, 0, NULL, "keepalive");
        return KL_EPROTO;
    }
    m->buf = malloc(len - off + 1);
    if (m->buf == NULL) {
        VERDICT(v, 0, NULL, "nomem");
        return KL_ENOMEM;
    }
    memcpy(m->buf, buf + off, len - off);
    m->len = len - off;
    m->buf[m->len] = '\0';
    p = m->buf;
    end = m->buf + m->len;

    /* start line */
    eol = memchr(p, '\n', m->len);
    if (eol == NULL || eol == p) {
        VERDICT(v, 0, NULL, "junk");
        return KL_EPROTO;
    }
    {
        const char *le = (eol > p && eol[-1] == '\r') ? eol - 1 : eol;
        size_t ll = (size_t)(le - p);

        if (memchr(p, '\0', ll) != NULL) {
            VERDICT(v, 0, NULL, "junk");
            return KL_EPROTO;
        }
        if (ll > 8 && memcmp(p, "SIP/2.0 ", 8) == 0) {
            uint64_t code;

            if (ll < 11 || !parse_uint(p + 8, 3, 699, &code) || code < 100 ||
                (ll > 11 && p[11] != ' ')) {
                VERDICT(v, 0, NULL, "junk");
                return KL_EPROTO;
            }
            m->status = (int)code;
            m->is_request = false;
        } else {
            sp1 = memchr(p, ' ', ll);
            if (sp1 == NULL || sp1 == p) {
                VERDICT(v, 0, NULL, "junk");
                return KL_EPROTO;
            }
            for (const char *q = p; q < sp1; q++) {
                if (!is_token((unsigned char)*q)) {
                    VERDICT(v, 0, NULL, "junk");
                    return KL_EPROTO;
                }
            }
            sp2 = le;
            while (sp2 > sp1 && *sp2 != ' ')
                sp2--;
            if (sp2 <= sp1 + 1 || le - sp2 < 5 || strncmp(sp2 + 1, "SIP/", 4) != 0) {
                VERDICT(v, 0, NULL, "junk");
                return KL_EPROTO;
            }
            m->is_request = true;
            m->method = kl_sip_method_from_str(p, (size_t)(sp1 - p));
            if ((size_t)(le - sp2 - 1) != 7 || strncmp(sp2 + 1, "SIP/2.0", 7) != 0)
                VERDICT(v, 505, "Version Not Supported", "bad_version");
            for (const char *q = sp1 + 1; q < sp2; q++) {
                if (*q == ' ' || (unsigned char)*q < 0x21) {
                    VERDICT(v, 400, "Bad Request - Malformed Request-Line", "bad_request_line");
                    break;
                }
            }
        }
    }

    /* header lines */
    start = (size_t)(eol + 1 - m->buf);
    while (start < m->len) {
        const char *line = m->buf + start, *nl = memchr(line, '\n', (size_t)(end - line));
        const char *le, *colon;
        size_t ll;

        if (nl == NULL) {
            /* the header section does not end */
            if (v->code == 0 && m->is_request)
                VERDICT(v, 400, "Bad Request - Incomplete Header Section", "no_blank_line");
            goto bad;
        }
        le = (nl > line && nl[-1] == '\r') ? nl - 1 : nl;
        ll = (size_t)(le - line);
        if (ll == 0) {
            blank = true;
            start = (size_t)(nl + 1 - m->buf);
            break;
        }
        if (memchr(line, '\0', ll) != NULL || memchr(line, '\r', ll) != NULL) {
            if (v->code == 0 && m->is_request)
                VERDICT(v, 400, "Bad Request - Invalid Characters in Header", "bad_chars");
            goto bad_keep;
        }
        if (*line == ' ' || *line == '\t') {
            /* continuation of the previous header (RFC 3261 §7.3.1) */
            kl_sip_hdr_t *h;

            if (m->nhdrs == 0) {
                if (v->code == 0 && m->is_request)
                    VERDICT(v, 400, "Bad Request - Malformed Header Line", "bad_header");
                goto bad_keep;
            }
            h = &m->hdrs[m->nhdrs - 1];
            h->len = (uint32_t)(nl + 1 - m->buf) - h->off;
            {
                const char *ve = le;

                while (ve > line && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                if (ve > line)
                    h->value_len = (uint32_t)(ve - m->buf) - h->value_off;
            }
            start = (size_t)(nl + 1 - m->buf);
            continue;
        }
        colon = memchr(line, ':', ll);
        if (colon == NULL || colon == line) {
            if (v->code == 0 && m->is_request)
                VERDICT(v, 400, "Bad Request - Malformed Header Line", "bad_header");
            goto bad_keep;
        }
        {
            const char *ne = colon, *vs = colon + 1, *ve = le;
            kl_sip_hdr_t *h;

            while (ne > line && (ne[-1] == ' ' || ne[-1] == '\t'))
                ne--;
            for (const char *q = line; q < ne; q++) {
                if (!is_token((unsigned char)*q)) {
                    if (v->code == 0 && m->is_request)
                        VERDICT(v, 400, "Bad Request - Malformed Header Name", "bad_header");
                    goto bad_keep;
                }
            }
            if (m->nhdrs >= KL_SIP_MAX_HDRS) {
                if (v->code == 0 && m->is_request)
                    VERDICT(v, 400, "Bad Request - Too Many Headers", "too_many_headers");
                goto bad_keep;
            }
            while (vs < le && (*vs == ' ' || *vs == '\t'))
                vs++;
            while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            h = &m->hdrs[m->nhdrs];
            h->off = (uint32_t)(line - m->buf);
            h->len = (uint32_t)(nl + 1 - line);
            h->name_len = (uint16_t)(ne - line);
            h->value_off = (uint32_t)(vs - m->buf);
            h->value_len = (uint32_t)(ve - vs);
            h->id = (uint8_t)hdr_id(line, (size_t)(ne - line));
            if (m->first[h->id] < 0)
                m->first[h->id] = (int)m->nhdrs;
            m->nhdrs++;
        }
        start = (size_t)(nl + 1 - m->buf);
    }
    if (!blank) {
        if (v->code == 0 && m->is_request)
            VERDICT(v, 400, "Bad Request - Incomplete Header Section", "no_blank_line");
        goto bad_keep;
    }
    m->hdr_len = start;

    /* framing (RFC 3261 §18.3) */
    cl_idx = m->first[KL_HDR_CONTENT_LENGTH];
    if (single_hdr_dup(m, KL_HDR_CONTENT_LENGTH)) {
        if (v->code == 0 && m->is_request)
            VERDICT(v, 400, "Bad Request - Conflicting Content-Length", "bad_content_length");
        goto bad_keep;
    }
    if (cl_idx >= 0) {
        const kl_sip_hdr_t *h = &m->hdrs[cl_idx];
        uint64_t cl;

        if (!parse_uint(m->buf + h->value_off, h->value_len, 0x7fffffff, &cl)) {
            if (v->code == 0 && m->is_request)
                VERDICT(v, 400, "Bad Request - Malformed Content-Length", "bad_content_length");
            goto bad_keep;
        }
        if (cl > m->len - m->hdr_len || (stream && cl != m->len - m->hdr_len)) {
            if (v->code == 0 && m->is_request)
                VERDICT(v, 400, "Bad Request - Content-Length larger than body",
                        "bad_content_length");
            goto bad_keep;
        }
        /* bytes past Content-Length in a datagram are discarded */
        m->body_len = (size_t)cl;
        m->len = m->hdr_len + m->body_len;
        m->buf[m->len] = '\0';
    } else if (stream) {
        if (v->code == 0 && m->is_request)
            VERDICT(v, 400, "Bad Request - Missing Content-Length", "no_content_length");
        goto bad_keep;
    } else {
        m->body_len = m->len - m->hdr_len;
    }

    {
        static const struct {
            kl_hdr_id_t id;
            const char *reason;
        } singles[] = {
            {KL_HDR_CALL_ID, "Bad Request - Duplicate Call-ID"},
            {KL_HDR_CSEQ, "Bad Request - Duplicate CSeq"},
            {KL_HDR_FROM, "Bad Request - Duplicate From"},
            {KL_HDR_TO, "Bad Request - Duplicate To"},
            {KL_HDR_MAX_FORWARDS, "Bad Request - Duplicate Max-Forwards"},
        };

        for (size_t i = 0; i < sizeof(singles) / sizeof(singles[0]); i++) {
            if (single_hdr_dup(m, singles[i].id)) {
                if (v->code == 0 && m->is_request)
                    VERDICT(v, 400, singles[i].reason, "duplicate_header");
                goto bad_keep;
            }
        }
    }
    if (v->code != 0)
        goto bad_keep;

    /* libosip2 sees the header section only, never a body */
    if (osip_message_init(&m->osip) != 0) {
        m->osip = NULL;
        VERDICT(v, 0, NULL, "nomem");
        goto bad_keep;
    }
    {
        char saved = m->buf[m->hdr_len];
        char clsave[16];
        kl_sip_hdr_t *clh = cl_idx >= 0 ? &m->hdrs[cl_idx] : NULL;
        int prc;

        /* libosip2 refuses a header section whose Content-Length promises a
         * body it is not given: it sees "0" (padded to the same length) */
        if (clh != NULL && clh->value_len <= sizeof(clsave)) {
            memcpy(clsave, m->buf + clh->value_off, clh->value_len);
            memset(m->buf + clh->value_off, ' ', clh->value_len);
            m->buf[clh->value_off] = '0';
        }
        m->buf[m->hdr_len] = '\0';
        prc = osip_message_parse(m->osip, m->buf, m->hdr_len);
        m->buf[m->hdr_len] = saved;
        if (clh != NULL && clh->value_len <= sizeof(clsave))
            memcpy(m->buf + clh->value_off, clsave, clh->value_len);
        if (prc != 0) {
            osip_message_free(m->osip);
            m->osip = NULL;
            if (m->is_request && m->first[KL_HDR_VIA] >= 0 && m->first[KL_HDR_CALL_ID] >= 0 &&
                m->first[KL_HDR_CSEQ] >= 0 && m->first[KL_HDR_FROM] >= 0 &&
                m->first[KL_HDR_TO] >= 0)
                VERDICT(v, 400, "Bad Request - Unparseable Header", "unparseable");
            else
                VERDICT(v, 0, NULL, "junk");
            goto bad_keep;
        }
    }
    if (!m->is_request) {
        if (m->osip->cseq != NULL && m->osip->cseq->method != NULL)
            m->method =
                kl_sip_method_from_str(m->osip->cseq->method, strlen(m->osip->cseq->method));
    }
    return KL_OK;

bad:
    m->hdr_len = 0;
bad_keep:
    if (!m->is_request)
        VERDICT(v, 0, NULL, v->why != NULL ? v->why : "bad_response");
    else if (m->method == KL_M_ACK)
        v->code = 0; /* an ACK is never answered */
    if (v->why == NULL)
        v->why = "junk";
    return KL_EPROTO;
}

void kl_sip_msg_free(kl_sip_msg_t *m)
{
    if (m == NULL)
        return;
    if (m->osip != NULL)
        osip_message_free(m->osip);
    m->osip = NULL;
    free(m->buf);
    m->buf = NULL;
    m->nhdrs = 0;
}

/* ---- header access ---- */

int kl_sip_hdr_next(const kl_sip_msg_t *m, kl_hdr_id_t id, int after)
{
    if (after < 0)
        return m->first[id];
    for (size_t i = (size_t)after + 1; i < m->nhdrs; i++) {
        if (m->hdrs[i].id == id)
            return (int)i;
    }
    return -1;
}

const char *kl_sip_hdr_value(const kl_sip_msg_t *m, kl_hdr_id_t id, size_t *len)
{
    int i = m->first[id];

    if (i < 0 || m->buf == NULL)
        return NULL;
    *len = m->hdrs[i].value_len;
    return m->buf + m->hdrs[i].value_off;
}

int kl_sip_hdr_find_name(const kl_sip_msg_t *m, const char *name, int after)
{
    kl_hdr_id_t id = hdr_id(name, strlen(name));
    size_t nl = strlen(name);

    for (size_t i = (size_t)(after + 1); i < m->nhdrs; i++) {
        const kl_sip_hdr_t *h = &m->hdrs[i];

        if (id != KL_HDR_OTHER ? h->id == id
                               : (h->name_len == nl && strncasecmp(m->buf + h->off, name, nl) == 0))
            return (int)i;
    }
    return -1;
}

int kl_sip_msg_max_forwards(const kl_sip_msg_t *m)
{
    size_t len;
    const char *v = kl_sip_hdr_value(m, KL_HDR_MAX_FORWARDS, &len);
    uint64_t mf;

    if (v == NULL)
        return -1;
    if (!parse_uint(v, len, 255, &mf))
        return -2;
    return (int)mf;
}

/* ---- checks ---- */

int kl_sip_msg_check_request(const kl_sip_msg_t *m, kl_sip_verdict_t *v)
{
    static const struct {
        kl_hdr_id_t id;
        const char *reason, *why;
    } mandatory[] = {
        {KL_HDR_VIA, "Bad Request - Missing Via", "missing_via"},
        {KL_HDR_FROM, "Bad Request - Missing From", "missing_from"},
        {KL_HDR_TO, "Bad Request - Missing To", "missing_to"},
        {KL_HDR_CALL_ID, "Bad Request - Missing Call-ID", "missing_call_id"},
        {KL_HDR_CSEQ, "Bad Request - Missing CSeq", "missing_cseq"},
    };
    osip_message_t *o = m->osip;
    const char *scheme;
    int mf;

    VERDICT(v, 0, NULL, NULL);
    for (size_t i = 0; i < sizeof(mandatory) / sizeof(mandatory[0]); i++) {
        if (m->first[mandatory[i].id] < 0) {
            VERDICT(v, 400, mandatory[i].reason, mandatory[i].why);
            goto fail;
        }
    }
    if (o == NULL || o->cseq == NULL || o->cseq->number == NULL || o->cseq->method == NULL) {
        VERDICT(v, 400, "Bad Request - Malformed CSeq", "bad_cseq");
        goto fail;
    }
    {
        uint64_t n;

        if (!parse_uint(o->cseq->number, strlen(o->cseq->number), 0x7fffffffu, &n)) {
            VERDICT(v, 400, "Bad Request - Malformed CSeq number", "bad_cseq");
            goto fail;
        }
    }
    if (o->sip_method == NULL || strcmp(o->cseq->method, o->sip_method) != 0) {
        VERDICT(v, 400, "Bad Request - CSeq method does not match", "bad_cseq");
        goto fail;
    }
    if (o->call_id == NULL || o->call_id->number == NULL || o->call_id->number[0] == '\0') {
        VERDICT(v, 400, "Bad Request - Malformed Call-ID", "bad_call_id");
        goto fail;
    }
    if (o->from == NULL || o->from->url == NULL) {
        VERDICT(v, 400, "Bad Request - Malformed From", "bad_from");
        goto fail;
    }
    if (o->to == NULL || o->to->url == NULL) {
        VERDICT(v, 400, "Bad Request - Malformed To", "bad_to");
        goto fail;
    }
    {
        osip_via_t *via = NULL;

        if (osip_message_get_via(o, 0, &via) < 0 || via == NULL || via->version == NULL ||
            strcmp(via->version, "2.0") != 0 || via->protocol == NULL || via->host == NULL) {
            VERDICT(v, 400, "Bad Request - Malformed Via", "bad_via");
            goto fail;
        }
    }
    if (o->req_uri == NULL || o->req_uri->scheme == NULL) {
        VERDICT(v, 400, "Bad Request - Malformed Request-URI", "bad_ruri");
        goto fail;
    }
    scheme = o->req_uri->scheme;
    if (strcasecmp(scheme, "sip") != 0 && strcasecmp(scheme, "sips") != 0 &&
        strcasecmp(scheme, "tel") != 0 && strcasecmp(scheme, "urn") != 0) {
        VERDICT(v, 416, "Unsupported URI Scheme", "bad_scheme");
        goto fail;
    }
    if ((strcasecmp(scheme, "sip") == 0 || strcasecmp(scheme, "sips") == 0) &&
        (o->req_uri->host == NULL || o->req_uri->host[0] == '\0')) {
        VERDICT(v, 400, "Bad Request - Request-URI without host", "bad_ruri");
        goto fail;
    }
    mf = kl_sip_msg_max_forwards(m);
    if (mf == -2) {
        VERDICT(v, 400, "Bad Request - Malformed Max-Forwards", "bad_max_forwards");
        goto fail;
    }
    if (mf == 0) {
        VERDICT(v, 483, "Too Many Hops", "too_many_hops");
        goto fail;
    }
    if (m->first[KL_HDR_PROXY_REQUIRE] >= 0 && m->method != KL_M_CANCEL) {
        size_t len;
        const char *pr = kl_sip_hdr_value(m, KL_HDR_PROXY_REQUIRE, &len);

        if (pr != NULL && len > 0) {
            VERDICT(v, 420, "Bad Extension", "proxy_require");
            goto fail;
        }
    }
    return KL_OK;
fail:
    if (m->method == KL_M_ACK)
        v->code = 0;
    return KL_EPROTO;
}

int kl_sip_msg_check_response(const kl_sip_msg_t *m)
{
    if (m->is_request || m->status < 100 || m->status > 699 || m->osip == NULL)
        return KL_EPROTO;
    if (m->first[KL_HDR_VIA] < 0 || m->first[KL_HDR_CALL_ID] < 0 || m->first[KL_HDR_CSEQ] < 0 ||
        m->first[KL_HDR_FROM] < 0 || m->first[KL_HDR_TO] < 0)
        return KL_EPROTO;
    if (m->osip->cseq == NULL || m->osip->cseq->method == NULL)
        return KL_EPROTO;
    return KL_OK;
}

/* ---- building responses ---- */

static bool has_tag_param(const char *v, size_t len)
{
    /* ;tag= outside <...> and quotes */
    bool quoted = false;
    int angle = 0;

    for (size_t i = 0; i + 4 < len; i++) {
        char c = v[i];

        if (quoted) {
            if (c == '"')
                quoted = false;
            continue;
        }
        if (c == '"')
            quoted = true;
        else if (c == '<')
            angle++;
        else if (c == '>' && angle > 0)
            angle--;
        else if (c == ';' && angle == 0 && strncasecmp(v + i + 1, "tag=", 4) == 0)
            return true;
    }
    return false;
}

int kl_sip_reply_raw(const kl_sip_msg_t *req, int code, const char *reason, const char *to_tag,
                     const char *extra, char *out, size_t outcap)
{
    size_t w = 0;
    int n;

    /* a response is routed by its Via: without one there is nowhere to send
     * it; the other headers are copied when present (a 400 for a missing
     * Call-ID still goes back) */
    if (req->buf == NULL || req->first[KL_HDR_VIA] < 0)
        return KL_EPROTO;
    n = snprintf(out, outcap, "SIP/2.0 %d %s\r\n", code, reason);
    if (n < 0 || (size_t)n >= outcap)
        return KL_ETOOBIG;
    w = (size_t)n;
    for (size_t i = 0; i < req->nhdrs; i++) {
        const kl_sip_hdr_t *h = &req->hdrs[i];
        bool crlf;

        if (h->id != KL_HDR_VIA && h->id != KL_HDR_FROM && h->id != KL_HDR_TO &&
            h->id != KL_HDR_CALL_ID && h->id != KL_HDR_CSEQ)
            continue;
        if (h->id != KL_HDR_VIA && (int)i != req->first[h->id])
            continue;
        if (h->id == KL_HDR_TO && to_tag != NULL &&
            !has_tag_param(req->buf + h->value_off, h->value_len)) {
            n = snprintf(out + w, outcap - w, "%.*s;tag=%s\r\n",
                         (int)(h->value_off + h->value_len - h->off), req->buf + h->off, to_tag);
            if (n < 0 || (size_t)n >= outcap - w)
                return KL_ETOOBIG;
            w += (size_t)n;
            continue;
        }
        crlf = h->len >= 1 && req->buf[h->off + h->len - 1] == '\n';
        if (w + h->len + 2 >= outcap)
            return KL_ETOOBIG;
        memcpy(out + w, req->buf + h->off, h->len);
        w += h->len;
        if (!crlf) {
            out[w++] = '\r';
            out[w++] = '\n';
        }
    }
    n = snprintf(out + w, outcap - w, "%sContent-Length: 0\r\n\r\n", extra != NULL ? extra : "");
    if (n < 0 || (size_t)n >= outcap - w)
        return KL_ETOOBIG;
    return (int)(w + (size_t)n);
}

/* ---- splicing ---- */

int kl_splice_apply(const char *src, size_t len, const kl_splice_t *edits, size_t nedits, char *out,
                    size_t outcap)
{
    size_t pos = 0, w = 0;

    for (size_t i = 0; i < nedits; i++) {
        const kl_splice_t *e = &edits[i];

        if (e->off < pos || e->off + e->del > len)
            return KL_EINVAL;
        if (w + (e->off - pos) + e->inslen > outcap)
            return KL_ETOOBIG;
        memcpy(out + w, src + pos, e->off - pos);
        w += e->off - pos;
        if (e->inslen > 0) {
            memcpy(out + w, e->ins, e->inslen);
            w += e->inslen;
        }
        pos = e->off + e->del;
    }
    if (w + (len - pos) > outcap)
        return KL_ETOOBIG;
    memcpy(out + w, src + pos, len - pos);
    w += len - pos;
    return (int)w;
}

/* End of the first comma-separated value in [s, s+len) (outside quotes
 * and <...>), or len when there is one value. */
static size_t first_value_end(const char *s, size_t len)
{
    bool quoted = false;
    int angle = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (quoted) {
            if (c == '\\' && i + 1 < len)
                i++;
            else if (c == '"')
                quoted = false;
            continue;
        }
        if (c == '"')
            quoted = true;
        else if (c == '<')
            angle++;
        else if (c == '>' && angle > 0)
            angle--;
        else if (c == ',' && angle == 0)
            return i;
    }
    return len;
}

int kl_sip_first_value_range(const kl_sip_msg_t *m, kl_hdr_id_t id, size_t *off, size_t *len)
{
    int i = m->first[id];
    const kl_sip_hdr_t *h;
    size_t e;

    if (i < 0)
        return KL_ENOENT;
    h = &m->hdrs[i];
    e = first_value_end(m->buf + h->value_off, h->value_len);
    while (e > 0 && (m->buf[h->value_off + e - 1] == ' ' || m->buf[h->value_off + e - 1] == '\t'))
        e--;
    *off = h->value_off;
    *len = e;
    return KL_OK;
}

int kl_sip_edit_pop_first(const kl_sip_msg_t *m, kl_hdr_id_t id, kl_splice_t *e)
{
    int i = m->first[id];
    const kl_sip_hdr_t *h;
    size_t end, next;

    if (i < 0)
        return KL_ENOENT;
    h = &m->hdrs[i];
    end = first_value_end(m->buf + h->value_off, h->value_len);
    if (end >= h->value_len) {
        *e = (kl_splice_t){.off = h->off, .del = h->len};
        return KL_OK;
    }
    next = end + 1;
    while (next < h->value_len &&
           (m->buf[h->value_off + next] == ' ' || m->buf[h->value_off + next] == '\t' ||
            m->buf[h->value_off + next] == '\r' || m->buf[h->value_off + next] == '\n'))
        next++;
    *e = (kl_splice_t){.off = h->value_off, .del = next};
    return KL_OK;
}

int kl_sip_edit_max_forwards(const kl_sip_msg_t *m, int value, char scratch[8], kl_splice_t *e)
{
    int i = m->first[KL_HDR_MAX_FORWARDS];
    int n;

    if (i < 0)
        return KL_ENOENT;
    n = snprintf(scratch, 8, "%d", value < 0 ? 0 : value);
    *e = (kl_splice_t){.off = m->hdrs[i].value_off,
                       .del = m->hdrs[i].value_len,
                       .ins = scratch,
                       .inslen = (size_t)n};
    return KL_OK;
}

size_t kl_sip_msg_headers_off(const kl_sip_msg_t *m)
{
    const char *nl = memchr(m->buf, '\n', m->hdr_len);

    return nl != NULL ? (size_t)(nl + 1 - m->buf) : 0;
}
