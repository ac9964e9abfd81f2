#include <criterion/criterion.h>

Test(spool, placeholder) { cr_skip_test("not written yet"); }
