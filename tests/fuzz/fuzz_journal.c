/*
 * libFuzzer target for the ledger journal's reader (src/billing/journal.c): a journal on disk
 * may be torn or damaged by a crash or the disk, and jr_open must make sense of any bytes.
 *
 * The input's first byte is a mode, the rest is the journal file, written to a tmpfs path
 * (/dev/shm) and opened with jr_open. Mode bit 0: first give every record header in the file its
 * correct checksum (mutations never forge a SHA-256, and without this the fuzzer would only ever
 * see the checksum refuse a payload); bits 1-3: how many events each jr_read asks for. Then, for
 * any input:
 * - jr_scan sees exactly jr_count events, and every one is genuine: encoded again (jr_encode) it
 *   is a byte string that occurs in the input (the reader returns nothing it made up);
 * - reading the queue (jr_read, jr_consume) to its end returns the same events in the same order,
 *   each read returning some or moving the head, and leaves a count of 0 and an empty file;
 * - an append after that, a close and an open again give back that one event.
 * No crash, hang or leak (ASan's leak check runs at exit and every -runs).
 *
 * Build with `make fuzz`, run: build-fuzz/fuzz_journal SCRATCH_DIR tests/fuzz/corpus_journal
 * The seeds are journals made by the writer API: build-fuzz/journal_seeds tests/fuzz/corpus_journal
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "billing/journal.h"
#include "common/log.h"

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

#define MAX_EVENTS 4096

static char path[64];
static store_usage_event scanned[MAX_EVENTS], got[MAX_EVENTS];
static size_t nscanned;
static const uint8_t *input;
static size_t input_n;

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Every "MSLJ" whose length fits before the end gets the checksum of what follows it. */
static void fix_sums(uint8_t *f, size_t n)
{
    for (size_t i = 0; i + 16 <= n; i++) {
        if (le32(f + i) != 0x4A4C534Du) continue;
        uint32_t plen = le32(f + i + 4);
        if (plen == 0 || plen > JR_RECORD_MAX - 16 || plen > n - i - 16) continue;
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        EVP_MD_CTX *x = EVP_MD_CTX_new();
        MUST(x && EVP_DigestInit_ex(x, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(x, f + i + 4, 4) == 1 && EVP_DigestUpdate(x, f + i + 16, plen) == 1 &&
             EVP_DigestFinal_ex(x, md, &mdlen) == 1);
        EVP_MD_CTX_free(x);
        memcpy(f + i + 8, md, 8);
    }
}

static void on_scan(void *ud, const store_usage_event *ev)
{
    (void)ud;
    MUST(nscanned < MAX_EVENTS);
    unsigned char rec[JR_RECORD_MAX];
    size_t n = jr_encode(ev, rec);
    MUST(n > 16 && n <= JR_RECORD_MAX);
    MUST(memmem(input, input_n, rec, n) != NULL);
    scanned[nscanned++] = *ev;
}

static int ev_eq(const store_usage_event *a, const store_usage_event *b)
{
    return strcmp(a->request_id, b->request_id) == 0 && strcmp(a->model, b->model) == 0 &&
           strcmp(a->provider, b->provider) == 0 && a->account_id == b->account_id &&
           a->key_id == b->key_id && a->usage.input == b->usage.input &&
           a->usage.cached_input == b->usage.cached_input &&
           a->usage.cache_write == b->usage.cache_write &&
           a->usage.cache_write_1h == b->usage.cache_write_1h &&
           a->usage.output == b->usage.output && a->usage.reasoning == b->usage.reasoning &&
           a->charged_nusd == b->charged_nusd && a->status == b->status &&
           a->estimated == b->estimated && a->cached == b->cached &&
           a->latency_ms == b->latency_ms && a->created_at_ms == b->created_at_ms &&
           a->notice_threshold_nusd == b->notice_threshold_nusd &&
           a->notice_balance_nusd == b->notice_balance_nusd;
}

static void cleanup(void)
{
    unlink(path);
    char dir[64];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
}

static off_t file_size(void)
{
    struct stat sb;
    MUST(stat(path, &sb) == 0);
    return sb.st_size;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* jr_open's warnings about damage would be most of the run's time */
    log_set_level((log_level)(LOG_ERROR + 1));
    snprintf(path, sizeof path, "/dev/shm/ms-fuzz-journal-%d/j", (int)getpid());
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 256 * 1024) return 0;
    unsigned mode = data[0];
    size_t step = 1 + ((mode >> 1) & 7) * 3; /* 1 to 22 events a read */
    uint8_t *f = malloc(size);
    memcpy(f, data + 1, size - 1);
    input_n = size - 1;
    if (mode & 1) fix_sums(f, input_n);
    input = f;

    unlink(path);
    char err[512];
    /* jr_open creates the directory; the file is written first, so make it here */
    jr_t *j = jr_open(path, err, sizeof err);
    MUST(j != NULL);
    jr_close(j);
    int fd = open(path, O_WRONLY | O_TRUNC);
    MUST(fd >= 0);
    MUST(write(fd, f, input_n) == (ssize_t)input_n);
    close(fd);

    j = jr_open(path, err, sizeof err);
    MUST(j != NULL);
    uint64_t count = jr_count(j);
    MUST(file_size() <= (off_t)input_n);
    nscanned = 0;
    MUST(jr_scan(j, on_scan, NULL, err, sizeof err) == 0);
    MUST(nscanned == count);

    size_t total = 0;
    for (int rounds = 0;; rounds++) {
        size_t n = 0;
        MUST(rounds <= (int)input_n + 2);
        MUST(jr_read(j, got, step, &n, err, sizeof err) == 0);
        MUST(n <= step && total + n <= nscanned);
        for (size_t i = 0; i < n; i++)
            MUST(ev_eq(&got[i], &scanned[total + i]));
        total += n;
        uint64_t before = jr_count(j);
        jr_consume(j);
        MUST(jr_count(j) == before - n);
        if (n == 0 && total == nscanned) break;
    }
    MUST(total == nscanned && jr_count(j) == 0 && file_size() == 0);

    store_usage_event ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.request_id, sizeof ev.request_id, "req_fuzz");
    snprintf(ev.model, sizeof ev.model, "m");
    ev.charged_nusd = 42;
    MUST(jr_append(j, &ev, 1, err, sizeof err) == 0);
    jr_close(j);
    j = jr_open(path, err, sizeof err);
    MUST(j != NULL && jr_count(j) == 1);
    size_t n = 0;
    MUST(jr_read(j, got, 4, &n, err, sizeof err) == 0 && n == 1);
    MUST(ev_eq(&got[0], &ev));
    jr_close(j);
    free(f);
    return 0;
}
