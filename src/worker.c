/* placeholder: worker.c is being written */
#include "compat.h"
