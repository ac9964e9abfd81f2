/* placeholder: hook.c is being written */
#include "compat.h"
