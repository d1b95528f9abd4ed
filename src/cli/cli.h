/*
 * cli.h - subcommands of the carevault binary that live outside main.c.
 */
#ifndef CV_CLI_CLI_H
#define CV_CLI_CLI_H

/* `carevault import`: argv[0] is "import". Returns the exit code. */
int cv_cli_import(int argc, char **argv);

/* `carevault user`: argv[0] is "user". Returns the exit code. */
int cv_cli_user(int argc, char **argv);

#endif
