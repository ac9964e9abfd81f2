/* placeholder: tls.c is being written */
#include "compat.h"
