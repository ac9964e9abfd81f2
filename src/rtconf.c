/* placeholder: rtconf.c is being written */
#include "compat.h"
