#include "test.h"
int main(void) { return TEST_SKIP; } /* not written yet */
