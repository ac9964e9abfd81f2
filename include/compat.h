/*
 * compat.h: included first by every postern source file.  It pulls in
 * config.h and declares the replacement functions from src/compat/ that
 * configure found missing (AC_REPLACE_FUNCS).
 */
#ifndef POSTERN_COMPAT_H
#define POSTERN_COMPAT_H

#include "config.h"

#include <stddef.h>
#include <sys/types.h>

#ifndef HAVE_STRLCPY
size_t	strlcpy(char *, const char *, size_t);
#endif
#ifndef HAVE_STRLCAT
size_t	strlcat(char *, const char *, size_t);
#endif

#ifndef nitems
#define nitems(a)	(sizeof(a) / sizeof((a)[0]))
#endif

#endif /* POSTERN_COMPAT_H */
