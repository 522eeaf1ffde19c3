/*
 * TLS for the native upstream client (h1.c): the OpenSSL setup that h1.c drives over its own
 * sockets. Kept apart from h1.c so the HTTP/1.1 state machine does not grow OpenSSL's details,
 * and so the verification policy (what is trusted, what is checked) is in one short file.
 *
 * The engine never touches a socket, so the worker's libuv loop stays in charge of all I/O: it
 * writes into a BIO of ours (tls_out) whose bytes h1.c sends from where they lie (tls_out_peek,
 * tls_out_consume), and reads ciphertext from another (tls_in) that serves it from where h1.c
 * read it from the uv_tcp_t (tls_in_lend), copying only what the engine left unread when the
 * read is over (tls_in_keep). Memory BIOs there cost a copy of every byte received and the
 * zeroing of the buffer it grew (~24 KB per 50-event stream, callgrind), and on the way out an
 * allocation and a copy of every flight of records (~900 instructions a proxied request), where
 * nginx's socket BIO costs neither.
 *
 * Policy, always on: TLS 1.2 or newer, the peer's certificate chain verified against the system
 * CA store plus an optional PEM file of extra CAs (a provider's tls_ca_file), the host name (or IP
 * literal) checked against the certificate, SNI sent for names, ALPN offering only http/1.1.
 * Sessions are kept by the caller (one per pool) and offered again on the next connection, so a
 * new connection to a known upstream costs an abbreviated handshake.
 */
#include "upstream/tls.h"

#include "common/buf.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_PATH_MAX 4096

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    tls_ctx *next;
    char ca_file[]; /* "" = the system store only */
};

/* TLS 1.3 sessions arrive after the handshake (NewSessionTicket); the SSL's app data is the
 * caller's slot for the pool's last session. */
static int tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
    SSL_SESSION **slot = SSL_get_app_data(ssl);
    if (!slot || !SSL_SESSION_is_resumable(sess)) return 0;
    if (*slot) SSL_SESSION_free(*slot);
    *slot = sess;
    return 1; /* we keep the reference */
}

tls_ctx *tls_ctx_new(const char *ca_file, char *err, size_t errlen)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    size_t cl = ca_file ? strlen(ca_file) : 0;
    tls_ctx *t;
    SSL_CTX *c;

    if (cl >= TLS_PATH_MAX || !(t = calloc(1, sizeof *t + cl + 1))) {
        snprintf(err, errlen, "TLS setup failed: out of memory");
        return NULL;
    }
    memcpy(t->ca_file, cl ? ca_file : "", cl + 1);
    ERR_clear_error();
    c = SSL_CTX_new(TLS_client_method());
    if (!c) goto fail;
    t->ssl_ctx = c;
    if (!SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION)) goto fail;
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    /* The system store: the bundle file is read now, once per worker; the hashed directory is
     * consulted only for an issuer the bundle lacks. */
    if (!SSL_CTX_set_default_verify_paths(c)) goto fail;
    if (cl && !SSL_CTX_load_verify_locations(c, ca_file, NULL)) {
        snprintf(err, errlen, "TLS setup failed: cannot load the CA file tls_ca_file");
        tls_ctx_free(t);
        return NULL;
    }
    if (SSL_CTX_set_alpn_protos(c, alpn, sizeof alpn - 1) != 0) goto fail;
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, tls_new_session);
    ERR_clear_error();
    return t;
fail:
    snprintf(err, errlen, "TLS setup failed");
    ERR_clear_error();
    tls_ctx_free(t);
    return NULL;
}

void tls_ctx_free(tls_ctx *t)
{
    if (!t) return;
    SSL_CTX_free(t->ssl_ctx);
    free(t);
}

bool tls_ctx_is(const tls_ctx *t, const char *ca_file)
{
    return strcmp(t->ca_file, ca_file ? ca_file : "") == 0;
}

tls_ctx **tls_ctx_nextp(tls_ctx *t)
{
    return &t->next;
}

/* ---- the read BIO ---- */

/* Ciphertext the engine may keep unread between reads: at most one read waits in it (h1.c stops
 * reading while its consumer is paused), so this is a backstop. */
#define TLS_IN_KEEP_MAX (256 * 1024)

