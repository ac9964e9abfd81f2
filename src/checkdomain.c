/* placeholder: checkdomain.c is being written */
#include "compat.h"
