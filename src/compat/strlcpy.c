/*
 * strlcpy: copy src into a buffer of size dst, always NUL-terminated when
 * size > 0.  Returns strlen(src) so that truncation can be detected.
 * Written for postern; glibc before 2.38 lacks it.
 */
#include "compat.h"

#include <string.h>

size_t
strlcpy(char *dst, const char *src, size_t size)
{
	size_t	len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return (len);
}