typedef struct tls_in {
    const char *p; /* lent by h1.c for the read being handled (tls_in_lend) */
    size_t n;
    char *keep; /* owned: what earlier reads left, from koff to klen */
    size_t koff, klen, kcap;
} tls_in;

static int tls_in_read(BIO *b, char *out, int len)
{
    tls_in *in = BIO_get_data(b);
    size_t want = len > 0 ? (size_t)len : 0, got = 0;
    BIO_clear_retry_flags(b);
    if (in->koff < in->klen && want) {
        size_t t = in->klen - in->koff < want ? in->klen - in->koff : want;
        memcpy(out, in->keep + in->koff, t);
        in->koff += t;
        got = t;
        if (in->koff == in->klen) in->koff = in->klen = 0;
    }
    if (got < want && in->n) {
        size_t t = in->n < want - got ? in->n : want - got;
        memcpy(out + got, in->p, t);
        in->p += t;
        in->n -= t;
        got += t;
    }
    if (!got) {
        /* nothing yet: "wait for more", never end of stream (the socket says that) */
        BIO_set_retry_read(b);
        return -1;
    }
    return (int)got;
}

static int tls_in_write(BIO *b, const char *p, int len)
{
    (void)b;
    (void)p;
    (void)len;
    return -1; /* the engine writes to the other BIO */
}

static long tls_in_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    tls_in *in = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_PENDING:
        return (long)(in->klen - in->koff + in->n);
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int tls_in_create(BIO *b)
{
    tls_in *in = calloc(1, sizeof *in);
    if (!in) return 0;
    BIO_set_data(b, in);
    BIO_set_init(b, 1);
    return 1;
}

static int tls_in_destroy(BIO *b)
{
    tls_in *in = BIO_get_data(b);
    if (in) {
        free(in->keep);
        free(in);
    }
    BIO_set_data(b, NULL);
    return 1;
}

/* ---- the write BIO ---- */

/* Ciphertext held between flushes: h1.c sends what the engine wrote after every SSL call, and
 * encrypts at most 64 KiB of a request between two (H1_TLS_ROUND), so this is a backstop. */
#define TLS_OUT_MAX (512 * 1024)
/* A buffer grown past this (a large request) is freed once empty, so an idle pooled connection
 * holds at most this much. */
#define TLS_OUT_KEEP (16 * 1024)

typedef struct tls_out {
    buf_t b; /* the records not yet sent, at most TLS_OUT_MAX */
} tls_out;

static int tls_out_write(BIO *b, const char *p, int len)
{
    tls_out *o = BIO_get_data(b);
    size_t n = len > 0 ? (size_t)len : 0;
    BIO_clear_retry_flags(b);
    return buf_append(&o->b, p, n) == 0 ? (int)n : -1;
}

static int tls_out_read(BIO *b, char *out, int len)
{
    (void)b;
    (void)out;
    (void)len;
    return -1; /* h1.c takes the bytes with tls_out_peek */
}

static long tls_out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    tls_out *o = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING:
        return (long)o->b.len;
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int tls_out_create(BIO *b)
{
    tls_out *o = calloc(1, sizeof *o);
    if (!o) return 0;
    buf_init(&o->b, TLS_OUT_MAX);
    BIO_set_data(b, o);
    BIO_set_init(b, 1);
    return 1;
}

static int tls_out_destroy(BIO *b)
{
    tls_out *o = BIO_get_data(b);
    if (o) {
        buf_free(&o->b);
        free(o);
    }
    BIO_set_data(b, NULL);
    return 1;
}

size_t tls_out_peek(SSL *ssl, const char **p)
{
    tls_out *o = BIO_get_data(SSL_get_wbio(ssl));
    *p = o->b.data;
    return o->b.len;
}

void tls_out_consume(SSL *ssl, size_t n)
{
    tls_out *o = BIO_get_data(SSL_get_wbio(ssl));
    if (n >= o->b.len && o->b.cap > TLS_OUT_KEEP)
        buf_free(&o->b);
    else
        buf_consume(&o->b, n);
}

static BIO_METHOD *tls_in_method, *tls_out_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

