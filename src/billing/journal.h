/*
 * The ledger journal: a local, append-only file of settled usage events that could not stay in
 * memory (the ledger queue is bounded, docs/BILLING.md "Store outages") and are not in the store
 * yet. It exists so that an outage of the store costs memory only up to a cap, and a crash during
 * the outage loses nothing settled: billing.c moves the oldest overflow here on its journal
 * thread, and its ledger thread commits the journal's events to the store when the store works
 * again (and at start, what a dead process left).
 *
 * One record per event: a magic, the payload's length, a checksum (SHA-256 of length and payload,
 * truncated to 8 bytes) and the payload (the event's fields, little-endian, with a version byte:
 * never the struct's memory, so a journal outlives a rebuild). An append is written and
 * fdatasync'd before it returns, so a record that jr_append reported is on disk. A record torn by
 * a crash (the tail of the last append) or damaged fails its checksum and is skipped with a
 * warning: the reader looks for the next intact record, so damage in the middle costs that record
 * only. The file is flock'ed while open: one process per journal.
 *
 * Reading is a queue: jr_read returns events from the head without removing them, jr_consume
 * removes what the last jr_read returned (after the caller committed it), and the file is
 * truncated to empty once everything in it was consumed. Consumption is not made durable before
 * the truncation: after a crash the remaining records are read again, which the store's skip of
 * known request ids makes harmless.
 *
 * A jr_t may be used by two threads (one appending, one reading and consuming); each call takes
 * the journal's mutex for its whole disk work.
 */
#ifndef MS_JOURNAL_H
#define MS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef struct jr jr_t;

/* The largest record on disk, in bytes: a 16-byte header and a payload of at most 361 (a version
 * byte, the three strings with their length bytes: 40 + 128 + 64, and 16 eight-byte numbers). */
#define JR_RECORD_MAX 384

/* Opens (creating it, and its directory, if needed) and locks the journal at path, and counts
 * its intact records. NULL with err on failure (another process holds it, or I/O). */
jr_t *jr_open(const char *path, char *err, size_t errlen);
/* Closes (the file stays, with whatever it holds). */
void jr_close(jr_t *j);
/* Events in the journal not yet consumed. */
uint64_t jr_count(jr_t *j);
/* Appends n events and makes them durable (fdatasync). 0, or -1 with err: then nothing of this
 * call is counted (the file is cut back to where it was, as far as the disk lets). */
int jr_append(jr_t *j, const store_usage_event *ev, size_t n, char *err, size_t errlen);
/* Reads up to max events from the head into out without removing them; *n may be 0 with events
 * left only when the part read was damaged (jr_consume then skips it). 0, or -1 with err. */
int jr_read(jr_t *j, store_usage_event *out, size_t max, size_t *n, char *err, size_t errlen);
/* Removes what the last jr_read returned (and any damage it skipped); truncates the file when
 * nothing is left. */
void jr_consume(jr_t *j);
/* Calls cb for every event not consumed, oldest first, without consuming. 0, or -1 with err. */
int jr_scan(jr_t *j, void (*cb)(void *ud, const store_usage_event *ev), void *ud, char *err,
            size_t errlen);

/* The record encoding, for the tests: writes ev's record into out (JR_RECORD_MAX bytes) and
 * returns its length. */
size_t jr_encode(const store_usage_event *ev, unsigned char *out);

#endif
