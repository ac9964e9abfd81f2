/* placeholder: smtp_data.c is being written */
#include "compat.h"
