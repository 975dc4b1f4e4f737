/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file page sources (squib/page_source.h): the memory chain seen
 * through squib_page_source_ops. Pure format code: the pager (Linux) only
 * calls these ops.
 */
#include <squib/page_source.h>

#include <stdlib.h>

#include "chain_internal.h"
#include "memfile_internal.h"

static bool chain_present(void *ctx, uint64_t page)
{
	return squib_chain_owner(ctx, page) != SQUIB_CHAIN_ZERO;
}

static int chain_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		      struct squib_error_detail *d)
{
	return squib_chain_read(ctx, first, count, buf, d);
}

static void chain_release(void *ctx)
{
	squib_chain_free(ctx);
}

static const struct squib_page_source_ops borrowed_ops = {
    .present = chain_present, .read = chain_read, .release = NULL};
static const struct squib_page_source_ops owned_ops = {
    .present = chain_present, .read = chain_read, .release = chain_release};

static int over_chain(struct squib_chain *c, bool own, struct squib_page_source *out,
		      struct squib_error_detail *d)
{
	if (!c || !out) {
		if (own)
			squib_chain_free(c);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "page source: NULL argument");
	}
	*out =
	    (struct squib_page_source){own ? &owned_ops : &borrowed_ops, c,
				       squib_chain_layout(c)->page_size, squib_chain_page_count(c)};
	return 0;
}

int squib_page_source_chain(const struct squib_chain *c, struct squib_page_source *out,
			    struct squib_error_detail *d)
{
	return over_chain((struct squib_chain *)c, false, out, d);
}

int squib_page_source_chain_owned(struct squib_chain *c, struct squib_page_source *out,
				  struct squib_error_detail *d)
{
	return over_chain(c, true, out, d);
}

/* One FULL file: a chain of one borrowed layer, which the source owns. */
int squib_page_source_file(const struct squib_memfile *m, struct squib_page_source *out,
			   struct squib_error_detail *d)
{
	struct squib_chain_layer l;
	struct squib_chain *c;
	int rc;

	if (!m || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "page source: NULL argument");
	if (m->m.layout.kind != SQUIB_MEMORY_FULL)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "page source: %s is a diff; read it through its chain",
				      m->path);
	l = squib_chain_layer_file((struct squib_memfile *)m, false);
	rc = squib_chain_open_layers(&l, 1, &c, d);
	return rc ? rc : over_chain(c, true, out, d);
}
