/* placeholder: conf.c is being written */
#include "compat.h"
