/*
 * A tiny test harness for the C unit tests: assertion macros that print file and line, and a
 * summary line. Each test binary runs its cases in order and exits non-zero if any check failed.
 * tests/run.sh adds up the "# unit: N passed, M failed" lines of every binary.
 */
#ifndef MS_TAP_H
#define MS_TAP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_passed, tap_failed, tap_case_failed;
static const char *tap_case;
/* appended to each case's name: which store backend a pass runs on (testdb.h) */
static const char *tap_variant = "";

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s%s: check failed: %s\n", __FILE__, __LINE__, tap_case,       \
                    tap_variant, #cond);                                                           \
            tap_case_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "%s:%d: %s: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__,      \
                    tap_case, #a, #b, a_, b_);                                                     \
            tap_case_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            fprintf(stderr, "%s:%d: %s: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__,  \
                    tap_case, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                     \
            tap_case_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

/* A fresh directory /tmp/ms_<name>_XXXXXX for a test's files, written into dir (64 bytes);
 * exits when it cannot be made (nothing could be tested). */
static inline void tap_mkdtemp(const char *name, char *dir)
{
    snprintf(dir, 64, "/tmp/ms_%s_XXXXXX", name);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
}

/* Removes what tap_mkdtemp made. */
static inline void tap_rmtree(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* Runs one test function as a named case and prints "ok"/"not ok". */
#define RUN(fn)                                                                                    \
    do {                                                                                           \
        tap_case = #fn;                                                                            \
        tap_case_failed = 0;                                                                       \
        fn();                                                                                      \
        if (tap_case_failed) {                                                                     \
            tap_failed++;                                                                          \
            printf("not ok - %s%s\n", #fn, tap_variant);                                           \
        } else {                                                                                   \
            tap_passed++;                                                                          \
            printf("ok - %s%s\n", #fn, tap_variant);                                               \
        }                                                                                          \
    } while (0)

#define TAP_DONE()                                                                                 \
    do {                                                                                           \
        printf("# unit: %d passed, %d failed\n", tap_passed, tap_failed);                          \
        return tap_failed ? 1 : 0;                                                                 \
    } while (0)

#endif
