/*
 * The serving lock of a SQLite store. Balances, holds and rate limits live in the memory of the
 * gateway process that serves a store; a second `serve` on the same file would keep its own
 * copies, admit requests against money the first has already held, and overspend (both write the
 * ledger, neither sees the other's holds). So `serve` takes an exclusive flock on a file beside
 * the database before it opens the store, and a second one refuses to start.
 *
 * flock, not a pid file: the kernel drops the lock when the holder dies, by kill -9 too, so a
 * crashed gateway never leaves a stale lock behind. It is taken on its own file because SQLite
 * uses POSIX record locks on the database, and closing any descriptor of that file would drop
 * them. The CLI does not take it: operator commands work on a store that is being served.
 * Several instances on one store are for PostgreSQL and Redis, where the shared state is too:
 * on PostgreSQL without `redis:` the same rule holds through a session advisory lock
 * (store_pg_serve_lock in postgres.c); with `redis:` no lock is taken.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "store/backend.h"

struct store_lock {
    int fd;   /* SQLite: the flocked file, else -1 */
    void *pg; /* PostgreSQL: the connection holding the advisory lock */
};

/* The pid the holder wrote into the lock file, or 0. */
static long holder_pid(int fd)
{
    char b[24];
    ssize_t n = pread(fd, b, sizeof b - 1, 0);
    if (n <= 0) return 0;
    b[n] = '\0';
    return strtol(b, NULL, 10);
}

/* The flock on "<database>.lock": the descriptor, or -1 with err. */
static int store_flock(const cfg_t *cfg, char *err, size_t errlen)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s.lock", cfg->sqlite_path) >= sizeof path) {
        snprintf(err, errlen, "the store path is too long");
        return -1;
    }
    if (store_mkdirs(path, err, errlen) != 0) return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? holder_pid(fd) : 0;
        if (e == EWOULDBLOCK && pid > 0)
            snprintf(err, errlen,
                     "the store %s is in use by another modelswitch serve (pid %ld): stop it "
                     "first, or give this one its own store",
                     cfg->sqlite_path, pid);
        else if (e == EWOULDBLOCK)
            snprintf(err, errlen,
                     "the store %s is in use by another modelswitch serve: stop it first, or "
                     "give this one its own store",
                     cfg->sqlite_path);
        else
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        close(fd);
        return -1;
    }
    /* for the message a second instance prints; the lock itself is the flock */
    char b[24];
    int n = snprintf(b, sizeof b, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, b, (size_t)n, 0) != n) {
        /* the lock holds without it; only the other instance's message is poorer */
    }
    return fd;
}

int store_serve_lock(const cfg_t *cfg, store_lock **out, char *err, size_t errlen)
{
    store_lock *l;

    *out = NULL;
    if (!cfg) return 0;
    /* PostgreSQL with Redis: the instances share holds and limits, any number may serve */
    if (!cfg->sqlite_path && cfg->redis_url && *cfg->redis_url) return 0;
    if (!(l = calloc(1, sizeof(*l)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->fd = -1;
    if (cfg->sqlite_path)
        l->fd = store_flock(cfg, err, errlen);
    else if (cfg->postgres_url)
        l->pg = store_pg_serve_lock(cfg, err, errlen);
    else {
        free(l);
        return 0;
    }
    if (l->fd < 0 && !l->pg) {
        free(l);
        return -1;
    }
    *out = l;
    return 0;
}

void store_serve_unlock(store_lock *l)
{
    if (!l) return;
    if (l->fd >= 0) close(l->fd);
    if (l->pg) store_pg_serve_unlock(l->pg);
    free(l);
}
