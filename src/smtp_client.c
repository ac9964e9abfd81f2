/* placeholder: smtp_client.c is being written */
#include "compat.h"
