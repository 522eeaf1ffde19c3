/*
 * TLS for the native upstream client: what h1.c needs from OpenSSL and nothing more (see tls.c).
 * Private to src/upstream.
 */
#ifndef MS_UPSTREAM_TLS_H
#define MS_UPSTREAM_TLS_H

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* Empties the thread's OpenSSL error queue before an SSL call, so that SSL_get_error reads only
 * that call's errors. ERR_clear_error costs ~840 instructions even on an empty queue (it resets
 * all sixteen of its slots), twice per request on the hot path; the queue is almost always
 * empty, and SSL_get_error itself asks ERR_peek_error, so an empty peek is all it needs. */
static inline void tls_err_reset(void)
{
    if (ERR_peek_error() != 0) ERR_clear_error();
}

/* One SSL_CTX: the system CA store plus, when ca_file is set, that file's CAs. Per worker. */
typedef struct tls_ctx tls_ctx;

/* NULL on failure, with a message in err that names no secret. Reads the CA files. */
tls_ctx *tls_ctx_new(const char *ca_file, char *err, size_t errlen);
void tls_ctx_free(tls_ctx *t);
/* Whether t was made for ca_file (NULL = none); its list link, for the owner's list. */
bool tls_ctx_is(const tls_ctx *t, const char *ca_file);
tls_ctx **tls_ctx_nextp(tls_ctx *t);

/* A client SSL reading ciphertext through tls_in_lend/tls_in_keep and writing it where
 * tls_out_peek finds it, checking host, offering *session_slot for resumption and storing the
 * server's new sessions there. The slot must outlive the SSL. NULL on failure. */
SSL *tls_conn_new(tls_ctx *t, const char *host, SSL_SESSION **session_slot);
/* Ciphertext just read, for the engine to read from where it lies until tls_in_keep. */
void tls_in_lend(SSL *ssl, const char *p, size_t n);
/* The end of that read: the engine's part it did not read is copied and kept for the next
 * (BIO_ctrl_pending counts it). 0, or -1 when that would pass the bound or memory is out. */
int tls_in_keep(SSL *ssl);
/* The ciphertext the engine wrote that is not sent yet, where it lies (valid until the next SSL
 * call on ssl), and the end of its use: the first n bytes were sent or copied. */
size_t tls_out_peek(SSL *ssl, const char **p);
void tls_out_consume(SSL *ssl, size_t n);
/* clean: the connection ended without a TLS error, so its session stays resumable. */
void tls_conn_free(SSL *ssl, bool clean);
/* After the handshake: the server chose http/1.1 or nothing. */
bool tls_alpn_ok(SSL *ssl);
/* Why the handshake failed (verification result first), naming the host but nothing secret. */
void tls_describe(SSL *ssl, const char *host, char *msg, size_t len);

#endif
