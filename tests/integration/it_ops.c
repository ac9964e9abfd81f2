#include <criterion/criterion.h>

Test(it_ops, placeholder) { cr_skip_test("not written yet"); }
