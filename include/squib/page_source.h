/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/page_source.h - where the pages of guest RAM come from, for anything
 * that installs or reads them page by page: the userfaultfd pager
 * (squib/pager.h), the pre-warm walk (squib/prewarm.h), a user's own
 * page-fault handler. Portable: no Linux header.
 *
 * Pages are numbered over the RAM range: regions back to back, page k is
 * bytes [k * page_size, (k + 1) * page_size) (the memory file's numbering).
 * The file sources here are the memory-chain layer (squib/chain.h) seen
 * through these ops; a socket or external source plugs in by filling them.
 *
 * Thread-safety: the file sources are read-only after construction and may
 * be read from several threads at once; the pager nevertheless calls a
 * source's ops one at a time (squib/pager.h).
 */
#ifndef SQUIB_PAGE_SOURCE_H
#define SQUIB_PAGE_SOURCE_H

#include <squib/api.h>
#include <stdbool.h>
#include <stdint.h>

#include <squib/chain.h>
#include <squib/error.h>
#include <squib/memfile.h>

#ifdef __cplusplus
extern "C" {
#endif

struct squib_page_source_ops {
	/* true: page holds data (read it); false: it is zero (never read). */
	bool (*present)(void *ctx, uint64_t page);
	/* Read pages [first, first + count), all present, into buf: 0, a SQUIB_E_*, or
	 * -errno (reported as SQUIB_E_IO with that errno: squib/error.h's backend rule). */
	int (*read)(void *ctx, uint64_t first, uint64_t count, void *buf,
		    struct squib_error_detail *d);
	/* Free ctx (may be NULL); called once by whoever owns the source (squib_pager_free). */
	void (*release)(void *ctx);
};

struct squib_page_source {
	const struct squib_page_source_ops *ops;
	void *ctx;
	uint64_t page_size;  /* bytes per source page: the host page size */
	uint64_t page_count; /* pages in the RAM range */
};

/*
 * The file source over an open memory file (a FULL file: absent pages are
 * zero) or over an open chain (the newest layer holding a page supplies it;
 * no layer: zero). The file or chain is borrowed: it must stay open until
 * the source is released. Adjacent pages of one layer are read with one
 * read of that layer. SQUIB_E_INVALID_ARGUMENT for a DIFF file alone.
 */
SQUIB_API int squib_page_source_file(const struct squib_memfile *m, struct squib_page_source *out,
				     struct squib_error_detail *d);
SQUIB_API int squib_page_source_chain(const struct squib_chain *c, struct squib_page_source *out,
				      struct squib_error_detail *d);

/* The same, owning the chain: released with the source (also when this call fails). */
SQUIB_API int squib_page_source_chain_owned(struct squib_chain *c, struct squib_page_source *out,
					    struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_PAGE_SOURCE_H */
