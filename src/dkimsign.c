/* placeholder: dkimsign.c is being written */
#include "compat.h"
