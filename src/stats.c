/* placeholder: stats.c is being written */
#include "compat.h"
