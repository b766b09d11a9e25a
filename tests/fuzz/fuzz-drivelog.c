/*
 * Fuzz target: the DriveLog parser (daemon/engine/drivelog.c), fed copy logs as
 * the Import/Export service would leave them in the storage account. A
 * parsed log must have no NULL where the header promises a string, and
 * drivelog_find_file() must find each blob by its own path, with a verdict
 * no better than the blob's (the worst one wins).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <libxml/parser.h>

#include "drivelog.h"
#include "fuzz.h"

static void
check_blob(const struct drivelog *l, const struct drivelog_blob *b)
{
	const struct drivelog_blob *found;

	fuzz_check(b->blob_path != NULL && b->file_path != NULL && b->rel_path != NULL);
	fuzz_check(b->status != NULL);
	fuzz_check(b->verdict <= DLOG_FAILED);
	fuzz_check(b->length >= -1);
	for (size_t i = 0; i < b->n_blocks; i++) {
		fuzz_check(b->blocks[i].status != NULL);
		fuzz_check(b->blocks[i].offset >= -1 && b->blocks[i].length >= -1);
	}
	found = drivelog_find_file(l, b->rel_path);
	fuzz_check(found != NULL);
	fuzz_check(strcmp(found->rel_path, b->rel_path) == 0);
	fuzz_check(found->verdict >= b->verdict);
	fuzz_check(drivelog_verdict_to_string(b->verdict) != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	struct drivelog l;
	char *err = NULL;
	int r;

	if (!init) {
		xmlInitParser();
		init = true;
	}
	memset(&l, 0xa5, sizeof(l)); /* written only on success */
	r = drivelog_parse((const char *)data, size, &l, &err);
	if (r < 0) {
		fuzz_check(r == -EBADMSG || r == -EMSGSIZE);
		fuzz_check(err != NULL && *err != '\0');
		free(err);
		return 0;
	}
	fuzz_check(r == 0 && err == NULL);
	fuzz_check(l.drive_id != NULL && l.drive_status != NULL);
	for (size_t i = 0; i < l.n_blobs; i++)
		check_blob(&l, &l.blobs[i]);
	fuzz_check(l.n_blobs > 0 || drivelog_find_file(&l, "") == NULL);
	drivelog_done(&l);
	return 0;
}
