// Names of error kinds, for messages and the C ABI.
#include "support/status.hpp"

namespace ffnjit {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kNotFound: return "not found";
    case ErrorKind::kIo: return "I/O error";
    case ErrorKind::kCompile: return "compile error";
    case ErrorKind::kDriver: return "CUDA driver error";
    case ErrorKind::kInternal: return "internal error";
  }
  return "unknown error";
}

}  // namespace ffnjit
