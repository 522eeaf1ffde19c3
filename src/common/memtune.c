/*
 * The allocator's thresholds for large blocks (memtune.h says why). glibc only: elsewhere the
 * call reports that it changed nothing.
 */
#include "common/memtune.h"

#include <stdlib.h>
#include <string.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

memtune_result memtune_setup(void)
{
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && strstr(t, "glibc.malloc.")) return MEMTUNE_OPERATOR;
#if defined(__GLIBC__)
    /* mallopt returns 1 on success; a sanitizer's allocator intercepts it and returns 0 */
    if (mallopt(M_MMAP_THRESHOLD, MEMTUNE_MMAP_THRESHOLD) == 1 &&
        mallopt(M_TRIM_THRESHOLD, MEMTUNE_TRIM_THRESHOLD) == 1)
        return MEMTUNE_APPLIED;
#endif
    return MEMTUNE_UNSUPPORTED;
}
