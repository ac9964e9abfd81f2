#include <criterion/criterion.h>

Test(queue, placeholder) { cr_skip_test("not written yet"); }
