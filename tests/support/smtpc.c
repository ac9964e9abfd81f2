/* placeholder */
int smtpc_placeholder;
