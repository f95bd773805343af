/* Consumer of the installed C API: prints the versions it sees, then tries a context
 * (which fails with a message on a machine without a GPU; both outcomes are fine). */
#include <stdio.h>
#include <string.h>

#include <ffnjit/ffnjit.h>

int main(void) {
  const int v = ffnjit_version();
  printf("header %s library %d.%d.%d", FFNJIT_VERSION_STRING, v / 10000, v / 100 % 100, v % 100);
#ifdef CONSUMER_PACKAGE_VERSION
  printf(" package %s", CONSUMER_PACKAGE_VERSION);
#endif
  printf("\n");
  if (v != FFNJIT_VERSION) {
    fprintf(stderr, "ffnjit_version() %d != FFNJIT_VERSION %d\n", v, FFNJIT_VERSION);
    return 1;
  }
  ffnjit_context* ctx = NULL;
  ffnjit_status s = ffnjit_context_create(NULL, &ctx);
  printf("context: %s %s\n", ffnjit_status_name(s),
         s == FFNJIT_STATUS_OK ? "" : ffnjit_last_error());
  ffnjit_context_destroy(ctx);
  return strcmp(ffnjit_status_name(FFNJIT_STATUS_NOT_FOUND), "FFNJIT_STATUS_NOT_FOUND") != 0;
}
