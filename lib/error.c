#define _GNU_SOURCE
#include <string.h>

#include "shmpool.h"

const char *shp_strerror(int err)
{
	const char *desc = NULL;

	switch (err) {
#define SHP_ERRNO_CASE(name, value, msg)                                        \
	case SHP_##name:                                                       \
		return msg;
		SHP_ERRNO_MAP(SHP_ERRNO_CASE)
#undef SHP_ERRNO_CASE
	case 0:
		return "success";
	default:
		break;
	}
	/* Not strerror(): for a code it does not know it formats into a
	 * buffer that its next such call frees, and it may return NULL when
	 * it cannot allocate one. The descriptions here are static strings,
	 * valid forever, whatever the thread. */
	if (err < 0 && err > -4096)
		desc = strerrordesc_np(-err);
	return desc ? desc : "unknown error";
}

const char *shp_version(void)
{
	return SHP_VERSION_STRING;
}
