#include <criterion/criterion.h>

Test(tls, placeholder) { cr_skip_test("not written yet"); }
