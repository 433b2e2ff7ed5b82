/*
 * fuzz_proto.c -- the daemon's request handling (lib/coord) on arbitrary
 * bytes: every input gets a reply that parses, nothing crashes or leaks.
 * The server keeps its state across inputs, so a Register in one input
 * followed by Reports in later ones reaches the aggregation code. Seeds
 * (corpus/proto): Registers (quantum, bitwave), Reports, a Heartbeat, a
 * Goodbye and a version-2 request, packed with the code protoc-c generates
 * from proto/sfp.proto.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "proto/sfp.pb-c.h"
#include "sfp/coord.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sfp_coord_server *srv;

static void cleanup(void)
{
	sfp_coord_server_free(srv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!srv) {
		if (sfp_coord_server_create(&srv, "", NULL, NULL) != SFP_OK)
			abort();
		atexit(cleanup);
	}
	const void *reply;
	size_t len;
	sfp_coord_server_handle(srv, data, size, &reply, &len, 0);
	Sfp__Reply *r = sfp__reply__unpack(NULL, len, reply);
	if (!r)
		abort(); /* every answer must parse */
	sfp__reply__free_unpacked(r, NULL);
	return 0;
}
