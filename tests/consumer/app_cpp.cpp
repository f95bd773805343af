// Consumer of the installed C++ header (ffnjit.hpp: RAII owners over the C API).
#include <cstdio>

#include <ffnjit/ffnjit.hpp>

int main() {
  try {
    ffnjit::Context ctx;
    std::printf("context created\n");
  } catch (const ffnjit::Exception& e) {
    std::printf("context: %s\n", e.what());
  }
  return 0;
}
