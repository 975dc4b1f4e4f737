/* SPDX-License-Identifier: Apache-2.0 */
/* squib-snapshot CLI: one file per subcommand, dispatched from main.c. */
#ifndef SQUIB_CLI_H
#define SQUIB_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <squib/error.h>
#include <squib/kvm.h>
#include <squib/progress.h>

/*
 * The exit codes every subcommand follows (README "Exit status", squib-snapshot(1)):
 *   0  done (verify: every check ok or skipped; describe: described, CRC good)
 *   1  bad usage; an input that cannot be read or is not of the kind expected
 *      (not a snapshot file, another magic or version, malformed); any other
 *      failure (KVM, a write, a signal-less pager error)
 *   2  integrity: the input was read but fails a check of what it claims: a CRC
 *      or digest that does not match (SQUIB_E_CRC_MISMATCH), or files that do
 *      not belong together (SQUIB_E_PAIR_MISMATCH: a memory file that is not the
 *      state's, a diff whose parent is not the layer below it)
 */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,
	CLI_EXIT_INTEGRITY = 2,
};

/* The exit code of a failure with this SQUIB_E_* code (0 for 0), by the table above. */
int cli_exit_code(int code);

struct cli_command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
	void (*usage)(FILE *out);
};

extern const struct cli_command cli_cmd_version;
extern const struct cli_command cli_cmd_describe;
extern const struct cli_command cli_cmd_verify;
extern const struct cli_command cli_cmd_rebase;
extern const struct cli_command cli_cmd_run;
extern const struct cli_command cli_cmd_restore;
extern const struct cli_command cli_cmd_serve;
extern const struct cli_command cli_cmd_push;
extern const struct cli_command cli_cmd_pull;
extern const struct cli_command cli_cmd_store;

/* `squib-snapshot --version` (argc counts argv[0] and the option). */
int cli_version_option(int argc);

/* Is argv[i] "--help" or "-h"? */
int cli_wants_help(int argc, char **argv);

/*
 * Is argv[*i] the option `name` ("--mem") with a value, as "--mem VALUE" or
 * "--mem=VALUE"? 1 and *value set (*i advanced past a separate value); 0 if
 * it is another argument; -1 if the value is missing.
 */
int cli_option_value(int argc, char **argv, int *i, const char *name, const char **value);

/* Text from a file or the command line with control characters escaped (\xNN). */
void cli_put_text(FILE *f, const char *s);

/* "squib-snapshot: CMD: WHAT: message (detail)" on stderr; what may be NULL. */
void cli_error(const char *cmd, const char *what, int code, const struct squib_error_detail *d);

/* cli_error, and with json the failure as a JSON object on stdout (squib_error_json).
 * Returns the exit code of the table below. */
int cli_fail(const char *cmd, const char *path, int json, int code,
	     const struct squib_error_detail *d);

/*
 * The memory file of STATE (squib_mem_path_for_state: *mem when given, else
 * STATE with its last extension replaced by .mem): *mem points at *owned
 * (free() it). -1 with the error on stderr when there is none.
 */
int cli_mem_path(const char *cmd, const char *state, const char **mem, char **owned);

/* ---- the KVM guest of `run` and `restore` (tools/kvm_guest.c) ---- */

/*
 * The guest protocol of tests/guests/counter.S: a flat 64-bit binary loaded
 * at CLI_GUEST_CODE and entered with %rsi = vCPU i's counter (its own page
 * at CLI_GUEST_COUNTERS + i * 4 KiB) and %rdx = the counter-report port.
 * The VM: CLI_GUEST_RAM of RAM at 0, in-kernel irqchip, the console on port
 * 0xe9 and the counter-report device on CLI_GUEST_PORT.
 */
#define CLI_GUEST_RAM	   (4ull << 20)
#define CLI_GUEST_TABLES   0x1000ull
#define CLI_GUEST_CODE	   0x10000ull
#define CLI_GUEST_COUNTERS 0x20000ull
#define CLI_GUEST_PORT	   0x3f0
#define CLI_GUEST_CONSOLE  0xe9
#define CLI_GUEST_WAIT_MS  10000u

/*
 * The Linux guest of `run --kernel` and its restore: one vCPU, RAM at 0, the
 * in-kernel irqchip and PIT, a 16550 UART at COM1 (0x3f8, IRQ 4) as the
 * console. Its "reports" are console lines.
 */
#define CLI_LINUX_UART_PORT 0x3f8
#define CLI_LINUX_UART_IRQ  4
#define CLI_LINUX_WAIT_MS   120000u /* per line: nested, lazily restored guests are slow */
#define CLI_LINUX_BOOT_MS   900000u /* to the ready line: a nested TCG boot can take minutes */

enum cli_guest_kind { CLI_GUEST_KIND_COUNTER = 0, CLI_GUEST_KIND_LINUX };

struct cli_vm_shape {
	enum cli_guest_kind kind;
	uint32_t vcpus;
	uint64_t ram;	/* bytes at gpa 0; 0: none yet (a restore target) */
	bool track;	/* dirty-page tracking, for a Diff save */
	int console_fd; /* the Linux guest's UART output */
};

