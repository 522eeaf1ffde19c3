/*
 * Small helpers shared by every module: clocks, ISO 8601 times, and decimal money parsing.
 * Money is always an int64 count of nano-dollars (1 USD = 1e9); it is never held in a float.
 */
#ifndef MS_UTIL_H
#define MS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define MS_NANO_PER_USD 1000000000LL

/* Whether a[0..n) equals b[0..n), in a time that depends on n only (secrets: keys and their
 * hashes). Eight bytes a step: OpenSSL's CRYPTO_memcmp goes a byte at a time, ~550
 * instructions of a proxied request for the key and its hash. */
int ms_ct_equal(const void *a, const void *b, size_t n);

/* Milliseconds since the Unix epoch (wall clock). */
int64_t ms_now_ms(void);
/* Monotonic clock in nanoseconds, for durations. */
uint64_t ms_mono_ns(void);

/*
 * The loop clock: on an event-loop thread, the time of the current loop iteration, read once
 * however often it is asked (nginx's cached time; a request asked for it ~20 times, each clock
 * read ~25 ns, 2% of a proxied request's CPU). A thread turns it on (ms_loop_clock_on) and
 * forgets the reading at every loop phase boundary (ms_loop_clock_tick, from the worker's
 * prepare and check handles), so a reading is never older than the callbacks of one phase.
 * Elsewhere these read the clock each time. For timestamps and durations across callbacks;
 * anything that waits for time to pass inside one callback must use ms_mono_ns.
 */
typedef struct ms_loop_clock_t {
    int on;
    int mono_ok, wall_ok;
    uint64_t mono_ns;
    int64_t wall_ms;
} ms_loop_clock_t;
extern _Thread_local ms_loop_clock_t ms_loop_clock;

static inline void ms_loop_clock_on(void)
{
    ms_loop_clock.on = 1;
}

static inline void ms_loop_clock_tick(void)
{
    ms_loop_clock.mono_ok = ms_loop_clock.wall_ok = 0;
}

static inline uint64_t ms_loop_mono_ns(void)
{
    if (ms_loop_clock.mono_ok) return ms_loop_clock.mono_ns;
    uint64_t t = ms_mono_ns();
    if (ms_loop_clock.on) {
        ms_loop_clock.mono_ns = t;
        ms_loop_clock.mono_ok = 1;
    }
    return t;
}

static inline int64_t ms_loop_now_ms(void)
{
    if (ms_loop_clock.wall_ok) return ms_loop_clock.wall_ms;
    int64_t t = ms_now_ms();
    if (ms_loop_clock.on) {
        ms_loop_clock.wall_ms = t;
        ms_loop_clock.wall_ok = 1;
    }
    return t;
}
/* Writes "2026-11-25T01:02:03Z" (or with .mmm when ms_frac); returns out. out needs 32 bytes. */
char *ms_iso8601(int64_t epoch_ms, char *out, int ms_frac);
/* Parses ISO 8601 UTC ("2026-11-25", "2026-11-25T01:02:03Z", "...T01:02:03.123Z", "+00:00").
 * Returns 0 and epoch ms, or -1. */
int ms_parse_iso8601(const char *s, int64_t *epoch_ms);

/* Copies the string src into dst (size bytes, > 0), truncated and always NUL-terminated, and
 * returns the length copied: snprintf(dst, size, "%s", src) without the format machinery. */
size_t ms_copy(char *dst, size_t size, const char *src);

/* Writes v in decimal at out (no NUL) and returns the end; out needs 20 bytes. For the hot
 * path, where printf's generality costs more than the formatting itself. */
char *ms_i64_dec(int64_t v, char *out);

/* FNV-1a (64 bits) of the string s: a stable id for state kept by name (a model's rate-limit
 * counters), the same in every process and across reloads. */
uint64_t ms_fnv1a64(const char *s);

/* Parses a decimal string exactly ("12.5", "-3", "0.000000001") scaled by 10^scale into an
 * integer, without floating point. Returns 0, or -1 on syntax error, overflow or more fractional
 * digits than scale allows. */
int ms_parse_decimal(const char *s, size_t n, int scale, int64_t *out);
/* Formats v / 10^scale as a decimal with trailing zeros trimmed ("1500.5", "0.000002").
 * Returns out, or NULL (writing "") when outlen is too small or scale is outside 0..18;
 * 32 bytes are always enough. */
char *ms_format_decimal(int64_t v, int scale, char *out, size_t outlen);

#endif
