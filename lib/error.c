#include <string.h>

#include "shmpool.h"

const char *shp_strerror(int err)
{
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
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

const char *shp_version(void)
{
	return SHP_VERSION_STRING;
}
