#include <criterion/criterion.h>

Test(util, placeholder) { cr_skip_test("not written yet"); }
