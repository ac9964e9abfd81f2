/* placeholder: spfcheck.c is being written */
#include "compat.h"
