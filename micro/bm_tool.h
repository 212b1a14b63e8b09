/* Helpers shared by the host-side tools (byoc-micro-run, bm-harness).
 * Not part of the library: these may allocate; the library never does. */
#ifndef BM_TOOL_H
#define BM_TOOL_H

#include <stddef.h>

/* The whole file at path in a malloc'd buffer (free it), or NULL on error.
 * malloc aligns to at least 8 bytes, enough for the float32 blobs (the format
 * aligns them to 64 relative to the file start). */
void *bm_read_file(const char *path, size_t *size);

#endif
