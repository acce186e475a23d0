/* Stream framing (RFC 3261 §18.3, §7.5): where a message's header section
 * ends and how long its body is. Knows start lines, header lines and
 * Content-Length; nothing else about SIP. */
#include "transport/framing.h"

#include "core/errors.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Above this a Content-Length is not a length but an attack or a bug. */
#define FRAME_CL_SANE 0x7fffffffu

static bool frame_ws(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Parses a Content-Length value: digits with optional surrounding
 * whitespace. Returns KL_OK and sets *<out>, or KL_EPROTO. */
static int frame_cl_value(const char *s, size_t len, size_t *out)
{
    size_t i = 0, digits = 0;
    uint64_t v = 0;

    while (i < len && frame_ws(s[i]))
        i++;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > FRAME_CL_SANE)
            return KL_EPROTO;
    }
    while (i < len && frame_ws(s[i]))
        i++;
    if (digits == 0 || i != len)
        return KL_EPROTO;
    *out = (size_t)v;
    return KL_OK;
}

/* True when the header line [<line>, <line>+<len>) is named Content-Length
 * or its compact form l (RFC 3261 §7.3.3), case-insensitively, with optional
 * whitespace before the colon; *<value> then points past the colon. */
static bool frame_is_cl(const char *line, size_t len, const char **value)
{
    const char *colon = memchr(line, ':', len);
    size_t nlen;

    if (colon == NULL)
        return false; /* not a header line: the SIP layer judges it */
    nlen = (size_t)(colon - line);
    while (nlen > 0 && frame_ws(line[nlen - 1]))
        nlen--;
    if ((nlen == 14 && strncasecmp(line, "content-length", 14) == 0) ||
        (nlen == 1 && (line[0] == 'l' || line[0] == 'L'))) {
        *value = colon + 1;
        return true;
    }
    return false;
}

int kl_frame_find(const char *buf, size_t len, size_t max, bool need_cl, kl_frame_t *f)
{
    size_t skip = 0, pos, cl = 0;
    bool has_cl = false;

    while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n'))
        skip++;
    pos = skip;
    for (;;) {
        const char *line = buf + pos, *nl, *value;
        size_t ll, v;

        nl = pos < len ? memchr(line, '\n', len - pos) : NULL;
        if (nl == NULL)
            return len - skip > max ? KL_ETOOBIG : KL_EINCOMPLETE;
        ll = (size_t)(nl - line);
        if (ll > 0 && line[ll - 1] == '\r')
            ll--;
        pos = (size_t)(nl + 1 - buf);
        if (pos - skip > max)
            return KL_ETOOBIG;
        if (ll == 0)
            break; /* the blank line (never the first: CRs and LFs were skipped) */
        if (line == buf + skip || frame_ws(line[0]))
            continue; /* the start line, or a folded continuation */
        if (!frame_is_cl(line, ll, &value))
            continue;
        if (frame_cl_value(value, (size_t)(line + ll - value), &v) != KL_OK)
            return KL_EPROTO;
        if (has_cl && v != cl)
            return KL_EPROTO;
        cl = v;
        has_cl = true;
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

/* RFC 3261 §25.1 token characters, which a method name is made of. */
static bool frame_token(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("-.!%*_+`'~", ch) != NULL);
}

bool kl_frame_start_byte_ok(char ch)
{
    return frame_token(ch);
}

bool kl_frame_start_line_ok(const char *line, size_t len)
{
    size_t i;

    if (len > 0 && line[len - 1] == '\r')
        len--;
    /* a response: SIP/2.0 SP 3DIGIT ... */
    if (len >= 11 && strncasecmp(line, "SIP/2.0 ", 8) == 0)
        return true;
    /* a request: token SP Request-URI SP SIP/2.0 */
    for (i = 0; i < len && frame_token(line[i]); i++)
        ;
    if (i == 0 || i >= len || line[i] != ' ')
        return false;
    return len >= i + 10 && strncasecmp(line + len - 8, " SIP/2.0", 8) == 0;
}
