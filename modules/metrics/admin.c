/* The admin HTTP API (see admin.h). */
#include "modules/metrics/admin.h"

#include "core/cfg.h"
#include "core/errors.h"
#include "core/log.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_MAX_BODY     65536
#define ADMIN_MAX_FAULT_MS (10u * 60 * 1000) /* a fault lifts itself within 10 min */

struct kl_admin {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    char *address;
    uint16_t port;
    char *token; /* NULL or "": POSTs unguarded */
    const kl_admin_host_t *host;
    kl_log_ctx_t log;
    unsigned next_fault_id;
};

/* ---- answers ---- */

static void reply_json(struct evhttp_request *req, int code, const char *reason, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    char *s = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (buf != NULL && s != NULL) {
        evbuffer_add(buf, s, strlen(s));
        evbuffer_add(buf, "\n", 1);
    }
    evhttp_send_reply(req, code, reason, buf);
    free(s);
    if (buf != NULL)
        evbuffer_free(buf);
    json_decref(body);
}

static void reply_error(struct evhttp_request *req, int code, const char *reason, const char *msg)
{
    reply_json(req, code, reason, json_pack("{s:s, s:i}", "error", msg, "code", code));
}

/* ---- scrape ---- */

static void scrape_worker(kl_worker_t *w, void *arg)
{
    kl_stats_t *into = arg;

    kl_stats_merge(into, w->stats);
    if (w->collect != NULL)
        w->collect(w, into);
}

char *kl_admin_scrape(const kl_admin_host_t *host, size_t *len)
{
    kl_stats_t *all = kl_stats_new();
    char *out;

    if (all == NULL)
        return NULL;
    for (unsigned i = 0; i < *host->nworkers; i++)
        kl_worker_call(host->workers[i], scrape_worker, all);
    kl_stats_merge(all, host->daemon_stats);
    out = kl_stats_render(all, len);
    kl_stats_free(all);
    return out;
}

