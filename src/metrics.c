/* placeholder: metrics.c is being written */
#include "compat.h"
