// A structural check of CUDA ELF images (cubins) before they are stored or served: a
// cubin from an imported file is untrusted bytes that would otherwise reach the driver.
#pragma once

#include <string>
#include <string_view>

#include "support/status.hpp"

namespace ffnjit::cache {

// The SM number of an exact arch name: "sm_90a" -> 90, "sm_80" -> 80; -1 when `arch`
// is not "sm_" followed by digits and at most one letter.
int arch_sm(std::string_view arch);

// Checks that `cubin` is a well-formed 64-bit little-endian CUDA ELF executable
// (e_machine EM_CUDA = 190) built for the SM number of `arch` (the e_flags field;
// both the CUDA 12 and the CUDA 13 layouts), whose program and section headers lie
// inside the image, and whose symbol table defines the function `symbol`. The error
// says what is wrong ("it defines no function ffnjit_x"), without the record's name.
// Never reads outside `cubin`; the image is not otherwise trusted to be sane.
Status check_cubin(std::string_view cubin, std::string_view arch, std::string_view symbol);

}  // namespace ffnjit::cache
