/* One key=value line per event (STYLE.md "Logging").
 *
 * kl_log(KL_LOG_WARN, ctx, "event=breaker_open dest=%s", uri) writes
 *   ts=2026-11-25T10:00:00.123Z level=warn worker=0 call_id=abc zone=zone-a event=...
 * to stderr in one write(2). The level is checked before the arguments are
 * evaluated. <ctx> may be NULL. */
#ifndef KL_CORE_LOG_H
#define KL_CORE_LOG_H

#include <stdarg.h>
#include <stdbool.h>

typedef enum {
    KL_LOG_ERR = 0,
    KL_LOG_WARN = 1,
    KL_LOG_NOTICE = 2,
    KL_LOG_INFO = 3,
    KL_LOG_DEBUG = 4,
} kl_log_level_t;

typedef struct kl_log_ctx {
    int worker;          /* -1: not on a worker (main thread) */
    const char *call_id; /* NULL: omitted */
    const char *zone;    /* NULL: omitted */
} kl_log_ctx_t;

/* The level in force. The one process-wide mutable value besides the
 * current snapshot: it is read on every log call, before any snapshot exists,
 * so it is an atomic set from the snapshot at startup and at reload. */
kl_log_level_t kl_log_level_get(void);
void kl_log_level_set(kl_log_level_t level);

/* Parses "err", "warn", "notice", "info" or "debug". Returns KL_OK and sets
 * *<out>, or KL_EINVAL. */
int kl_log_level_parse(const char *s, kl_log_level_t *out);
const char *kl_log_level_name(kl_log_level_t level);

void kl__log(kl_log_level_t level, const kl_log_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define kl_log(level, ctx, ...)                                                                    \
    do {                                                                                           \
        if ((level) <= kl_log_level_get())                                                         \
            kl__log((level), (ctx), __VA_ARGS__);                                                  \
    } while (0)

#endif
