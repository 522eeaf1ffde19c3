/*
 * Logging. Operator messages and the access log both go to stderr, one line each, written by a
 * dedicated logger thread: an event-loop thread only copies the line into a bounded queue and
 * never blocks on the terminal or a pipe. When the queue is full, lines are dropped and counted
 * (a slow stderr must not slow down traffic).
 *
 * Nothing secret is ever passed here: callers log key prefixes, never keys.
 */
#ifndef MS_LOG_H
#define MS_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Starts the logger thread. Before log_start (and after log_stop) lines are written directly. */
void log_start(void);
/* Flushes what is queued and stops the thread. */
void log_stop(void);
void log_set_level(log_level lvl);
void log_msg(log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Queues one already formatted line (a newline is added). */
void log_line(const char *line, size_t n);
/* A worker thread's lines are queued together once a loop iteration (log.c says why): from
 * log_batch_begin on, this thread's lines wait in a buffer of its own until log_batch_flush
 * (the end of each iteration), and log_batch_end flushes and stops that (before the thread
 * ends: what is not flushed is lost). A batch that does not fit in the queue is dropped whole
 * and its lines counted. */
void log_batch_begin(void);
void log_batch_flush(void);
void log_batch_end(void);
/* How many lines were dropped because the queue was full, since the start (any thread). */
uint64_t log_dropped_total(void);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
