/* placeholder: auth.c is being written */
#include "compat.h"
