/*
 * libFuzzer target for `modelswitch import` (store_import in src/store/store.c, the reader of
 * the JSON-lines export format), into a real SQLite store in memory. The input is the import
 * file. Besides "no crash, no leak":
 * - an import that fails leaves the store empty (all of it or nothing): the store then takes the
 *   smallest valid export, which store_import refuses on any store that is not empty;
 * - an import that succeeds is faithful: its store's export, imported into a fresh store and
 *   exported again, gives the same bytes.
 * The store is opened once and reused while imports fail (a rollback is all they leave); only a
 * success costs a new one. Opening a store is migrating its schema, and about all it takes.
 *
 * Build with `make fuzz`, run: build-fuzz/fuzz_import SCRATCH_DIR tests/fuzz/corpus_import
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "config/config.h"
#include "store/store.h"

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static cfg_t cfg;
static store_t *st;
static char *empty; /* an empty store's export */
static size_t empty_n;

static store_t *fresh(void)
{
    char err[512];
    store_t *s = store_open(&cfg, err, sizeof err);
    MUST(s != NULL);
    return s;
}

/* The store's export, malloc'ed, and its length. */
static char *export_of(store_t *s, size_t *n)
{
    char *p = NULL;
    FILE *f = open_memstream(&p, n);
    MUST(f && store_export(s, f) == STORE_OK);
    MUST(fclose(f) == 0);
    return p;
}

static int import_bytes(store_t *s, const void *p, size_t n, int64_t *rows)
{
    /* fmemopen refuses a size of 0 */
    FILE *f = n ? fmemopen((void *)p, n, "r") : fopen("/dev/null", "r");
    MUST(f != NULL);
    int rc = store_import(s, f, rows);
    fclose(f);
    return rc;
}

static void free_store(void)
{
    store_close(st);
    free(empty);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level((log_level)(LOG_ERROR + 1));
    cfg.sqlite_path = ":memory:";
    st = fresh();
    empty = export_of(st, &empty_n);
    atexit(free_store);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20) return 0;
    int64_t rows = -1;
    int rc = import_bytes(st, data, size, &rows);
    if (rc != STORE_OK) {
        MUST(store_errmsg(st)[0] != '\0');
        /* still empty: an empty export is taken (and leaves it empty) */
        MUST(import_bytes(st, empty, empty_n, NULL) == STORE_OK);
        return 0;
    }
    MUST(rows >= 0);
    size_t n1, n2;
    char *x1 = export_of(st, &n1);
    store_close(st);
    st = fresh();
    MUST(import_bytes(st, x1, n1, NULL) == STORE_OK);
    char *x2 = export_of(st, &n2);
    MUST(n1 == n2 && memcmp(x1, x2, n1) == 0);
    free(x1);
    free(x2);
    store_close(st);
    st = fresh();
    return 0;
}
