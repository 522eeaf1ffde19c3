/*
 * Writes the seed corpus of fuzz_journal (tests/fuzz/corpus_journal/): journals made by the
 * writer API (jr_append), so the fuzzer starts from real records rather than having to find the
 * format: one event, several with every field set, and the same with a torn tail and with a
 * damaged record in the middle (the cases jr_open exists to survive). Each seed is fuzz_journal's
 * mode byte and then the file. Deterministic: the same build writes the same seeds.
 *
 * Built by `make fuzz`; run: build-fuzz/journal_seeds tests/fuzz/corpus_journal
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "billing/journal.h"

static void event(store_usage_event *ev, int i)
{
    memset(ev, 0, sizeof *ev);
    snprintf(ev->request_id, sizeof ev->request_id, "req_seed%08d", i);
    snprintf(ev->model, sizeof ev->model, i % 2 ? "gpt-4o-mini" : "claude-sonnet-4");
    snprintf(ev->provider, sizeof ev->provider, i % 2 ? "openai" : "anthropic");
    ev->account_id = 1 + i;
    ev->key_id = 10 + i;
    ev->usage.input = 1000 * i;
    ev->usage.cached_input = 10 * i;
    ev->usage.cache_write = i;
    ev->usage.cache_write_1h = i / 2;
    ev->usage.output = 300 + i;
    ev->usage.reasoning = i;
    ev->charged_nusd = 1234567 * (int64_t)i;
    ev->status = i == 3 ? 499 : 200;
    ev->estimated = i == 3;
    ev->cached = i == 4;
    ev->latency_ms = 250 + i;
    ev->created_at_ms = 1760000000000 + i;
    ev->notice_threshold_nusd = i == 2 ? 5000000000 : 0;
    ev->notice_balance_nusd = i == 2 ? 4000000000 : 0;
}

/* A journal of n events by jr_append, read back whole into buf. */
static size_t journal(const char *dir, int n, unsigned char *buf, size_t cap)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/.seed.journal", dir);
    unlink(path);
    jr_t *j = jr_open(path, err, sizeof err);
    if (!j) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        store_usage_event ev;
        event(&ev, i);
        if (jr_append(j, &ev, 1, err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
    }
    jr_close(j);
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(buf, 1, cap, f) : 0;
    if (f) fclose(f);
    unlink(path);
    return got;
}

static void seed(const char *dir, const char *name, unsigned char mode, const unsigned char *p,
                 size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputc(mode, f) == EOF || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    static unsigned char buf[64 * 1024];
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    size_t n = journal(argv[1], 1, buf, sizeof buf);
    seed(argv[1], "one", 0, buf, n);
    n = journal(argv[1], 6, buf, sizeof buf);
    seed(argv[1], "six", 2, buf, n);
    seed(argv[1], "six_fixsums", 1, buf, n);
    seed(argv[1], "torn_tail", 4, buf, n - 50);
    buf[n / 2] ^= 0x40;
    seed(argv[1], "damaged_middle", 6, buf, n);
    return 0;
}
