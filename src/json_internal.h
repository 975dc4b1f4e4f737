/* SPDX-License-Identifier: Apache-2.0 */
/* JSON helpers shared by the reports' JSON forms (describe.c implements them). */
#ifndef SQUIB_JSON_INTERNAL_H
#define SQUIB_JSON_INTERNAL_H

#include <jansson.h>

/* A JSON string; invalid UTF-8 (a path is any bytes) becomes U+FFFD, like Rust's
 * Path::display(). NULL only when out of memory. */
json_t *squib_json_text(const char *s);

/* o as indented text in *out (heap); 0 or SQUIB_E_NOMEM. Takes o (NULL: out of memory). */
int squib_json_dump(json_t *o, char **out);

#endif
