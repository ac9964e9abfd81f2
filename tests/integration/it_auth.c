#include <criterion/criterion.h>

Test(it_auth, placeholder) { cr_skip_test("not written yet"); }
