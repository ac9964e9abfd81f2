/*
 * strlcat: append src to the NUL-terminated string in dst of total size
 * size.  Returns the length the result would have had without truncation.
 * Written for postern; glibc before 2.38 lacks it.
 */
#include "compat.h"

#include <string.h>

size_t
strlcat(char *dst, const char *src, size_t size)
{
	size_t	dlen = strnlen(dst, size);

	if (dlen == size)
		return (size + strlen(src));
	return (dlen + strlcpy(dst + dlen, src, size - dlen));
}
