/*
 * Growable byte buffers with a hard cap, and length-carrying string views.
 *
 * Everything that grows from network input (header blocks, bodies, SSE lines, upstream answers) is
 * a buf_t with a cap set by whoever owns it, so no peer can make the gateway allocate without
 * bound. Views (ms_str) never assume NUL termination: parsers hand out pointers into buffers.
 */
#ifndef MS_BUF_H
#define MS_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const char *p;
    size_t n;
} ms_str;

#define MS_STR_LIT(s) ((ms_str){(s), sizeof(s) - 1})

static inline ms_str ms_str_c(const char *s)
{
    return (ms_str){s, s ? strlen(s) : 0};
}

static inline int ms_str_eq(ms_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.n == n && memcmp(a.p, lit, n) == 0;
}

int ms_str_caseeq(ms_str a, const char *lit);

typedef struct {
    char *data;
    size_t len;
    size_t cap;   /* allocated bytes */
    size_t limit; /* never grow past this many bytes; 0 = no limit (only for our own output) */
    int borrowed; /* data is the caller's memory (buf_init_with): moved to the heap on growth */
} buf_t;

void buf_init(buf_t *b, size_t limit);
/* Starts with the caller's memory (a stack array, say) so short contents need no allocation. */
void buf_init_with(buf_t *b, char *mem, size_t cap, size_t limit);
void buf_free(buf_t *b);
/* The growing half of buf_append (buf.c). */
int buf_append_grow(buf_t *b, const void *p, size_t n);
/* Returns 0, or -1 when the append would pass the limit or memory is exhausted (buffer unchanged).
 * Inline because a request's answer, log line and upstream request are built from dozens of short
 * appends into buffers that already have room: there the call and the capacity arithmetic were
 * most of the cost, and a constant n lets the compiler inline the copy. */
static inline int buf_append(buf_t *b, const void *p, size_t n)
{
    /* room for n bytes and the NUL (so len + n cannot overflow), within the limit */
    if (n < b->cap - b->len && (b->limit == 0 || b->len + n <= b->limit)) {
        if (n) memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return buf_append_grow(b, p, n);
}
static inline int buf_appends(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends v in decimal: what buf_printf("%" PRId64) appends, without the format's ~800
 * instructions (events of a translated stream carry an index each). */
int buf_append_dec(buf_t *b, int64_t v);
/* The length of s's prefix that a JSON string holds as it is (no control byte, '"' or '\\'). */
size_t buf_json_plain(const char *s, size_t n);
/* Writes the JSON escape of c, a byte buf_json_plain stops at, to out (room for 6); returns its
 * length. */
size_t buf_json_escape_byte(unsigned char c, char *out);
/* Appends s as the inside of a JSON string (escaped, without the quotes). */
int buf_append_json_escaped(buf_t *b, const char *s, size_t n);
/* Appends s[0..n) as a JSON string: quotes and escapes (s may be NULL when n is 0). */
int buf_append_json_string(buf_t *b, const char *s, size_t n);
int buf_reserve(buf_t *b, size_t extra);
/* Frees b's heap memory, if it has any, and lends it mem[0..cap) again, empty, with its limit:
 * a connection's buffer used request after request allocates only for a request that outgrows
 * mem. */
void buf_rewind_to(buf_t *b, char *mem, size_t cap);
/* Drops the first n bytes. */
void buf_consume(buf_t *b, size_t n);
static inline void buf_reset(buf_t *b)
{
    b->len = 0;
}
/* Back to an earlier length len (<= b->len): what was appended since is dropped, as if never
 * written (a rewrite that refuses, or a list that turns out to be one item). */
static inline void buf_truncate(buf_t *b, size_t len)
{
    b->len = len;
    if (b->data) b->data[len] = '\0';
}
/* Hands the storage to the caller (who frees it) and leaves b empty. */
char *buf_steal(buf_t *b);
/* What b holds, as a view ("" when empty). */
static inline ms_str buf_view(const buf_t *b)
{
    return (ms_str){b->data ? b->data : "", b->len};
}

#endif