static void h_metrics(kl_admin_t *a, struct evhttp_request *req)
{
    size_t len = 0;
    char *text = kl_admin_scrape(a->host, &len);
    struct evbuffer *buf;

    if (text == NULL) {
        reply_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    buf = evbuffer_new();
    if (buf == NULL) {
        free(text);
        reply_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    evbuffer_add(buf, text, len);
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
}

/* ---- state ---- */

typedef struct state_call {
    const kl_admin_host_t *host;
    json_t *out;
} state_call_t;

static void state_worker(kl_worker_t *w, void *arg)
{
    state_call_t *sc = arg;

    sc->out = sc->host->worker_state != NULL ? sc->host->worker_state(w) : NULL;
}

/* Adds the integer members <keys> of <src> into <dst>. */
static void sum_ints(json_t *dst, json_t *src, const char *const *keys)
{
    for (; *keys != NULL; keys++) {
        json_t *d = json_object_get(dst, *keys), *s = json_object_get(src, *keys);

        if (json_is_integer(d) && json_is_integer(s))
            json_integer_set(d, json_integer_value(d) + json_integer_value(s));
    }
}

/* Sums the per-worker counters of <src> (another worker's clusters) into
 * <dst>, destination by destination where the names agree. Health and
 * weights are each worker's own and taken from the first one. */
static void state_merge(json_t *dst, json_t *src)
{
    static const char *const keys[] = {"in_flight", "dialogs",  "attempts", "successes",
                                       "failures",  "timeouts", NULL};
    size_t ci, zi, di;
    json_t *dc, *dz, *dd;

    json_array_foreach(dst, ci, dc)
    {
        json_t *sc = json_array_get(src, ci);

        if (sc == NULL || !json_equal(json_object_get(dc, "name"), json_object_get(sc, "name")))
            continue;
        json_array_foreach(json_object_get(dc, "zones"), zi, dz)
        {
            json_t *sz = json_array_get(json_object_get(sc, "zones"), zi);

            if (sz == NULL)
                continue;
            json_array_foreach(json_object_get(dz, "destinations"), di, dd)
            {
                json_t *sd = json_array_get(json_object_get(sz, "destinations"), di);

                if (sd != NULL &&
                    json_equal(json_object_get(dd, "uri"), json_object_get(sd, "uri")))
                    sum_ints(dd, sd, keys);
            }
        }
    }
}

static json_t *state_clusters(const kl_admin_host_t *host)
{
    json_t *all = NULL;

    for (unsigned i = 0; i < *host->nworkers; i++) {
        state_call_t sc = {.host = host};

        if (kl_worker_call(host->workers[i], state_worker, &sc) != KL_OK || sc.out == NULL)
            continue;
        if (all == NULL) {
            all = sc.out;
        } else {
            state_merge(all, sc.out);
            json_decref(sc.out);
        }
    }
    return all != NULL ? all : json_array();
}

static void h_state(kl_admin_t *a, struct evhttp_request *req)
{
    const kl_conf_t *conf = a->host->conf(a->host->arg);
    json_t *body = json_pack("{s:s, s:I, s:s, s:s?, s:s?, s:i, s:o}", "version", KEEL_VERSION,
                             "config_version", (json_int_t)conf->version, "config_file",
                             conf->file != NULL ? conf->file : "", "node", conf->node_id,
                             "local_zone", conf->node_zone, "workers", (int)*a->host->nworkers,
                             "clusters", state_clusters(a->host));

    if (body == NULL) {
        reply_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    reply_json(req, 200, "OK", body);
}

/* Ready: config loaded (always, once running), every listener bound (the
 * workers started), and at least one destination up in every cluster. */
static void h_ready(kl_admin_t *a, struct evhttp_request *req)
{
    json_t *clusters = state_clusters(a->host), *c, *problems = json_array();
    size_t i;

    json_array_foreach(clusters, i, c)
    {
        json_int_t up = 0;
        json_t *z;
        size_t j;

        json_array_foreach(json_object_get(c, "zones"), j, z)
        {
            up += json_integer_value(json_object_get(z, "destinations_up"));
        }
        if (up == 0) {
            char msg[200];

            snprintf(msg, sizeof(msg), "cluster %s has no destination up",
                     json_string_value(json_object_get(c, "name")));
            json_array_append_new(problems, json_string(msg));
        }
    }
    json_decref(clusters);
    if (*a->host->nworkers == 0)
        json_array_append_new(problems, json_string("no worker running"));
    if (json_array_size(problems) > 0)
        reply_json(req, 503, "Service Unavailable",
                   json_pack("{s:b, s:o}", "ready", 0, "problems", problems));
    else
        reply_json(req, 200, "OK", json_pack("{s:b, s:o}", "ready", 1, "problems", problems));
}

static void h_reload(kl_admin_t *a, struct evhttp_request *req)
{
    char err[4096] = "";
    int rc = a->host->reload(a->host->arg, err, sizeof(err));

    if (rc != KL_OK) {
        size_t n = strlen(err);
        json_t *lines = json_array();
        char *p = err;

        while (n > 0 && err[n - 1] == '\n')
            err[--n] = '\0';
        for (char *nl; p != NULL && *p != '\0'; p = nl != NULL ? nl + 1 : NULL) {
            nl = strchr(p, '\n');
            json_array_append_new(lines,
                                  nl != NULL ? json_stringn(p, (size_t)(nl - p)) : json_string(p));
        }
        reply_json(req, 400, "Bad Request",
                   json_pack("{s:s, s:s, s:o, s:i}", "result", "error", "error", err, "errors",
                             lines, "code", 400));
        return;
    }
    reply_json(req, 200, "OK",
               json_pack("{s:s, s:I}", "result", "ok", "config_version",
                         (json_int_t)a->host->conf(a->host->arg)->version));
}

typedef struct drain_call {
    const kl_admin_host_t *host;
    const char *zone, *uri;
    bool on;
    int rc;
} drain_call_t;

static void drain_worker(kl_worker_t *w, void *arg)
{
    drain_call_t *dc = arg;

    dc->rc = dc->host->worker_drain(w, dc->zone, dc->uri, dc->on);
}

static void h_drain(kl_admin_t *a, struct evhttp_request *req, const char *zone, const char *uri,
                    bool on)
{
    drain_call_t dc = {.host = a->host, .zone = zone, .uri = uri, .on = on, .rc = KL_ENOENT};

    for (unsigned i = 0; i < *a->host->nworkers; i++) {
        dc.rc = KL_ENOENT;
        kl_worker_call(a->host->workers[i], drain_worker, &dc);
        if (dc.rc != KL_OK)
            break;
    }
    if (dc.rc == KL_ENOENT) {
        char msg[600];

        if (uri != NULL)
            snprintf(msg, sizeof(msg), "no destination %.250s in zone %.250s", uri, zone);
        else
            snprintf(msg, sizeof(msg), "no zone %.250s", zone);
        reply_error(req, 404, "Not Found", msg);
        return;
    }
    if (dc.rc != KL_OK) {
        reply_error(req, 500, "Internal Server Error", kl_strerror(dc.rc));
        return;
    }
    kl_log(KL_LOG_NOTICE, &a->log, "event=%s zone=%s%s%s", on ? "drained" : "undrained", zone,
           uri != NULL ? " dest=" : "", uri != NULL ? uri : "");
    reply_json(req, 200, "OK",
               uri != NULL
                   ? json_pack("{s:s, s:s, s:b}", "zone", zone, "destination", uri, "drained", on)
                   : json_pack("{s:s, s:b}", "zone", zone, "drained", on));
}

/* ---- fault injection ---- */

typedef struct fault_call {
    const kl_admin_host_t *host;
    kl_fault_t f;
    unsigned id;
    int rc;
    kl_fault_t list[KL_ROUTER_MAX_FAULTS];
    size_t n;
} fault_call_t;

static void fault_add_worker(kl_worker_t *w, void *arg)
{
    fault_call_t *fc = arg;

    fc->rc = fc->host->worker_fault_add(w, &fc->f);
}

static void fault_del_worker(kl_worker_t *w, void *arg)
{
    fault_call_t *fc = arg;

    fc->rc = fc->host->worker_fault_del(w, fc->id);
}

static void fault_list_worker(kl_worker_t *w, void *arg)
{
    fault_call_t *fc = arg;

    fc->n = fc->host->worker_faults(w, fc->list, KL_ROUTER_MAX_FAULTS);
}

static json_t *fault_json(const kl_fault_t *f, uint64_t now_ms)
{
    json_t *o =
        json_pack("{s:i, s:s, s:s, s:b, s:I}", "id", (int)f->id, "kind",
                  kl_fault_kind_name(f->kind), "zone", f->zone, "in_dialog", f->in_dialog,
                  "remaining_ms", (json_int_t)(f->until_ms > now_ms ? f->until_ms - now_ms : 0));

    if (o != NULL && f->uri[0] != '\0')
        json_object_set_new(o, "destination", json_string(f->uri));
    if (o != NULL && f->kind == KL_FAULT_DELAY)
        json_object_set_new(o, "delay_ms", json_integer(f->delay_ms));
    return o;
}

/* A duration member: "250ms"/"5s"/"2m" or a number of seconds. */
static int json_duration(json_t *v, uint32_t *ms)
{
    if (json_is_string(v))
        return kl_cfg_duration(json_string_value(v), ms);
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 86400) {
        *ms = (uint32_t)json_integer_value(v) * 1000u;
        return KL_OK;
    }
    return KL_EINVAL;
}

static void h_fault_add(kl_admin_t *a, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *body = malloc(len + 1);
    json_error_t jerr;
    json_t *j, *v;
    fault_call_t fc = {.host = a->host};
    const char *kind, *zone;
    uint32_t dur = 0, delay = 0;
    char msg[300];
    uint64_t now = kl_now_ms();

    if (body == NULL) {
        reply_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    evbuffer_copyout(in, body, len);
    body[len] = '\0';
    j = json_loadb(body, len, 0, &jerr);
    free(body);
    if (!json_is_object(j)) {
        snprintf(msg, sizeof(msg), "expected a JSON object: %s (line %d, column %d)",
                 j == NULL ? jerr.text : "not an object", jerr.line, jerr.column);
        json_decref(j);
        reply_error(req, 400, "Bad Request", msg);
        return;
    }
    kind = json_string_value(json_object_get(j, "kind"));
    zone = json_string_value(json_object_get(j, "zone"));
    if (kind == NULL || (strcmp(kind, "abort") != 0 && strcmp(kind, "delay") != 0 &&
                         strcmp(kind, "blackhole") != 0)) {
        reply_error(req, 400, "Bad Request",
                    "kind: expected \"abort\", \"delay\" or \"blackhole\"");
        goto out;
    }
    fc.f.kind = kind[0] == 'a'   ? KL_FAULT_ABORT
                : kind[0] == 'd' ? KL_FAULT_DELAY
                                 : KL_FAULT_BLACKHOLE;
    if (zone == NULL || strlen(zone) >= sizeof(fc.f.zone)) {
        reply_error(req, 400, "Bad Request", "zone: expected the name of a zone");
        goto out;
    }
    snprintf(fc.f.zone, sizeof(fc.f.zone), "%s", zone);
    v = json_object_get(j, "destination");
    if (v != NULL && (!json_is_string(v) || json_string_length(v) >= sizeof(fc.f.uri))) {
        reply_error(req, 400, "Bad Request", "destination: expected a destination's URI");
        goto out;
    }
    if (v != NULL)
        snprintf(fc.f.uri, sizeof(fc.f.uri), "%s", json_string_value(v));
    if (json_duration(json_object_get(j, "duration"), &dur) != KL_OK || dur == 0 ||
        dur > ADMIN_MAX_FAULT_MS) {
        reply_error(req, 400, "Bad Request",
                    "duration: expected a duration above 0 and at most 10m (\"30s\", \"2m\", or "
                    "seconds)");
        goto out;
    }
    if (fc.f.kind == KL_FAULT_DELAY &&
        (json_duration(json_object_get(j, "delay"), &delay) != KL_OK || delay == 0 ||
         delay > 60000)) {
        reply_error(req, 400, "Bad Request",
                    "delay: a delay fault needs a delay above 0 and at most 60s (\"200ms\")");
        goto out;
    }
    v = json_object_get(j, "in_dialog");
    if (v != NULL && !json_is_boolean(v)) {
        reply_error(req, 400, "Bad Request", "in_dialog: expected true or false");
        goto out;
    }
    fc.f.in_dialog = v != NULL && json_is_true(v);
    fc.f.delay_ms = delay;
    fc.f.until_ms = now + dur;
    fc.f.id = ++a->next_fault_id;
    for (unsigned i = 0; i < *a->host->nworkers; i++) {
        fc.rc = KL_ENOENT;
        kl_worker_call(a->host->workers[i], fault_add_worker, &fc);
        if (fc.rc != KL_OK)
            break;
    }
    if (fc.rc == KL_ENOENT) {
        snprintf(msg, sizeof(msg), "no %s %.200s", fc.f.uri[0] ? "destination" : "zone",
                 fc.f.uri[0] ? fc.f.uri : fc.f.zone);
        reply_error(req, 404, "Not Found", msg);
        goto out;
    }
    if (fc.rc != KL_OK) {
        reply_error(req, 409, "Conflict", "too many active faults");
        goto out;
    }
    {
        const char *l[] = {kind};

        kl_stats_add(a->host->daemon_stats, KL_ST_FAULTS_INJECTED, l, 1);
    }
    kl_log(KL_LOG_WARN, &a->log,
           "event=fault_injected id=%u kind=%s zone=%s dest=%s duration_ms=%u delay_ms=%u "
           "in_dialog=%d",
           fc.f.id, kind, fc.f.zone, fc.f.uri[0] ? fc.f.uri : "*", dur, delay, fc.f.in_dialog);
    reply_json(req, 201, "Created", fault_json(&fc.f, now));
out:
    json_decref(j);
}

static void h_faults_list(kl_admin_t *a, struct evhttp_request *req)
{
    fault_call_t fc = {.host = a->host};
    json_t *arr = json_array();
    uint64_t now = kl_now_ms();

    if (*a->host->nworkers > 0)
        kl_worker_call(a->host->workers[0], fault_list_worker, &fc);
    for (size_t i = 0; i < fc.n; i++)
        json_array_append_new(arr, fault_json(&fc.list[i], now));
    reply_json(req, 200, "OK", json_pack("{s:o}", "faults", arr));
}

static void h_fault_del(kl_admin_t *a, struct evhttp_request *req, const char *ids)
{
    fault_call_t fc = {.host = a->host, .rc = KL_ENOENT};
    char *end = NULL;
    unsigned long id = strtoul(ids, &end, 10);
    bool found = false;

    if (end == ids || *end != '\0' || id == 0 || id > 0xffffffffu) {
        reply_error(req, 404, "Not Found", "no such fault");
        return;
    }
    fc.id = (unsigned)id;
    for (unsigned i = 0; i < *a->host->nworkers; i++) {
        kl_worker_call(a->host->workers[i], fault_del_worker, &fc);
        found = found || fc.rc == KL_OK;
    }
    if (!found) {
        reply_error(req, 404, "Not Found", "no such fault (or it has expired)");
        return;
    }
    kl_log(KL_LOG_WARN, &a->log, "event=fault_lifted id=%u", fc.id);
    reply_json(req, 200, "OK", json_pack("{s:i, s:b}", "id", (int)fc.id, "lifted", 1));
}

/* ---- routing ---- */

static bool authorized(kl_admin_t *a, struct evhttp_request *req)
{
    const char *h;
    size_t tl;

    if (a->token == NULL || a->token[0] == '\0')
        return true;
    h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    tl = strlen(a->token);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    /* constant time over the token's length */
    {
        size_t hl = strlen(h);
        unsigned char diff = (unsigned char)(hl != tl);

        for (size_t i = 0; i < tl; i++)
            diff |= (unsigned char)(a->token[i] ^ (i < hl ? h[i] : 0));
        return diff == 0;
    }
}

static void method_not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply_error(req, 405, "Method Not Allowed", "method not allowed on this path");
}

/* Splits <path> ("/a/b/c") into at most <max> percent-decoded segments.
 * Returns the count, -1 when a segment does not decode, -2 when there are
 * more. The segments are new strings in <seg>. */
static int split_path(const char *path, char **seg, int max)
{
    int n = 0;
    const char *p = path;

    while (*p == '/')
        p++;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        char *raw, *dec;

        if (n == max) {
            while (n > 0)
                free(seg[--n]);
            return -2; /* deeper than any path of the API */
        }
        raw = strndup(p, l);
        if (raw == NULL)
            goto fail;
        dec = evhttp_uridecode(raw, 0, NULL);
        free(raw);
        if (dec == NULL)
            goto fail;
        seg[n++] = dec;
        p += l;
        while (*p == '/')
            p++;
    }
    return n;
fail:
    while (n > 0)
        free(seg[--n]);
    return -1;
}

static void admin_cb(struct evhttp_request *req, void *arg)
{
    kl_admin_t *a = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    bool get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
    bool post = cmd == EVHTTP_REQ_POST;
    char *seg[8];
    int n;

    if (path == NULL || path[0] == '\0')
        path = "/";
    n = split_path(path, seg, 8);
    if (n == -2) {
        reply_error(req, 404, "Not Found", "no such path");
        return;
    }
    if (n < 0) {
        reply_error(req, 400, "Bad Request", "the path does not decode");
        return;
    }
    if ((post || cmd == EVHTTP_REQ_DELETE) && !authorized(a, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"keel\"");
        reply_error(req, 401, "Unauthorized", "a valid bearer token is needed");
        goto out;
    }
    if (post && evbuffer_get_length(evhttp_request_get_input_buffer(req)) > ADMIN_MAX_BODY) {
        reply_error(req, 413, "Payload Too Large", "request body too large");
        goto out;
    }
#define IS(i, s) (n > (i) && strcmp(seg[(i)], (s)) == 0)
    if (n == 1 && (IS(0, "healthz") || IS(0, "readyz") || IS(0, "metrics"))) {
        if (!get)
            method_not_allowed(req, "GET, HEAD");
        else if (IS(0, "healthz"))
            reply_json(req, 200, "OK", json_pack("{s:s}", "status", "ok"));
        else if (IS(0, "readyz"))
            h_ready(a, req);
        else
            h_metrics(a, req);
    } else if (n == 2 && IS(0, "v1") && IS(1, "state")) {
        if (!get)
            method_not_allowed(req, "GET, HEAD");
        else
            h_state(a, req);
    } else if (n == 2 && IS(0, "v1") && IS(1, "reload")) {
        if (!post)
            method_not_allowed(req, "POST");
        else
            h_reload(a, req);
    } else if (n == 4 && IS(0, "v1") && IS(1, "zones") && (IS(3, "drain") || IS(3, "undrain"))) {
        if (!post)
            method_not_allowed(req, "POST");
        else
            h_drain(a, req, seg[2], NULL, IS(3, "drain"));
    } else if (n == 6 && IS(0, "v1") && IS(1, "zones") && IS(3, "destinations") &&
               (IS(5, "drain") || IS(5, "undrain"))) {
        if (!post)
            method_not_allowed(req, "POST");
        else
            h_drain(a, req, seg[2], seg[4], IS(5, "drain"));
    } else if ((n == 2 || n == 3) && IS(0, "v1") && IS(1, "faults")) {
        if (!a->host->conf(a->host->arg)->admin.faults)
            reply_error(req, 403, "Forbidden", "fault injection is off (admin.faults: false)");
        else if (n == 2 && get)
            h_faults_list(a, req);
        else if (n == 2 && post)
            h_fault_add(a, req);
        else if (n == 3 && cmd == EVHTTP_REQ_DELETE)
            h_fault_del(a, req, seg[2]);
        else
            method_not_allowed(req, n == 2 ? "GET, HEAD, POST" : "DELETE");
    } else {
        reply_error(req, 404, "Not Found", "no such path");
    }
#undef IS
out:
    while (n > 0)
        free(seg[--n]);
}

/* ---- life ---- */

static int admin_bind(kl_admin_t *a, const kl_conf_admin_t *conf)
{
    struct evhttp_bound_socket *s =
        evhttp_bind_socket_with_handle(a->http, conf->address, conf->port);
    char *addr;

    if (s == NULL) {
        kl_log(KL_LOG_ERR, &a->log, "event=admin_listen_failed address=%s port=%u err=\"%s\"",
               conf->address, conf->port, strerror(errno));
        return KL_EIO;
    }
    addr = strdup(conf->address);
    if (addr == NULL) {
        evhttp_del_accept_socket(a->http, s);
        return KL_ENOMEM;
    }
    if (a->sock != NULL)
        evhttp_del_accept_socket(a->http, a->sock);
    free(a->address);
    a->sock = s;
    a->address = addr;
    a->port = conf->port;
    kl_log(KL_LOG_INFO, &a->log, "event=admin_listening address=%s port=%u", conf->address,
           conf->port);
    return KL_OK;
}

static void admin_set_token(kl_admin_t *a, const char *token)
{
    free(a->token);
    a->token = (token != NULL && token[0] != '\0') ? strdup(token) : NULL;
}

kl_admin_t *kl_admin_new(struct event_base *base, const kl_conf_admin_t *conf,
                         const kl_admin_host_t *host)
{
    kl_admin_t *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return NULL;
    a->base = base;
    a->host = host;
    a->log.worker = -1;
    a->http = evhttp_new(base);
    if (a->http == NULL)
        goto fail;
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
    evhttp_set_max_headers_size(a->http, 16384);
    evhttp_set_timeout(a->http, 30);
    evhttp_set_gencb(a->http, admin_cb, a);
    if (admin_bind(a, conf) != KL_OK)
        goto fail;
    admin_set_token(a, conf->token);
    return a;
fail:
    kl_admin_free(a);
    return NULL;
}

int kl_admin_reload(kl_admin_t *a, const kl_conf_admin_t *conf)
{
    int rc = KL_OK;

    if (conf->address != NULL &&
        (a->address == NULL || strcmp(a->address, conf->address) != 0 || a->port != conf->port))
        rc = admin_bind(a, conf);
    admin_set_token(a, conf->token);
    return rc;
}

void kl_admin_free(kl_admin_t *a)
{
    if (a == NULL)
        return;
    if (a->http != NULL)
        evhttp_free(a->http);
    free(a->address);
    free(a->token);
    free(a);
}
