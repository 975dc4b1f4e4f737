/* SPDX-License-Identifier: Apache-2.0 */
/* Pager internals shared with the loader (not installed). */
#ifndef SQUIB_PAGER_INTERNAL_H
#define SQUIB_PAGER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <squib/memfile.h>
#include <squib/pager.h>

/*
 * The file source over layers[0..n) (the full base first, diffs oldest
 * first; n == 1: one FULL file). own: the source closes the layers and
 * frees the array on release (also when this call fails).
 */
int squib_page_source_layers(struct squib_memfile **layers, size_t n, bool own,
			     struct squib_page_source *out, struct squib_error_detail *d);

/* The layers of an open chain (borrowed). */
struct squib_memfile **squib_memfile_chain_layers(const struct squib_memfile_chain *c, size_t *n);

#endif
