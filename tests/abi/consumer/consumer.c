/* SPDX-License-Identifier: Apache-2.0 */
/*
 * consumer STATE: built against an installed squib-snapshot (pkg-config or
 * find_package, tests/abi/install-consumer.sh), it prints the library's
 * version and the STATE's description as JSON (jansson inside the library),
 * and with the KVM backend whether /dev/kvm exists.
 */
#include <stdio.h>
#include <stdlib.h>

#include <squib/snapshot.h>
#ifdef CONSUMER_KVM
#include <squib/kvm.h>
#endif

int main(int argc, char **argv)
{
	struct squib_description desc;
	struct squib_error_detail d;
	char *json = NULL;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: consumer STATE\n");
		return 1;
	}
	printf("squib %s\n", squib_library_version());
	rc = squib_describe(argv[1], &desc, &d);
	if (!rc)
		rc = squib_describe_json(&desc, &json);
	if (rc) {
		fprintf(stderr, "consumer: %s\n", squib_error_name(rc));
		return 1;
	}
	printf("%s\n", json);
	free(json);
	squib_description_free(&desc);
#ifdef CONSUMER_KVM
	printf("kvm: %s\n", squib_kvm_available(NULL) ? "yes" : "no");
#endif
	return 0;
}
