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

/* ---- name -> base ---------------------------------------------------------- */

/* The slot of name: its own, or the empty one where it goes. */
static size_t idmap_slot(const struct squib_store_idmap *m, const struct squib_store_hash *name)
{
	uint64_t x;

	memcpy(&x, name->b, sizeof(x));
	for (size_t i = x & (m->cap - 1);; i = (i + 1) & (m->cap - 1))
		if (squib_store_hash_is_zero(&m->k[i]) ||
		    !memcmp(m->k[i].b, name->b, sizeof(name->b)))
			return i;
}

int squib_store_idmap_put(struct squib_store_idmap *m, const struct squib_store_hash *name,
			  const struct squib_store_hash *base)
{
	size_t i;

	if (2 * (m->n + 1) > m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 1024;
		struct squib_store_idmap g = {calloc(cap, sizeof(*g.k)), calloc(cap, sizeof(*g.v)),
					      0, cap};

		if (!g.k || !g.v) {
			free(g.k);
			free(g.v);
			return SQUIB_E_NOMEM;
		}
		for (size_t j = 0; j < m->cap; j++)
			if (!squib_store_hash_is_zero(&m->k[j])) {
				i = idmap_slot(&g, &m->k[j]);
				g.k[i] = m->k[j];
				g.v[i] = m->v[j];
				g.n++;
			}
		squib_store_idmap_free(m);
		*m = g;
	}
	i = idmap_slot(m, name);
	if (squib_store_hash_is_zero(&m->k[i]))
		m->n++;
	m->k[i] = *name;
	m->v[i] = *base;
	return 0;
}

bool squib_store_idmap_get(const struct squib_store_idmap *m, const struct squib_store_hash *name,
			   struct squib_store_hash *base)
{
	size_t i;

	if (!m->cap)
		return false;
	i = idmap_slot(m, name);
	if (squib_store_hash_is_zero(&m->k[i]))
		return false;
	if (base)
		*base = m->v[i];
	return true;
}

void squib_store_idmap_free(struct squib_store_idmap *m)
{
	free(m->k);
	free(m->v);
	memset(m, 0, sizeof(*m));
}
