/*
 * Unit tests for src/common/jarena.c, jansson's scoped memory: trees built in a scope take the
 * scope's chunks and give them back at its end (the thread's first chunk kept for the next);
 * trees made before a scope are freed inside it by malloc's free; a nested scope is part of the
 * outer; a scope past JARENA_MAX falls back to malloc (and then no longer holds all its trees:
 * jarena_holds_all); trees left unreleased in a scope that holds them all go with its end;
 * blocks are 16-aligned; two threads' scopes do not meet; a tree freed after its scope ends the
 * process with a message. Under AddressSanitizer or valgrind's memcheck scopes are off: the checks
 * that need them are skipped, the fallbacks are still run.
 */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/jarena.h"
#include "tap.h"

static int g_on; /* scopes work here (not under a sanitizer's allocator) */

/* A document of n members, each an object with a string and a number, as a translated
 * request's tools are. */
static json_t *tree(int n)
{
    json_t *o = json_object();
    for (int i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof k, "member_%d", i);
        json_object_set_new(o, k,
                            json_pack("{s:s, s:i, s:[s,s]}", "name", "a tool's name", "n", i,
                                      "list", "first", "second"));
    }
    return o;
}

static void test_scope_takes_and_gives_back(void)
{
    size_t chunks = 0;
    int s = jarena_begin();
    CHECK_EQ_INT(s, g_on);
    json_t *t = tree(2000);
    size_t used = jarena_used(&chunks);
    if (g_on) {
        CHECK(used > 100000);
        CHECK(chunks >= 2); /* 64 KiB first, then twice as much each time */
    } else {
        CHECK_EQ_INT(used, 0);
    }
    /* the tree is whole: every member reads back */
    CHECK_EQ_INT(json_object_size(t), 2000);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(t, "member_1999"), "n")), 1999);
    json_decref(t);
    CHECK_EQ_INT(jarena_holds_all(), g_on);
    jarena_end(s);
    CHECK_EQ_INT(jarena_holds_all(), 0); /* outside a scope: release as always */
    CHECK_EQ_INT(jarena_used(&chunks), 0);
    CHECK_EQ_INT(chunks, 0);
    /* the next scope starts in the kept chunk: a small tree takes no new one */
    s = jarena_begin();
    t = json_pack("{s:s}", "a", "b");
    jarena_used(&chunks);
    CHECK_EQ_INT(chunks, g_on ? 1 : 0);
    json_decref(t);
    jarena_end(s);
}

/* Trees made outside a scope are malloc's: freed inside one, they go back to free (a tree of
 * thousands of nodes would corrupt the heap otherwise, and the loop after it would fail). */
static void test_outside_trees_freed_inside(void)
{
    json_t *before = tree(500);
    int s = jarena_begin();
    json_t *inside = tree(500);
    json_decref(before);
    json_decref(inside);
    jarena_end(s);
    for (int i = 0; i < 20; i++) {
        json_t *t = tree(100);
        CHECK_EQ_INT(json_object_size(t), 100);
        json_decref(t);
    }
}

static void test_nested_and_aligned(void)
{
    int outer = jarena_begin();
    int inner = jarena_begin();
    json_t *t = tree(50);
    jarena_end(inner);
    /* still the outer scope's: nothing was given back */
    CHECK(g_on ? jarena_used(NULL) > 0 : jarena_used(NULL) == 0);
    /* the scope's blocks are aligned as malloc's (a sanitizer's allocator keeps its own) */
    for (int i = 0; i < 64 && g_on; i++) {
        json_t *v = json_stringn("xxxxxxx", (size_t)i % 7);
        CHECK((uintptr_t)v % 16 == 0);
        CHECK((uintptr_t)json_string_value(v) % 16 == 0);
        json_decref(v);
    }
    json_decref(t);
    jarena_end(outer);
    CHECK_EQ_INT(jarena_used(NULL), 0);
}

/* Past JARENA_MAX a scope's allocations are malloc's, and are freed as such. */
static void test_past_the_cap(void)
{
    size_t big = JARENA_MAX / 3 + 1;
    char *s = malloc(big + 1);
    memset(s, 'a', big);
    s[big] = '\0';
    int sc = jarena_begin();
    json_t *v[4];
    for (int i = 0; i < 4; i++) {
        /* two fit under the cap, the third cannot: from then on the scope's trees must be
         * released */
        CHECK_EQ_INT(jarena_holds_all(), g_on && i < 3);
        v[i] = json_stringn(s, big);
    }
    CHECK_EQ_INT(jarena_holds_all(), 0);
    for (int i = 0; i < 4; i++) {
        CHECK(v[i] != NULL);
        CHECK_EQ_INT(json_string_length(v[i]), big);
    }
    if (g_on) CHECK(jarena_used(NULL) <= JARENA_MAX);
    for (int i = 0; i < 4; i++)
        json_decref(v[i]);
    jarena_end(sc);
    free(s);
    /* the next scope starts clean */
    sc = jarena_begin();
    CHECK_EQ_INT(jarena_holds_all(), g_on);
    jarena_end(sc);
}

/* A scope's trees left unreleased when jarena_holds_all() says so: the end takes them back, and
 * the next scope reuses the memory (valgrind's memcheck, where scopes are off, sees every tree
 * released, as the callers do then). */
static void test_unreleased_trees(void)
{
    for (int r = 0; r < 50; r++) {
        int s = jarena_begin();
        json_t *t = tree(300);
        CHECK_EQ_INT(json_object_size(t), 300);
        if (!jarena_holds_all()) json_decref(t);
        jarena_end(s);
        CHECK_EQ_INT(jarena_used(NULL), 0);
    }
}

static void *worker(void *arg)
{
    int *ok = arg;
    for (int r = 0; r < 200; r++) {
        int s = jarena_begin();
        json_t *t = tree(200);
        json_t *m = json_object_get(t, "member_150");
        if (json_integer_value(json_object_get(m, "n")) != 150) *ok = 0;
        json_decref(t);
        jarena_end(s);
        if (jarena_used(NULL) != 0) *ok = 0;
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[2];
    int ok[2] = {1, 1};
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, worker, &ok[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK(ok[0] && ok[1]);
}

/* A tree kept past its scope is freed into memory the next scope owns: the process stops. */
static void test_escape_aborts(void)
{
    if (!g_on) {
        printf("# skipped: scopes are off under this allocator\n");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int s = jarena_begin();
        json_t *kept = json_pack("{s:s}", "kept", "past its scope");
        jarena_end(s);
        if (!freopen("/dev/null", "w", stderr)) _exit(3); /* the message is expected */
        json_decref(kept);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
}

int main(void)
{
    jarena_install();
    int s = jarena_begin();
    g_on = s;
    jarena_end(s);
    RUN(test_scope_takes_and_gives_back);
    RUN(test_outside_trees_freed_inside);
    RUN(test_nested_and_aligned);
    RUN(test_past_the_cap);
    RUN(test_unreleased_trees);
    RUN(test_threads);
    RUN(test_escape_aborts);
    TAP_DONE();
}