static BIO_METHOD *tls_method_make(const char *name, int (*rd)(BIO *, char *, int),
                                   int (*wr)(BIO *, const char *, int),
                                   long (*ctrl)(BIO *, int, long, void *), int (*create)(BIO *),
                                   int (*destroy)(BIO *))
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, name);
    if (m && BIO_meth_set_read(m, rd) && BIO_meth_set_write(m, wr) && BIO_meth_set_ctrl(m, ctrl) &&
        BIO_meth_set_create(m, create) && BIO_meth_set_destroy(m, destroy))
        return m;
    BIO_meth_free(m);
    return NULL;
}

/* One method each for every worker's connections, made once and kept for the process's life. */
static void tls_bio_methods_make(void)
{
    tls_in_method = tls_method_make("modelswitch-in", tls_in_read, tls_in_write, tls_in_ctrl,
                                    tls_in_create, tls_in_destroy);
    tls_out_method = tls_method_make("modelswitch-out", tls_out_read, tls_out_write, tls_out_ctrl,
                                     tls_out_create, tls_out_destroy);
}

void tls_in_lend(SSL *ssl, const char *p, size_t n)
{
    tls_in *in = BIO_get_data(SSL_get_rbio(ssl));
    in->p = p;
    in->n = n;
}

int tls_in_keep(SSL *ssl)
{
    tls_in *in = BIO_get_data(SSL_get_rbio(ssl));
    size_t have = in->klen - in->koff;
    if (in->n) {
        if (have + in->n > TLS_IN_KEEP_MAX) return -1;
        if (in->koff) {
            memmove(in->keep, in->keep + in->koff, have);
            in->koff = 0;
            in->klen = have;
        }
        if (in->klen + in->n > in->kcap) {
            size_t cap = in->kcap ? in->kcap : 16384;
            while (cap < in->klen + in->n)
                cap *= 2;
            char *k = realloc(in->keep, cap);
            if (!k) return -1;
            in->keep = k;
            in->kcap = cap;
        }
        memcpy(in->keep + in->klen, in->p, in->n);
        in->klen += in->n;
    }
    in->p = NULL;
    in->n = 0;
    return 0;
}

static bool tls_is_ip(const char *host)
{
    unsigned char tmp[16];
    return uv_inet_pton(AF_INET, host, tmp) == 0 || uv_inet_pton(AF_INET6, host, tmp) == 0;
}

SSL *tls_conn_new(tls_ctx *t, const char *host, SSL_SESSION **session_slot)
{
    SSL *ssl;
    BIO *rb, *wb;

    ERR_clear_error();
    pthread_once(&tls_bio_once, tls_bio_methods_make);
    if (!tls_in_method || !tls_out_method) return NULL;
    ssl = SSL_new(t->ssl_ctx);
    if (!ssl) return NULL;
    rb = BIO_new(tls_in_method);
    wb = BIO_new(tls_out_method);
    if (!rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (tls_is_ip(host)) {
        /* SNI carries names only (RFC 6066); an IP literal is checked against the IP SANs. */
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)) goto fail;
    } else {
        if (!SSL_set_tlsext_host_name(ssl, host) || !SSL_set1_host(ssl, host)) goto fail;
    }
    SSL_set_app_data(ssl, session_slot);
    if (session_slot && *session_slot) SSL_set_session(ssl, *session_slot);
    ERR_clear_error();
    return ssl;
fail:
    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}

void tls_conn_free(SSL *ssl, bool clean)
{
    if (!ssl) return;
    /* SSL_free marks the session of a connection not shut down as not resumable; a connection
     * we merely stop using (idle, or its response read) keeps its session good for the next. */
    if (clean) SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(ssl);
}

bool tls_alpn_ok(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 0 || (n == 8 && memcmp(p, "http/1.1", 8) == 0);
}

void tls_describe(SSL *ssl, const char *host, char *msg, size_t len)
{
    long vr = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_last_error();

    if (vr != X509_V_OK) {
        /* curl's wording, so both clients read the same in logs and errors */
        snprintf(msg, len, "SSL certificate problem: %s (upstream %.100s)",
                 X509_verify_cert_error_string(vr), host);
    } else if (e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(msg, len, "TLS handshake with %.100s failed: %s", host, r ? r : "error");
    } else {
        snprintf(msg, len, "TLS handshake with %.100s failed", host);
    }
    ERR_clear_error();
}
