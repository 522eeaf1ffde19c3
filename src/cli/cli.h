/*
 * The operator commands that work on the store directly (no running gateway needed):
 * `account ...`, `key ...`, `migrate` and `audit`, exactly as shared/spec/CONFIG.md lists them,
 * and `export` / `import`, which move a store to another backend (SQLite to PostgreSQL).
 *
 * main.c parses the global options (--config FILE), loads the configuration and hands the rest of
 * the command line here. Output is for people and scripts alike: `account create` prints only the
 * new id, and `key create` prints the full key alone on the last line of stdout (the only time it
 * is ever shown). Exit codes: 0 ok, 1 error (message on stderr), 2 usage error.
 */
#ifndef MS_CLI_H
#define MS_CLI_H

#include <stdio.h>

#include "config/config.h"

#define CLI_OK 0
#define CLI_ERROR 1
#define CLI_USAGE 2

/* argv[0] is the command ("account", "key", "migrate"); returns the process exit code.
 * cfg is only used to open the store, after the whole command line has been validated: --help
 * and usage errors work with cfg == NULL. */
int cli_run(const cfg_t *cfg, int argc, char **argv);
/* 1 when name is a command cli_run handles. */
int cli_is_command(const char *name);
/* Prints one line per command of this module ("  account list   accounts with balances"),
 * descriptions at column 31, for main.c's --help; returns 0. */
int cli_usage(FILE *f);

#endif
