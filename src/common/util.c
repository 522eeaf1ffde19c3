/*
 * Small helpers shared by every module (see util.h): clocks, ISO 8601 UTC times and exact decimal
 * money parsing/formatting.
 *
 * Dates are converted with plain proleptic Gregorian day arithmetic rather than gmtime/timegm, so
 * the result never depends on the TZ environment, locale or the width of time_t. The decimal
 * functions work on int64 with explicit overflow checks and no floating point: money parsed here
 * ("2.50" USD) must come out as an exact integer count of nano-dollars.
 */
#include "common/util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MS_MAX_SCALE 18 /* 10^18 is the largest power of ten an int64 holds */

int64_t ms_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

_Thread_local ms_loop_clock_t ms_loop_clock;

uint64_t ms_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. Years are shifted to start in March so
 * the leap day is the last day of the shifted year; a 400-year era has exactly 146097 days. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static char *put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

char *ms_iso8601(int64_t epoch_ms, char *out, int ms_frac)
{
    /* Remainders are taken directly: secs * 1000 would overflow near INT64_MIN. */
    int64_t secs = floor_div(epoch_ms, 1000);
    int ms = (int)((epoch_ms % 1000 + 1000) % 1000);
    int64_t days = floor_div(secs, 86400);
    int sod = (int)((secs % 86400 + 86400) % 86400);
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    /* The year takes at most 10 bytes (a 9-digit year and a sign), the rest 20 with
     * milliseconds: 31 bytes in all, inside the 32 the header promises. Two-digit fields are
     * written by hand so the compiler can see the bound. */
    char *p;
    if (y >= 0 && y <= 9999) { /* every real date, without printf: each log line has one */
        p = put2(put2(out, (int)(y / 100)), (int)(y % 100));
    } else {
        p = out + snprintf(out, 12, "%04lld", (long long)y);
    }
    *p++ = '-';
    p = put2(p, m);
    *p++ = '-';
    p = put2(p, d);
    *p++ = 'T';
    p = put2(p, sod / 3600);
    *p++ = ':';
    p = put2(p, sod / 60 % 60);
    *p++ = ':';
    p = put2(p, sod % 60);
    if (ms_frac) {
        *p++ = '.';
        *p++ = (char)('0' + ms / 100);
        p = put2(p, ms % 100);
    }
    *p++ = 'Z';
    *p = '\0';
    return out;
}

/* Reads exactly n digits at *p; returns -1 if any is missing. */
static int read_digits(const char **p, int n, int *v)
{
    int r = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return -1;
        r = r * 10 + (c - '0');
    }
    *p += n;
    *v = r;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dim[m - 1];
}

int ms_parse_iso8601(const char *s, int64_t *epoch_ms)
{
    if (!s) return -1;
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, off_min = 0;
    if (read_digits(&p, 4, &y) || *p++ != '-' || read_digits(&p, 2, &mo) || *p++ != '-' ||
        read_digits(&p, 2, &d))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (read_digits(&p, 2, &h) || *p++ != ':' || read_digits(&p, 2, &mi)) return -1;
        /* Seconds are optional ("2026-11-25T01:02Z" is valid ISO 8601). */
        if (*p == ':') {
            p++;
            if (read_digits(&p, 2, &sec)) return -1;
            if (*p == '.' || *p == ',') {
                p++;
                int nd = 0;
                while (*p >= '0' && *p <= '9') {
                    /* Beyond milliseconds the digits are accepted and truncated. */
                    if (nd < 3) ms = ms * 10 + (*p - '0');
                    nd++;
                    p++;
                }
                if (nd == 0 || nd > 9) return -1;
                for (; nd < 3; nd++)
                    ms *= 10;
            }
        }
        if (h > 23 || mi > 59 || sec > 59) return -1;
        /* A missing zone is read as UTC: every time in this system is UTC. */
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
            if (read_digits(&p, 2, &oh)) return -1;
            if (*p == ':') {
                p++;
                if (read_digits(&p, 2, &om)) return -1;
            } else if (*p >= '0' && *p <= '9') {
                if (read_digits(&p, 2, &om)) return -1;
            }
            if (oh > 23 || om > 59) return -1;
            off_min = sign * (oh * 60 + om);
        }
    }
    if (*p != '\0') return -1;
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off_min * 60;
    *epoch_ms = secs * 1000 + ms;
    return 0;
}

