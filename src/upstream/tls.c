/*
 * TLS for the native upstream client (h1.c): the OpenSSL setup that h1.c drives over its own
 * sockets. Kept apart from h1.c so the HTTP/1.1 state machine does not grow OpenSSL's details,
 * and so the verification policy (what is trusted, what is checked) is in one short file.
 *
 * The engine runs on a pair of memory BIOs: h1.c writes the ciphertext it reads from the
 * uv_tcp_t into the read BIO and writes out what the engine leaves in the write BIO, so OpenSSL
 * never touches a socket and the worker's libuv loop stays in charge of all I/O.
 *
 * Policy, always on: TLS 1.2 or newer, the peer's certificate chain verified against the system
 * CA store plus an optional PEM file of extra CAs (a provider's tls_ca_file), the host name (or IP
 * literal) checked against the certificate, SNI sent for names, ALPN offering only http/1.1.
 * Sessions are kept by the caller (one per pool) and offered again on the next connection, so a
 * new connection to a known upstream costs an abbreviated handshake.
 */
#include "upstream/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
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
    ssl = SSL_new(t->ssl_ctx);
    if (!ssl) return NULL;
    rb = BIO_new(BIO_s_mem());
    wb = BIO_new(BIO_s_mem());
    if (!rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        SSL_free(ssl);
        return NULL;
    }
    /* An empty read BIO means "wait for more", not end of stream. */
    BIO_set_mem_eof_return(rb, -1);
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
