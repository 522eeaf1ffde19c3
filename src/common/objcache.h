/*
 * Per-thread caches of the larger per-request objects (the proxy, the provider call, the upstream
 * transfer, the settlement: 0.5 to 7 KiB each). glibc's own per-thread cache stops at 1 KiB, and
 * its calloc never uses it (GCC also turns malloc and a memset of zeroes into calloc); so every
 * allocation and free of these went through the arena's bins and consolidation, ~300
 * instructions each, eight times a proxied request. A block freed here waits on its thread's list
 * for the next object of the same size, still warm in the cache (nginx's free lists of request
 * pools serve the same end).
 *
 * Blocks are plain malloc blocks: a block from oc_alloc may be given to free(), and one from
 * malloc of the same size to oc_free, so a path that misses the cache costs speed, never memory
 * safety. oc_free must be given the size the block was allocated with.
 *
 * Bounded: OC_CLASSES sizes a thread, OC_KEEP blocks each, none above OC_MAX; a thread's blocks
 * are freed when it ends. Under AddressSanitizer the cache is off, and under valgrind's memcheck
 * cached blocks are marked inaccessible, so a use after free stays visible to both.
 */
#ifndef MS_OBJCACHE_H
#define MS_OBJCACHE_H

#include <stddef.h>

#define OC_CLASSES 6
#define OC_KEEP 32
#define OC_MIN 512
#define OC_MAX 16384

/* malloc(size), from this thread's cache when a block of that size waits there. */
void *oc_alloc(size_t size);
/* calloc(1, size), the same way. */
void *oc_zalloc(size_t size);
/* free(p), keeping the block on this thread's list when there is room; p may be NULL. */
void oc_free(void *p, size_t size);
/* Blocks this thread holds, and whether this build caches at all (tests). */
size_t oc_held(void);
int oc_active(void);

#endif