int ms_parse_decimal(const char *s, size_t n, int scale, int64_t *out)
{
    if (!s || n == 0 || scale < 0 || scale > MS_MAX_SCALE) return -1;
    size_t i = 0;
    int neg = 0;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
    }
    /* The magnitude is accumulated unsigned so that INT64_MIN itself is representable. */
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    size_t int_digits = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, int_digits++) {
        unsigned dig = (unsigned)(s[i] - '0');
        if (v > (limit - dig) / 10) return -1;
        v = v * 10 + dig;
    }
    if (int_digits == 0) return -1;
    int frac_digits = 0;
    if (i < n && s[i] == '.') {
        i++;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, frac_digits++) {
            if (frac_digits >= scale) return -1;
            unsigned dig = (unsigned)(s[i] - '0');
            if (v > (limit - dig) / 10) return -1;
            v = v * 10 + dig;
        }
        if (frac_digits == 0) return -1;
    }
    if (i != n) return -1;
    for (; frac_digits < scale; frac_digits++) {
        if (v > limit / 10) return -1;
        v *= 10;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

char *ms_format_decimal(int64_t v, int scale, char *out, size_t outlen)
{
    if (!out || outlen == 0) return NULL;
    out[0] = '\0';
    if (scale < 0 || scale > MS_MAX_SCALE) return NULL;
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint64_t pow10 = 1;
    for (int i = 0; i < scale; i++)
        pow10 *= 10;
    uint64_t ip = mag / pow10, fp = mag % pow10;

    /* Fractional digits, most significant first, zero-padded to scale, then trimmed. */
    char frac[MS_MAX_SCALE + 1];
    int nf = scale;
    for (int i = scale - 1; i >= 0; i--) {
        frac[i] = (char)('0' + fp % 10);
        fp /= 10;
    }
    while (nf > 0 && frac[nf - 1] == '0')
        nf--;
    frac[nf] = '\0';

    /* By hand rather than snprintf: a request's cost is formatted on every answer. */
    char tmp[2 + 20 + MS_MAX_SCALE], *o = tmp; /* sign, whole part, point, fraction */
    if (v < 0) *o++ = '-';
    {
        char d[20], *t = d + sizeof d;
        uint64_t u = ip;
        do {
            *--t = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        memcpy(o, t, (size_t)(d + sizeof d - t));
        o += d + sizeof d - t;
    }
    if (nf) {
        *o++ = '.';
        memcpy(o, frac, (size_t)nf);
        o += nf;
    }
    size_t w = (size_t)(o - tmp);
    if (w >= outlen) return NULL;
    memcpy(out, tmp, w);
    out[w] = '\0';
    return out;
}

size_t ms_copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

uint64_t ms_fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

char *ms_i64_dec(int64_t v, char *out)
{
    /* Two digits per division, from a table, written in place from the end once the length is
     * known (no copy: a request's headers and log line carry a dozen numbers, some of them
     * twelve digits long, and the copy's call was a third of each). */
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324"
                                   "25262728293031323334353637383940414243444546474849"
                                   "50515253545556575859606162636465666768697071727374"
                                   "75767778798081828384858687888990919293949596979899";
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0) *out++ = '-';
    static const uint64_t p10[20] = {1ull,
                                     10ull,
                                     100ull,
                                     1000ull,
                                     10000ull,
                                     100000ull,
                                     1000000ull,
                                     10000000ull,
                                     100000000ull,
                                     1000000000ull,
                                     10000000000ull,
                                     100000000000ull,
                                     1000000000000ull,
                                     10000000000000ull,
                                     100000000000000ull,
                                     1000000000000000ull,
                                     10000000000000000ull,
                                     100000000000000000ull,
                                     1000000000000000000ull,
                                     10000000000000000000ull};
    /* the digit count: log10 from the bit length (1233/4096 ~ log10(2)), then one compare */
    int lg = ((64 - __builtin_clzll(u | 1)) * 1233) >> 12;
    int n = lg + (u >= p10[lg]);
    if (n == 0) n = 1;
    char *end = out + n, *t = end;
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100) * 2;
        u /= 100;
        *--t = pairs[r + 1];
        *--t = pairs[r];
    }
    if (u >= 10) {
        *--t = pairs[u * 2 + 1];
        *--t = pairs[u * 2];
    } else {
        *--t = (char)('0' + u);
    }
    return end;
}

int ms_ct_equal(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    uint64_t d = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t u, v;
        memcpy(&u, x + i, 8);
        memcpy(&v, y + i, 8);
        d |= u ^ v;
    }
    for (; i < n; i++)
        d |= (uint64_t)(x[i] ^ y[i]);
    return d == 0;
}
