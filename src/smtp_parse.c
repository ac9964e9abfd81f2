/* placeholder: smtp_parse.c is being written */
#include "compat.h"
