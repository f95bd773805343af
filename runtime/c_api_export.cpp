// Anchors libffnjit.so: the C ABI itself lives in c_api.cpp (in ffnjit_runtime),
// linked whole into the shared library; this file only marks the exported names.
#include "ffnjit/ffnjit.h"
