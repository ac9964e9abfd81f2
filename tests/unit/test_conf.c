#include <criterion/criterion.h>

Test(conf, placeholder) { cr_skip_test("not written yet"); }
