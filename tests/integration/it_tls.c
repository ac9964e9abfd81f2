#include <criterion/criterion.h>

Test(it_tls, placeholder) { cr_skip_test("not written yet"); }
