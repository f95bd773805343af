/* unit tier, in C as engines call it: the C ABI's promises that need no GPU. Any int is
 * a valid ffnjit_status (the name of one no enum member has is "FFNJIT_STATUS_UNKNOWN",
 * without undefined behaviour: 70603ab switched on the enum, which UBSan flags for -1);
 * a failed call leaves a message naming the fix, and NULL/short buffers are refused. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "ffnjit/ffnjit.h"

static int failures = 0;
#define EXPECT(cond)                                             \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                \
    }                                                            \
  } while (0)

int main(void) {
  const int odd[] = {-1, 8, 1000, INT_MAX, INT_MIN};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; ++i)
    EXPECT(strcmp(ffnjit_status_name((ffnjit_status)odd[i]), "FFNJIT_STATUS_UNKNOWN") == 0);
  EXPECT(strcmp(ffnjit_status_name(FFNJIT_STATUS_NOT_FOUND), "FFNJIT_STATUS_NOT_FOUND") == 0);

  char fp[65];
  EXPECT(ffnjit_checkpoint_fingerprint("/nonexistent/ffnjit-checkpoint", fp, sizeof fp) != FFNJIT_STATUS_OK);
  EXPECT(strlen(ffnjit_last_error()) > 0);
  EXPECT(ffnjit_checkpoint_fingerprint("/tmp", fp, 64) == FFNJIT_STATUS_INVALID_ARGUMENT);
  EXPECT(strstr(ffnjit_last_error(), "65 bytes") != NULL);
  EXPECT(ffnjit_checkpoint_fingerprint(NULL, fp, sizeof fp) == FFNJIT_STATUS_INVALID_ARGUMENT);
  EXPECT(ffnjit_version() == FFNJIT_VERSION);
  ffnjit_context_destroy(NULL); /* NULL is a no-op */
  ffnjit_layer_destroy(NULL);
  printf("%s\n", failures ? "FAILED" : "All tests passed");
  return failures ? 1 : 0;
}
