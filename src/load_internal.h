/* SPDX-License-Identifier: Apache-2.0 */
/* Loader internals shared by load.c and load_lazy.c (not installed). */
#ifndef SQUIB_LOAD_INTERNAL_H
#define SQUIB_LOAD_INTERNAL_H

#include <squib/load.h>

/* UFFD: register g's (mapped, untouched) regions with a new userfaultfd and
 * hand it to the handler at lazy->uffd_socket (g->remote). */
int squib_load_start_remote(struct squib_guest_memory *g, const struct squib_lazy_options *lazy,
			    struct squib_error_detail *d);

#endif
