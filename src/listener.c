/* placeholder: listener.c is being written */
#include "compat.h"
