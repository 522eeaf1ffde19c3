/*
 * Scoped memory for jansson's trees (jarena_). A translated request is turned into a tree,
 * rewritten into a second tree, written out and both trees freed, all within one call: a
 * 53 KB request in Claude Code's shape is ~7,000 allocations and as many frees, and glibc's
 * allocator spent ~36% of that translation's instructions on them (its per-thread cache holds
 * seven blocks a size; a tree's thousands of same-size nodes overflow it into the bins). As
 * nginx gives each request a pool, a scope here gives jansson a bump allocator: allocation is
 * a pointer increment, free is nothing, and the scope's end takes everything back at once.
 *
 * jarena_install() makes jansson allocate through this module (once, before any thread uses
 * jansson). Outside a scope, and on threads that never open one, allocation is malloc/free. A
 * scope is per thread: jarena_begin() opens it (a nested begin is part of the outer scope),
 * jarena_end() closes it. Everything jansson allocated in a scope must be freed before its end
 * and is released by it; a tree that outlives its scope is a bug, caught when it is freed on
 * the same thread after the end (abort with a message). So: no json_dumps in a scope (its
 * string would be freed with free()), no tree kept past it. A scope's trees need no
 * json_decref when jarena_holds_all() says so. Memory is bounded: JARENA_MAX bytes
 * a scope, past which allocation falls back to malloc (a free tells the two apart by address).
 *
 * Under AddressSanitizer, or a valgrind tool with an allocator of its own (memcheck...), scopes do
 * nothing: their allocators see every tree.
 */
#ifndef MS_JARENA_H
#define MS_JARENA_H

#include <stddef.h>

/* The first chunk a thread keeps between scopes, and the most one scope may take. */
#define JARENA_CHUNK (64u * 1024)
#define JARENA_MAX (64u * 1024 * 1024)

/* Makes jansson allocate through this module. Call once, before any thread uses jansson. */
void jarena_install(void);

/* Opens a scope on this thread; returns what jarena_end needs (0: nothing was opened: nested,
 * not installed, or under a sanitizer). */
int jarena_begin(void);
/* Closes the scope jarena_begin opened (opened = its result): everything allocated in it is
 * released; the first chunk is kept for the thread's next scope. */
void jarena_end(int opened);

/* Whether everything jansson allocated in this thread's open scope is in the scope's chunks
 * (none came from malloc past JARENA_MAX): the scope's end then frees every tree made in it, and
 * a caller about to end the scope may leave those trees unreleased, where json_decref would walk
 * every node of each to free nothing (a third of a large translation's instructions). Trees from
 * outside the scope must not be referenced by them (their counts would stay raised). 0 outside a
 * scope, and wherever scopes are off, where every tree must be released as always. */
int jarena_holds_all(void);

/* This thread's chunks' bytes in use and their count (tests). */
size_t jarena_used(size_t *chunks);

#endif
