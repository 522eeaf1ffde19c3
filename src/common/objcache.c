/*
 * The per-thread object cache (see objcache.h): a few singly linked lists of same-size blocks in
 * thread-local storage, the link kept in each free block's first bytes. A thread key's destructor
 * frees what a thread holds when it ends, so worker threads that stop (reload, shutdown) leave
 * nothing behind.
 *
 * Under valgrind (the test suite runs the gateway and the unit tests under memcheck) a cached
 * block is marked inaccessible but for its link and a block handed out undefined, so a use after
 * free or a read before a write is reported as it would be with malloc. The link stays readable
 * so that the leak check follows a list to its end (the main thread's blocks are still cached
 * when the process exits). Natively that costs one test of a thread-local flag.
 */
#include "common/objcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define OC_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OC_OFF 1
#endif
#endif
#ifndef OC_OFF
#define OC_OFF 0
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define OC_VG_ON() oc_memcheck()
#define OC_VG_PARK(p, n)                                                                           \
    VALGRIND_MAKE_MEM_NOACCESS((char *)(p) + sizeof(void *), (n) - sizeof(void *))
#define OC_VG_HAND_OUT(p, n) VALGRIND_MAKE_MEM_UNDEFINED(p, n)
#endif
#endif
#ifdef OC_VG_ON
/* memcheck in particular: other tools (callgrind profiles the gateway) answer its requests with
 * 0, and their counts must not include the marking */
static int oc_memcheck(void)
{
    unsigned char probe = 0, vbits = 0;
    return RUNNING_ON_VALGRIND && VALGRIND_GET_VBITS(&probe, &vbits, 1) == 1;
}
#else
#define OC_VG_ON() 0
#define OC_VG_PARK(p, n) ((void)0)
#define OC_VG_HAND_OUT(p, n) ((void)0)
#endif

typedef struct oc_class {
    size_t size; /* 0: unused */
    unsigned n;
    void *head;
} oc_class;

typedef struct oc_thread {
    oc_class cls[OC_CLASSES];
    int registered; /* the thread key points here, so the destructor runs at thread exit */
    int vg;         /* running under valgrind: cached blocks are marked (see above) */
} oc_thread;

static _Thread_local oc_thread oc_me;
static pthread_key_t oc_key;
static pthread_once_t oc_once = PTHREAD_ONCE_INIT;
static int oc_key_ok;

/* The next block of a list, from the link in p's first bytes. */
static void *oc_next(void *p)
{
    void *next;
    memcpy(&next, p, sizeof next);
    return next;
}

static void oc_drain(void *arg)
{
    oc_thread *t = arg;
    for (int i = 0; i < OC_CLASSES; i++) {
        while (t->cls[i].head) {
            void *p = t->cls[i].head;
            t->cls[i].head = oc_next(p);
            free(p);
        }
        t->cls[i].n = 0;
        t->cls[i].size = 0;
    }
    t->registered = 0;
}

static void oc_key_make(void)
{
    oc_key_ok = pthread_key_create(&oc_key, oc_drain) == 0;
}

/* The class for size: an existing one, or (make) a free one; NULL when none fits. */
static oc_class *oc_class_of(size_t size, int make)
{
    for (int i = 0; i < OC_CLASSES; i++)
        if (oc_me.cls[i].size == size) return &oc_me.cls[i];
    oc_class *free_cls = NULL;
    for (int i = 0; i < OC_CLASSES && make && !free_cls; i++)
        if (!oc_me.cls[i].size) free_cls = &oc_me.cls[i];
    if (!free_cls) return NULL;
    if (!oc_me.registered) {
        /* a thread whose blocks could not be freed at its end keeps none */
        pthread_once(&oc_once, oc_key_make);
        if (!oc_key_ok || pthread_setspecific(oc_key, &oc_me) != 0) return NULL;
        oc_me.registered = 1;
        oc_me.vg = OC_VG_ON() != 0;
    }
    free_cls->size = size;
    return free_cls;
}

void *oc_alloc(size_t size)
{
    if (!OC_OFF && size >= OC_MIN && size <= OC_MAX) {
        oc_class *c = oc_class_of(size, 0);
        if (c && c->head) {
            void *p = c->head;
            c->head = oc_next(p);
            c->n--;
            if (oc_me.vg) OC_VG_HAND_OUT(p, size);
            return p;
        }
    }
    return malloc(size);
}

void *oc_zalloc(size_t size)
{
    void *p = oc_alloc(size);
    if (p) memset(p, 0, size);
    return p;
}

void oc_free(void *p, size_t size)
{
    if (!p) return;
    if (!OC_OFF && size >= OC_MIN && size <= OC_MAX) {
        oc_class *c = oc_class_of(size, 1);
        if (c && c->n < OC_KEEP) {
            memcpy(p, &c->head, sizeof p);
            c->head = p;
            c->n++;
            if (oc_me.vg) OC_VG_PARK(p, size);
            return;
        }
    }
    free(p);
}

size_t oc_held(void)
{
    size_t n = 0;
    for (int i = 0; i < OC_CLASSES; i++)
        n += oc_me.cls[i].n;
    return n;
}

int oc_active(void)
{
    return !OC_OFF;
}
