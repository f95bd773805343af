/* ffnjit.hpp: header-only C++17 RAII wrapper over the C ABI in ffnjit.h.
 *
 * Handles are move-only owners that destroy their C object; every failing call
 * throws ffnjit::Exception carrying the status and ffnjit_last_error()'s message.
 * Thread safety and semantics are those of the C function each method calls
 * (ffnjit.h is the reference). Destroy layers before their context: declare the
 * Context first so it outlives its Layers.
 *
 *   ffnjit::Context ctx;                       // device 0, default cache
 *   ffnjit::Layer layer(ctx, desc);            // desc: ffnjit_layer_desc
 *   size_t bytes = layer.workspace_size(tokens);
 *   layer.forward(x, out, tokens, workspace, bytes, stream);
 */
#ifndef FFNJIT_FFNJIT_HPP
#define FFNJIT_FFNJIT_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ffnjit/ffnjit.h"

namespace ffnjit {

class Exception : public std::runtime_error {
 public:
  Exception(ffnjit_status status, const std::string& message)
      : std::runtime_error(std::string(ffnjit_status_name(status)) + ": " + message), status_(status) {}
  ffnjit_status status() const noexcept { return status_; }

 private:
  ffnjit_status status_;
};

// Throws ffnjit::Exception unless `s` is FFNJIT_STATUS_OK.
inline void check(ffnjit_status s) {
  if (s != FFNJIT_STATUS_OK) throw Exception(s, ffnjit_last_error());
}

namespace detail {

// A move-only owner of a C handle destroyed by `Destroy`.
template <class T, void (*Destroy)(T*)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(T* p) noexcept : p_(p) {}
  Handle(Handle&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) Destroy(std::exchange(p_, std::exchange(o.p_, nullptr)));
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { Destroy(p_); }
  T* get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  T* p_ = nullptr;
};

}  // namespace detail

class Context {
 public:
  // Defaults of ffnjit_context_options_init.
  Context() : Context(default_options()) {}
  explicit Context(const ffnjit_context_options& options) {
    ffnjit_context* c = nullptr;
    check(ffnjit_context_create(&options, &c));
    h_ = Handle(c);
  }
  static ffnjit_context_options default_options() {
    ffnjit_context_options o;
    ffnjit_context_options_init(&o);
    return o;
  }
  ffnjit_context_stats stats() const {
    ffnjit_context_stats s{};
    check(ffnjit_context_get_stats(h_.get(), &s));
    return s;
  }
  ffnjit_context* get() const noexcept { return h_.get(); }

 private:
  using Handle = detail::Handle<ffnjit_context, ffnjit_context_destroy>;
  Handle h_;
};

class Layer {
 public:
  Layer(const Context& ctx, const ffnjit_layer_desc& desc) {
    ffnjit_layer* l = nullptr;
    check(ffnjit_layer_register(ctx.get(), &desc, &l));
    h_ = Handle(l);
  }
  size_t workspace_size(int64_t tokens) const {
    size_t bytes = 0;
    check(ffnjit_layer_workspace_size(h_.get(), tokens, &bytes));
    return bytes;
  }
  // `stream` is a CUstream / cudaStream_t (NULL: the legacy default stream).
  void forward(const void* x, void* out, int64_t tokens, void* workspace, size_t workspace_bytes,
               void* stream) const {
    check(ffnjit_ffn_forward(h_.get(), x, out, tokens, workspace, workspace_bytes, stream));
  }
  ffnjit_layer_stats stats() const {
    ffnjit_layer_stats s{};
    check(ffnjit_layer_get_stats(h_.get(), &s));
    return s;
  }
  ffnjit_layer* get() const noexcept { return h_.get(); }

 private:
  using Handle = detail::Handle<ffnjit_layer, ffnjit_layer_destroy>;
  Handle h_;
};

// ffnjit_export_profile over layers of one context, in checkpoint order.
inline void export_profile(const std::vector<const Layer*>& layers, const std::string& checkpoint_fingerprint,
                           const std::string& path) {
  std::vector<ffnjit_layer*> raw;
  raw.reserve(layers.size());
  for (const Layer* l : layers) raw.push_back(l ? l->get() : nullptr);
  check(ffnjit_export_profile(raw.data(), int(raw.size()), checkpoint_fingerprint.c_str(), path.c_str()));
}

}  // namespace ffnjit

#endif  // FFNJIT_FFNJIT_HPP
