/*
 * A SQLite VFS that writes a WAL transaction's frames with one system call instead of two per
 * frame (sqlite_wal.c says why it is safe). store/sqlite.c opens every connection through it.
 */
#ifndef MS_STORE_SQLITE_WAL_H
#define MS_STORE_SQLITE_WAL_H

#include <stdint.h>

/* The VFS's name, for sqlite3_open_v2. */
#define SQW_VFS_NAME "ms-wal"

/* Registers the VFS over the default one (not as the default). Idempotent, thread-safe.
 * Returns SQLITE_OK or SQLite's error. */
int sqw_register(void);

/* What the layer did, summed over every connection (tests and docs). */
typedef struct sqw_stats {
    uint64_t writes;        /* xWrite calls on WAL files */
    uint64_t syscalls;      /* writes that reached the real file (a held run counts once) */
    uint64_t commits;       /* held runs written because a commit frame completed */
    uint64_t rewrites;      /* of them, a commit frame's header written again (checksums) */
    uint64_t barrier_flush; /* held frames found at a publication (should stay 0, see the .c) */
    uint64_t failed;        /* writes that failed (held or not) */
    uint64_t subjournals;   /* statement journals that went to a file (opened through here) */
} sqw_stats;
void sqw_get_stats(sqw_stats *out);

/* Test hook: a function that replaces the real write of held runs, or NULL for the real one. It
 * gets what the real xWrite would and returns an SQLite result code. */
typedef int (*sqw_write_fn)(void *file, const void *p, int n, int64_t off);
void sqw_set_write_hook(sqw_write_fn fn);

#endif
