/* placeholder */
int harness_placeholder;
