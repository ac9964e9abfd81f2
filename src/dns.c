/* placeholder: dns.c is being written */
#include "compat.h"
