/* placeholder: queue.c is being written */
#include "compat.h"
