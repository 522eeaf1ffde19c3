/*
 * How the C library's allocator treats the gateway's large buffers (a request body of a few
 * hundred KB, the TLS records it becomes, an upstream answer): kept in the worker's heap and used
 * again by the next request, instead of handed back to the kernel at every free and faulted in,
 * page by page, on the next one.
 *
 * Why: glibc's defaults adapt the mmap threshold and the heap's trim threshold to what was freed
 * last, so with a few dozen 100 KB bodies in flight a worker's arena shrank (madvise DONTNEED)
 * and grew again all the time: measured with 64 connections of 100 KB prompts to an HTTPS
 * upstream, the worker spent a third of its time in page faults, 290 µs of CPU a request against
 * 113 µs with the thresholds fixed (docs/PERFORMANCE.md, round 13). Fixed thresholds also end
 * the adaptation, so the behaviour no longer depends on the order in which buffers were freed.
 */
#ifndef MS_MEMTUNE_H
#define MS_MEMTUNE_H

/* Blocks this large or larger are mapped on their own (and unmapped at free): a body over a few
 * MB is rare and costs its faults once, whereas everything below stays in the heap. */
#define MEMTUNE_MMAP_THRESHOLD (4 * 1024 * 1024)
/* Free memory an arena keeps at its top before returning the excess to the kernel: what a burst
 * of large requests leaves behind is kept for the next one, up to this much an arena. */
#define MEMTUNE_TRIM_THRESHOLD (16 * 1024 * 1024)

typedef enum {
    MEMTUNE_APPLIED,    /* both thresholds set */
    MEMTUNE_OPERATOR,   /* GLIBC_TUNABLES names a malloc tunable: the operator's choice stands */
    MEMTUNE_UNSUPPORTED /* not glibc's allocator (another libc, a sanitizer's): left as it is */
} memtune_result;

/* Call once, before the first thread starts (arenas take the thresholds as they are created). */
memtune_result memtune_setup(void);

#endif
