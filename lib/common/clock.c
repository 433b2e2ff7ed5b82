/*
 * clock.c -- monotonic time.
 */
#include <time.h>

#include "sfp/common.h"

uint64_t sfp_clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
