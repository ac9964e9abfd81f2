#include <criterion/criterion.h>

Test(auth, placeholder) { cr_skip_test("not written yet"); }
