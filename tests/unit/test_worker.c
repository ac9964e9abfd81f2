#include <criterion/criterion.h>

Test(worker, placeholder) { cr_skip_test("not written yet"); }
