/*
 * Scoped memory for jansson's trees (jarena.h says why and how it is used).
 *
 * A thread's scope is a list of chunks, newest first, each filled from its start: allocation
 * takes the next 16-aligned bytes of the newest chunk, or a new chunk twice the last one's size
 * (up to 4 MiB, or what one allocation needs). Free is nothing for a block of the scope, which
 * the free function knows by its address (a scope has a handful of chunks); anything else is
 * malloc's and goes back to free. The scope's end frees every chunk but the thread's first,
 * which the next scope starts in: a small translation touches no allocator at all.
 */
#include "common/jarena.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define JARENA_OFF_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JARENA_OFF_BUILD 1
#endif
#endif
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define JARENA_VALGRIND 1
#endif
#endif

#define JARENA_ALIGN 16
#define JARENA_BIG (4u * 1024 * 1024) /* chunks grow up to this, unless one block needs more */

typedef struct jchunk {
    struct jchunk *next;
    size_t size, used;
} jchunk;

/* The chunk header, padded so that its blocks start 16-aligned (malloc's alignment). */
#define JCHUNK_HDR ((sizeof(jchunk) + JARENA_ALIGN - 1) & ~(size_t)(JARENA_ALIGN - 1))

static int g_on; /* installed, and not under a sanitizer's allocator */

static _Thread_local jchunk *tl_head; /* the scope's chunks, newest first */
static _Thread_local jchunk *tl_keep; /* the thread's first chunk, kept between scopes */
static _Thread_local size_t tl_total; /* bytes of the scope's chunks */
static _Thread_local int tl_depth;    /* open scopes (a nested one is part of the outer) */
static _Thread_local int tl_spilled;  /* the scope has allocated from malloc (past JARENA_MAX) */

#ifndef JARENA_OFF_BUILD /* the allocator itself: not built where scopes are off */
static unsigned char *base(const jchunk *c)
{
    return (unsigned char *)c + JCHUNK_HDR;
}

static int in_chunk(const jchunk *c, const void *p, size_t len)
{
    uintptr_t b = (uintptr_t)base(c), q = (uintptr_t)p;
    return q >= b && q - b < len;
}

static void *scope_alloc(size_t n)
{
    size_t need = (n + JARENA_ALIGN - 1) & ~(size_t)(JARENA_ALIGN - 1);
    if (need < n || need == 0) return NULL;
    jchunk *c = tl_head;
    if (c && c->size - c->used >= need) {
        void *p = base(c) + c->used;
        c->used += need;
        return p;
    }
    size_t size = !c ? JARENA_CHUNK : c->size >= JARENA_BIG / 2 ? JARENA_BIG : c->size * 2;
    if (size < need) size = need;
    if (size > JARENA_MAX - tl_total || tl_total > JARENA_MAX) return NULL;
    jchunk *nc;
    if (!c && tl_keep && tl_keep->size >= need) {
        nc = tl_keep; /* the scope's first allocation: the kept chunk */
    } else {
        if (!(nc = malloc(JCHUNK_HDR + size))) return NULL;
        nc->size = size;
        if (!tl_keep && size == JARENA_CHUNK) tl_keep = nc;
    }
    nc->used = need;
    nc->next = tl_head;
    tl_head = nc;
    tl_total += nc->size;
    return base(nc);
}

static void *ja_malloc(size_t n)
{
    if (tl_depth > 0) {
        void *p = scope_alloc(n);
        if (p) return p;
        tl_spilled = 1;
    }
    return malloc(n);
}

static void ja_free(void *p)
{
    if (!p) return;
    if (tl_depth > 0)
        for (const jchunk *c = tl_head; c; c = c->next)
            if (in_chunk(c, p, c->used)) return;
    if (tl_keep && in_chunk(tl_keep, p, tl_keep->size)) {
        /* a tree outlived its scope: its memory is already another's */
        fputs("jarena: a jansson value allocated in a scope was freed after it\n", stderr);
        abort();
    }
    free(p);
}

#ifdef JARENA_VALGRIND
/* Whether valgrind's tool replaces malloc (memcheck, helgrind, drd, massif, dhat preload a
 * library of their own beside the core's; callgrind and cachegrind do not, and count the scopes'
 * instructions as they are in production). */
static int valgrind_allocator(void)
{
    const char *p = getenv("LD_PRELOAD");
    for (; p && (p = strstr(p, "vgpreload_")); p += 10)
        if (strncmp(p + 10, "core", 4) != 0) return 1;
    return 0;
}
#endif
#endif

void jarena_install(void)
{
#ifndef JARENA_OFF_BUILD
#ifdef JARENA_VALGRIND
    if (RUNNING_ON_VALGRIND && valgrind_allocator()) return;
#endif
    json_set_alloc_funcs(ja_malloc, ja_free);
    g_on = 1;
#endif
}

int jarena_begin(void)
{
    if (!g_on) return 0;
    tl_depth++;
    return 1;
}

void jarena_end(int opened)
{
    if (!opened || tl_depth <= 0 || --tl_depth > 0) return;
    jchunk *c = tl_head;
    while (c) {
        jchunk *next = c->next;
        if (c != tl_keep) free(c);
        c = next;
    }
    if (tl_keep) {
        tl_keep->used = 0;
        tl_keep->next = NULL;
    }
    tl_head = NULL;
    tl_total = 0;
    tl_spilled = 0;
}

int jarena_holds_all(void)
{
    return tl_depth > 0 && !tl_spilled;
}

size_t jarena_used(size_t *chunks)
{
    size_t used = 0, n = 0;
    for (const jchunk *c = tl_head; c; c = c->next, n++)
        used += c->used;
    if (chunks) *chunks = n;
    return used;
}
