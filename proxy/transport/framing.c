#include "transport/framing.h"

#include "core/errors.h"

#include <string.h>
#include <strings.h>

/* Content-Length value: digits with optional surrounding whitespace */
static int cl_value(const char *s, size_t len, size_t *out)
{
    size_t i = 0, v = 0, digits = 0;

    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
        if (digits >= 10)
            return KL_EPROTO;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
        i++;
    if (digits == 0 || i != len || v > 0x7fffffff)
        return KL_EPROTO;
    *out = v;
    return KL_OK;
}

int kl_frame_find(const char *buf, size_t len, size_t max, bool need_cl, kl_frame_t *f)
{
    size_t skip = 0, pos, cl = 0;
    bool has_cl = false;

    while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n'))
        skip++;
    pos = skip;
    /* header lines until an empty one */
    for (;;) {
        const char *line = buf + pos, *nl;
        size_t ll;

        if (pos >= len) {
            if (len - skip > max)
                return KL_ETOOBIG;
            return KL_EINCOMPLETE;
        }
        nl = memchr(line, '\n', len - pos);
        if (nl == NULL) {
            if (len - skip > max)
                return KL_ETOOBIG;
            return KL_EINCOMPLETE;
        }
        ll = (size_t)(nl - line);
        if (ll > 0 && line[ll - 1] == '\r')
            ll--;
        pos = (size_t)(nl + 1 - buf);
        if (pos - skip > max)
            return KL_ETOOBIG;
        if (ll == 0) {
            if (line == buf + skip)
                continue; /* cannot happen: CRLFs were skipped */
            break;
        }
        if (line == buf + skip)
            continue; /* the start line */
        if (line[0] == ' ' || line[0] == '\t')
            continue;
        {
            const char *colon = memchr(line, ':', ll);
            size_t nlen;

            if (colon == NULL)
                continue; /* the SIP layer judges malformed lines */
            nlen = (size_t)(colon - line);
            while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
                nlen--;
            if ((nlen == 14 && strncasecmp(line, "content-length", 14) == 0) ||
                (nlen == 1 && (line[0] == 'l' || line[0] == 'L'))) {
                size_t v;

                if (cl_value(colon + 1, (size_t)(line + ll - colon - 1), &v) != KL_OK)
                    return KL_EPROTO;
                if (has_cl && v != cl)
                    return KL_EPROTO;
                cl = v;
                has_cl = true;
            }
        }
    }
    if (need_cl && !has_cl)
        return KL_EPROTO;
    if ((pos - skip) + cl > max)
        return KL_ETOOBIG;
    f->skip = skip;
    f->hdr_len = pos - skip;
    f->body_len = cl;
    f->has_cl = has_cl;
    return KL_OK;
}
