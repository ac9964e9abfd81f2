/* placeholder: spool.c is being written */
#include "compat.h"
