#include "core/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = KL_LOG_INFO;

static const char *const level_names[] = {"err", "warn", "notice", "info", "debug"};

kl_log_level_t kl_log_level_get(void)
{
    return (kl_log_level_t)atomic_load_explicit(&log_level, memory_order_relaxed);
}

void kl_log_level_set(kl_log_level_t level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

int kl_log_level_parse(const char *s, kl_log_level_t *out)
{
    for (int i = 0; i <= KL_LOG_DEBUG; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (kl_log_level_t)i;
            return 0;
        }
    }
    return -2; /* KL_EINVAL, without pulling errors.h into every log user */
}

const char *kl_log_level_name(kl_log_level_t level)
{
    if ((int)level < 0 || level > KL_LOG_DEBUG)
        return "?";
    return level_names[level];
}

void kl__log(kl_log_level_t level, const kl_log_ctx_t *ctx, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s", (long)(tv.tv_usec / 1000),
                 kl_log_level_name(level));
    n += (r > 0) ? (size_t)r : 0;
    if (ctx != NULL) {
        if (ctx->worker >= 0 && n < sizeof(line)) {
            r = snprintf(line + n, sizeof(line) - n, " worker=%d", ctx->worker);
            n += (r > 0) ? (size_t)r : 0;
        }
        if (ctx->call_id != NULL && n < sizeof(line)) {
            r = snprintf(line + n, sizeof(line) - n, " call_id=%.128s", ctx->call_id);
            n += (r > 0) ? (size_t)r : 0;
        }
        if (ctx->zone != NULL && n < sizeof(line)) {
            r = snprintf(line + n, sizeof(line) - n, " zone=%.64s", ctx->zone);
            n += (r > 0) ? (size_t)r : 0;
        }
    }
    if (n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_start(ap, fmt);
        r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
        va_end(ap);
        if (r > 0)
            n += ((size_t)r < sizeof(line) - n - 1) ? (size_t)r : sizeof(line) - n - 2;
    }
    if (n > sizeof(line) - 1)
        n = sizeof(line) - 1;
    line[n++] = '\n';
    /* one write: lines from several threads never interleave */
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere to report it */
    }
}
