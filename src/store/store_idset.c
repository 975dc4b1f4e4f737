/* SPDX-License-Identifier: Apache-2.0 */
/* A set of chunk ids: open addressing (the ids are uniform), grown at half load. */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

int squib_store_idset_add(struct squib_store_idset *s, const struct squib_store_hash *h,
			  bool *added)
{
	uint64_t x;

	if (2 * (s->n + 1) > s->cap) {
		struct squib_store_idset g = {calloc(s->cap ? 2 * s->cap : 1024, sizeof(*s->v)), 0,
					      s->cap ? 2 * s->cap : 1024};
		bool dummy;

		if (!g.v)
			return SQUIB_E_NOMEM;
		for (size_t i = 0; i < s->cap; i++)
			if (!squib_store_hash_is_zero(&s->v[i]))
				squib_store_idset_add(&g, &s->v[i], &dummy);
		free(s->v);
		*s = g;
	}
	memcpy(&x, h->b, sizeof(x));
	for (size_t i = x & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (squib_store_hash_is_zero(&s->v[i])) {
			s->v[i] = *h;
			s->n++;
			*added = true;
			return 0;
		}
		if (!memcmp(s->v[i].b, h->b, sizeof(h->b))) {
			*added = false;
			return 0;
		}
	}
}

bool squib_store_idset_has(const struct squib_store_idset *s, const struct squib_store_hash *h)
{
	uint64_t x;

	if (!s->cap)
		return false;
	memcpy(&x, h->b, sizeof(x));
	for (size_t i = x & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (squib_store_hash_is_zero(&s->v[i]))
			return false;
		if (!memcmp(s->v[i].b, h->b, sizeof(h->b)))
			return true;
	}
}

void squib_store_idset_free(struct squib_store_idset *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}
