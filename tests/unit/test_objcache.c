/*
 * The per-thread object cache (common/objcache.c): a freed block of a cached size comes back to
 * the next allocation of that size on the same thread, the bounds hold (sizes, classes, blocks
 * per class), and a thread's blocks are freed when it ends (the valgrind stage's leak check
 * fails this binary otherwise). Under ASan the cache is off and only the plain-malloc behaviour
 * is checked.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "common/objcache.h"
#include "tap.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAVE_MEMCHECK 1
#endif
#endif

static void test_reuse(void)
{
    size_t held0 = oc_held();
    char *a = oc_alloc(6240);
    CHECK(a != NULL);
    memset(a, 0x5a, 6240);
    oc_free(a, 6240);
    char *b = oc_alloc(6240);
    CHECK(b != NULL);
    if (oc_active()) {
        CHECK(b == a); /* the warm block, not a new one */
        CHECK_EQ_INT(oc_held(), held0);
    }
    /* another size is another list */
    char *c = oc_alloc(6248);
    CHECK(c != NULL && c != b);
    oc_free(c, 6248);
    oc_free(b, 6240);
    char *z = oc_zalloc(6240);
    CHECK(z != NULL);
    int zero = 1;
    for (size_t i = 0; i < 6240; i++)
        zero &= z[i] == 0;
    CHECK(zero);
    oc_free(z, 6240);
    oc_free(NULL, 6240);
    /* a block the cache did not hand out joins it; one it did may go to free() */
    void *m = malloc(6240);
    oc_free(m, 6240);
    free(oc_alloc(6240));
}

static void test_bounds(void)
{
    size_t held0 = oc_held();
    /* below OC_MIN glibc's own cache is as fast: not kept */
    oc_free(malloc(OC_MIN - 8), OC_MIN - 8);
    oc_free(malloc(OC_MAX + 8), OC_MAX + 8);
    CHECK_EQ_INT(oc_held(), held0);
    if (!oc_active()) return;
    /* OC_KEEP blocks a size at most */
    void *v[OC_KEEP + 8];
    for (int i = 0; i < OC_KEEP + 8; i++)
        v[i] = oc_alloc(2000);
    for (int i = 0; i < OC_KEEP + 8; i++)
        oc_free(v[i], 2000);
    size_t after = oc_held();
    CHECK(after - held0 <= OC_KEEP);
    CHECK(after - held0 >= OC_KEEP - 1); /* a list of 2000 may have held some before */
    /* OC_CLASSES sizes at most: more sizes go back to malloc */
    for (int k = 0; k < OC_CLASSES + 3; k++)
        oc_free(malloc(3000 + 16 * (size_t)k), 3000 + 16 * (size_t)k);
    CHECK(oc_held() <= (size_t)OC_CLASSES * OC_KEEP);
    /* the cached ones come back out whole and usable */
    for (int i = 0; i < OC_KEEP + 8; i++) {
        v[i] = oc_alloc(2000);
        memset(v[i], i, 2000);
    }
    for (int i = 0; i < OC_KEEP + 8; i++)
        free(v[i]);
}

/* Under valgrind a cached block is inaccessible (a use after free is reported) and a block handed
 * out again is undefined (a read before a write is reported), as malloc's would be. Natively
 * there is nothing to check. */
static void test_valgrind_marks(void)
{
#ifdef HAVE_MEMCHECK
    if (!RUNNING_ON_VALGRIND || !oc_active()) return;
    unsigned char vbits[16];
    char *p = oc_alloc(6240);
    memset(p, 1, 6240);
    CHECK_EQ_INT(VALGRIND_GET_VBITS(p + 100, vbits, sizeof vbits), 1);
    oc_free(p, 6240);
    /* 3: some of it is not addressable (no error is reported for asking) */
    CHECK_EQ_INT(VALGRIND_GET_VBITS(p + 100, vbits, sizeof vbits), 3);
    char *q = oc_alloc(6240);
    CHECK(q == p);
    CHECK_EQ_INT(VALGRIND_GET_VBITS(q + 100, vbits, sizeof vbits), 1);
    int undefined = 1;
    for (size_t i = 0; i < sizeof vbits; i++)
        undefined &= vbits[i] == 0xFF;
    CHECK(undefined);
    free(q);
#endif
}

/* Blocks still cached when the process exits (the main thread's, as a gateway's at shutdown)
 * are reachable: under valgrind's leak check, a list whose links it cannot read would be
 * reported lost and fail this binary. */
static void test_cached_at_exit(void)
{
    void *v[4];
    for (int i = 0; i < 4; i++)
        v[i] = oc_alloc(6240);
    for (int i = 0; i < 4; i++)
        oc_free(v[i], 6240);
    if (oc_active()) CHECK(oc_held() >= 4);
}

static void *thread_main(void *arg)
{
    size_t *held = arg;
    for (int i = 0; i < 5; i++)
        oc_free(malloc(4096), 4096);
    oc_free(malloc(8192), 8192);
    *held = oc_held();
    return NULL;
}

static void test_thread_end(void)
{
    for (int t = 0; t < 3; t++) {
        size_t held = 99;
        pthread_t th;
        CHECK(pthread_create(&th, NULL, thread_main, &held) == 0);
        pthread_join(th, NULL);
        CHECK_EQ_INT(held, oc_active() ? 6 : 0);
    }
}

int main(void)
{
    RUN(test_reuse);
    RUN(test_bounds);
    RUN(test_thread_end);
    RUN(test_valgrind_marks);
    RUN(test_cached_at_exit);
    TAP_DONE();
}
