#include <stdio.h>
int main(void) { puts("custos"); return 0; }
