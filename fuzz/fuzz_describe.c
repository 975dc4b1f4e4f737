/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: describe on arbitrary bytes, then both renderings. Nothing
 * may crash or leak; a description that succeeds must render, and the JSON form
 * must parse back.
 */
#include <jansson.h>
#include <stdlib.h>

#include <squib/snapshot.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct squib_description desc;
	char *human = NULL, *json = NULL;
	json_t *parsed;

	if (squib_describe_buffer(data, size, "fuzz.snap", &desc, NULL) != 0)
		return 0;
	if (squib_describe_human(&desc, &human) != 0 || squib_describe_json(&desc, &json) != 0)
		abort();
	parsed = json_loads(json, 0, NULL);
	if (!parsed)
		abort(); /* describe produced invalid JSON */
	json_decref(parsed);
	free(human);
	free(json);
	squib_description_free(&desc);
	return 0;
}
