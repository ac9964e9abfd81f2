/* placeholder: control.c is being written */
#include "compat.h"