struct cli_vm {
	enum cli_guest_kind kind;
	struct squib_kvm_vm *vm;
	struct squib_kvm_counter *counter; /* counter guest */
	struct squib_kvm_uart *uart;	   /* Linux guest */
	struct squib_kvm_adapter *adapter;
	struct squib_vm v;
};

/* A VM of the shape's kind with its devices and the adapter. */
int cli_vm_new(struct cli_vm *c, const struct cli_vm_shape *shape, struct squib_error_detail *d);
void cli_vm_free(struct cli_vm *c);
/* Reports so far by vCPU i: counter reports, or the Linux console's lines. */
uint64_t cli_vm_reports(struct cli_vm *c, uint32_t i);
/* Wait until vCPU i has made `want` reports in all (SQUIB_E_IO, ETIMEDOUT after timeout_ms). */
int cli_vm_wait_until(struct cli_vm *c, uint32_t i, uint64_t want, uint32_t timeout_ms,
		      struct squib_error_detail *d);
/* The default per-report timeout of the VM's kind. */
uint32_t cli_vm_wait_ms(const struct cli_vm *c);
/* Wait until every vCPU has made `reports` more reports than now. */
int cli_vm_wait_reports(struct cli_vm *c, uint64_t reports, struct squib_error_detail *d);
/* A guest that stopped making progress: squib_kvm_vm_dump to stderr three times, 100 ms
 * apart (a RIP that moves is a loop, one that stays is a wait); cmd names the command. */
void cli_vm_dump_stuck(struct cli_vm *c, const char *cmd);
/* Print "vCPU i: counter C, reports R" for each vCPU (counter from guest memory),
 * or for Linux "console: N lines, B bytes, last 'LINE'". */
void cli_vm_print_counters(struct cli_vm *c, FILE *out);
/* The console's output: PATH created or truncated (NULL: stdout, fd 1); -1 with a message. */
int cli_console_open(const char *path);
/* CLOCK_MONOTONIC in ns. */
uint64_t cli_now_ns(void);
/* The guest kind a saved state holds (a UART device: Linux) and its vCPU count. */
void cli_state_shape(const char *state_path, struct cli_vm_shape *shape);
/* The console's last line as saved in a state (Linux guests); -1 if there is none. */
int cli_state_console(const struct squib_microvm_state *s, struct squib_kvm_uart_info *info);
/* Parse a decimal count in [lo, hi]; -1 when it is not one. */
int cli_parse_count(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);

/* ---- progress bar on stderr ---- */

enum cli_progress_mode {
	CLI_PROGRESS_AUTO = 0, /* when stderr is a terminal and the work is large */
	CLI_PROGRESS_ON,       /* always (--progress) */
	CLI_PROGRESS_OFF,      /* never (--no-progress) */
};

/* "Large": below this many bytes of work, AUTO draws nothing. */
#define CLI_PROGRESS_MIN_BYTES (64ull << 20)

struct cli_progress {
	const char *label;
	enum cli_progress_mode mode;
	int decided, active, tty, drawn, percent;
	struct squib_progress ops;
};

/* Ready p; the callbacks to hand to the library (NULL when mode is OFF). */
const struct squib_progress *cli_progress_start(struct cli_progress *p, const char *label,
						enum cli_progress_mode mode);

/* End the bar's line if one was drawn (call before printing anything else). */
void cli_progress_end(struct cli_progress *p);

/* Is arg --progress or --no-progress? 1 and *mode set, else 0. */
int cli_progress_option(const char *arg, enum cli_progress_mode *mode);

/* ---- lazy restore from a store: --from URL/ID, --cache DIR|none, --cache-size BYTES ---- */

struct squib_store;
struct squib_store_source;
struct squib_page_source;

struct cli_from {
	const char *ref;     /* --from URL/ID; NULL: not from a store */
	const char *cache;   /* --cache DIR or "none"; NULL: the default directory */
	uint64_t cache_size; /* --cache-size; 0: the library's default */
};

/* One of --from, --cache, --cache-size at argv[*i]: 1 taken, 0 not one, -1 bad (said). */
int cli_from_option(const char *cmd, int argc, char **argv, int *i, struct cli_from *f);

/* Open the store and image f->ref names as a page source (*ss: its handle), with the
 * chunk cache f asks for; *store must be closed after the source is released. */
int cli_from_open(const struct cli_from *f, struct squib_store **store,
		  struct squib_page_source *src, struct squib_store_source **ss,
		  struct squib_error_detail *d);

/* One line of the source's statistics ("store: N chunks fetched, ..."). */
void cli_from_print_stats(const struct squib_store_source *ss);

/* restore --from: the image's state fetched into a private directory and a `serve --from`
 * child (the same cache options; prefetch and record sets, may be NULL) listening on sock. */
struct cli_from_restore {
	char *dir, *state, *sock;
	pid_t pid;
};
int cli_from_restore_start(struct cli_from_restore *r, const struct cli_from *f,
			   const char *prefetch, const char *record, struct squib_error_detail *d);
/* Wait for serve (stopped first when the restore failed), remove the directory; 1 when
 * serve failed. */
int cli_from_restore_finish(struct cli_from_restore *r, bool failed);

#endif
