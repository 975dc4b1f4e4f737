/* SPDX-License-Identifier: Apache-2.0 */
/* Building a chain layer by layer, and its file layers (not installed). */
#ifndef SQUIB_CHAIN_INTERNAL_H
#define SQUIB_CHAIN_INTERNAL_H

#include <squib/chain.h>

/*
 * squib_chain_open_layers in steps, for callers that check a layer of their
 * own before the next is opened (the loader checks the newest layer against
 * the state first): new (room for n layers), add each layer (checked at
 * once: base FULL, link; the chain owns it from here on, also on failure),
 * then seal (the owner map). A chain that failed is freed by the caller.
 */
int squib_chain_new(size_t n, struct squib_chain **out, struct squib_error_detail *d);
int squib_chain_add(struct squib_chain *c, struct squib_chain_layer layer,
		    struct squib_error_detail *d);
int squib_chain_seal(struct squib_chain *c, struct squib_error_detail *d);

/* Layer i's memory file when it is a file layer (squib_chain_layer_file), else NULL. */
struct squib_memfile *squib_chain_memfile(const struct squib_chain *c, size_t i);

#endif /* SQUIB_CHAIN_INTERNAL_H */
