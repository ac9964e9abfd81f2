/* placeholder: smtp_server.c is being written */
#include "compat.h"
