/*
 * Small helpers shared by every module: clocks, ISO 8601 times, and decimal money parsing.
 * Money is always an int64 count of nano-dollars (1 USD = 1e9); it is never held in a float.
 */
#ifndef MS_UTIL_H
#define MS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define MS_NANO_PER_USD 1000000000LL

/* Milliseconds since the Unix epoch (wall clock). */
int64_t ms_now_ms(void);
/* Monotonic clock in nanoseconds, for durations. */
uint64_t ms_mono_ns(void);
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

/* Parses a decimal string exactly ("12.5", "-3", "0.000000001") scaled by 10^scale into an
 * integer, without floating point. Returns 0, or -1 on syntax error, overflow or more fractional
 * digits than scale allows. */
int ms_parse_decimal(const char *s, size_t n, int scale, int64_t *out);
/* Formats v / 10^scale as a decimal with trailing zeros trimmed ("1500.5", "0.000002").
 * Returns out, or NULL (writing "") when outlen is too small or scale is outside 0..18;
 * 32 bytes are always enough. */
char *ms_format_decimal(int64_t v, int scale, char *out, size_t outlen);

#endif
