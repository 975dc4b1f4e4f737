/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the subcommands: option values, safe text, the progress bar. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/describe.h>
#include <squib/error.h>

#include "cli.h"

int cli_option_value(int argc, char **argv, int *i, const char *name, const char **value)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, n))
		return 0;
	if (a[n] == '=') {
		*value = a + n + 1;
		return 1;
	}
	if (a[n])
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*value = argv[++*i];
	return 1;
}

void cli_put_text(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
}

void cli_error(const char *cmd, const char *what, int code, const struct squib_error_detail *d)
{
	char msg[SQUIB_ERROR_TEXT_MAX];

	squib_error_format(code, d, msg, sizeof(msg));
	fprintf(stderr, "squib-snapshot: %s: ", cmd);
	if (what) {
		cli_put_text(stderr, what);
		fputs(": ", stderr);
	}
	cli_put_text(stderr, msg);
	fputc('\n', stderr);
}

int cli_fail(const char *cmd, const char *path, int json, int code,
	     const struct squib_error_detail *d)
{
	char *text = NULL;

	cli_error(cmd, path, code, d);
	if (json && !squib_error_json(code, d, path, &text)) {
		fflush(stderr);
		puts(text);
		fflush(stdout);
	}
	free(text);
	return cli_exit_code(code);
}

int cli_exit_code(int code)
{
	if (!code)
		return CLI_EXIT_OK;
	return code == SQUIB_E_CRC_MISMATCH || code == SQUIB_E_PAIR_MISMATCH ? CLI_EXIT_INTEGRITY
									     : CLI_EXIT_ERROR;
}

int cli_mem_path(const char *cmd, const char *state, const char **mem, char **owned)
{
	struct squib_error_detail d;
	int rc = squib_mem_path_for_state(state, *mem, owned, &d);

	if (rc) {
		cli_error(cmd, state, rc, &d);
		return -1;
	}
	*mem = *owned;
	return 0;
}

/* ---- progress bar ---- */

#define BAR_WIDTH 30

/* "12.3 MiB": bytes in the largest binary unit that keeps the number >= 1. */
static void human_size(char *buf, size_t len, uint64_t v)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double x = (double)v;
	size_t u = 0;

	while (x >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		x /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", v);
	else
		snprintf(buf, len, "%.1f %s", x, units[u]);
}

static void draw(struct cli_progress *p, uint64_t done, uint64_t total, int percent)
{
	char bar[BAR_WIDTH + 1], a[32], b[32];
	int fill = total ? (int)((double)done / (double)total * BAR_WIDTH) : BAR_WIDTH;

	for (int i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '-';
	bar[BAR_WIDTH] = '\0';
	human_size(a, sizeof(a), done);
	human_size(b, sizeof(b), total);
	/* On a terminal, erase what a longer previous line left. */
	fprintf(stderr, "\r%s [%s] %3d%%  %s / %s%s", p->label, bar, percent, a, b,
		p->tty ? "\033[K" : "");
	fflush(stderr);
	p->drawn = 1;
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct cli_progress *p = ctx;
	int percent;

	if (!p->decided) {
		p->decided = 1;
		p->tty = isatty(STDERR_FILENO);
		p->active = p->mode == CLI_PROGRESS_ON ||
			    (p->mode == CLI_PROGRESS_AUTO && p->tty &&
			     total >= CLI_PROGRESS_MIN_BYTES);
	}
	if (!p->active)
		return;
	percent = total ? (int)((double)done / (double)total * 100) : 100;
	if (percent > 100)
		percent = 100;
	if (p->drawn && percent == p->percent)
		return;
	p->percent = percent;
	draw(p, done, total, percent);
}

const struct squib_progress *cli_progress_start(struct cli_progress *p, const char *label,
						enum cli_progress_mode mode)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	p->mode = mode;
	p->ops.ctx = p;
	p->ops.fn = on_progress;
	return mode == CLI_PROGRESS_OFF ? NULL : &p->ops;
}

void cli_progress_end(struct cli_progress *p)
{
	if (p->drawn) {
		fputc('\n', stderr);
		fflush(stderr);
	}
	p->drawn = 0;
}

int cli_progress_option(const char *arg, enum cli_progress_mode *mode)
{
	if (!strcmp(arg, "--progress"))
		*mode = CLI_PROGRESS_ON;
	else if (!strcmp(arg, "--no-progress"))
		*mode = CLI_PROGRESS_OFF;
	else
		return 0;
	return 1;
}
