#include <criterion/criterion.h>

Test(metrics, placeholder) { cr_skip_test("not written yet"); }
