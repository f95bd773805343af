// Errors as values: Status and Expected<T>, used by every ffnjit library.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ffnjit {

// User errors are the caller's to fix (bad argument, unsupported shape);
// the others describe the environment or a bug in ffnjit.
enum class ErrorKind {
  kInvalidArgument,  // the caller passed something wrong; the message names the fix
  kUnsupported,      // valid request that this build or device cannot serve
  kNotFound,         // a file, record or kernel that does not exist
  kIo,               // file system or database trouble
  kCompile,          // NVRTC rejected generated source; message carries the log
  kDriver,           // a CUDA driver call failed; message carries the CUresult name
  kInternal,         // a bug in ffnjit
};

const char* error_kind_name(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::kInternal;
  std::string message;
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : error_(std::move(e)) {}  // NOLINT: implicit by design

  static Status ok() { return {}; }
  bool is_ok() const { return !error_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  const Error& error() const { return *error_; }
  const std::string& message() const { return error_->message; }
  ErrorKind kind() const { return error_->kind; }

 private:
  std::optional<Error> error_;
};

template <class T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Expected(Error e) : v_(std::move(e)) {}      // NOLINT: implicit by design
  Expected(Status s) : v_(s.error()) {}        // NOLINT: only from a failed Status

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  T&& operator*() && { return std::get<0>(std::move(v_)); }
  const Error& error() const { return std::get<1>(v_); }
  Status status() const { return has_value() ? Status() : Status(error()); }

 private:
  std::variant<T, Error> v_;
};

inline Error user_error(std::string msg) { return {ErrorKind::kInvalidArgument, std::move(msg)}; }
inline Error unsupported(std::string msg) { return {ErrorKind::kUnsupported, std::move(msg)}; }
inline Error not_found(std::string msg) { return {ErrorKind::kNotFound, std::move(msg)}; }
inline Error io_error(std::string msg) { return {ErrorKind::kIo, std::move(msg)}; }
inline Error internal_error(std::string msg) { return {ErrorKind::kInternal, std::move(msg)}; }

}  // namespace ffnjit

namespace ffnjit {
inline Status as_status(const Status& s) { return s; }
template <class T>
Status as_status(const Expected<T>& e) {
  return e.status();
}
}  // namespace ffnjit

// Propagate a failed Status or Expected from the enclosing function, which may
// return either a Status or an Expected of any type.
#define FFNJIT_TRY(expr)                                          \
  do {                                                            \
    auto&& ffnjit_try_s_ = (expr);                                \
    if (!ffnjit_try_s_) return ::ffnjit::as_status(ffnjit_try_s_).error(); \
  } while (0)
