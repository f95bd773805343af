// The C ABI (include/ffnjit/ffnjit.h) over the runtime: contexts, layers, forward.
#include "ffnjit/ffnjit.h"

#include <atomic>
#include <cctype>
#include <cstring>
#include <map>
#include <climits>
#include <mutex>
#include <string>

#include "cache/cache.hpp"
#include "cache/location.hpp"
#include "model/checkpoint.hpp"
#include "model/profile.hpp"
#include "runtime/buckets.hpp"
#include "runtime/cache_io.hpp"
#include "runtime/choice.hpp"
#include "runtime/device_weights.hpp"
#include "runtime/identity.hpp"
#include "runtime/layer.hpp"
#include "runtime/pointer_ranges.hpp"
#include "runtime/record_lookup.hpp"
#include "templates/ffnjit/params.h"

namespace {

using namespace ffnjit;

thread_local std::string g_last_error;

ffnjit_status to_status(ErrorKind k) {
  switch (k) {
    case ErrorKind::kInvalidArgument: return FFNJIT_STATUS_INVALID_ARGUMENT;
    case ErrorKind::kUnsupported: return FFNJIT_STATUS_UNSUPPORTED;
    case ErrorKind::kNotFound: return FFNJIT_STATUS_NOT_FOUND;
    case ErrorKind::kIo: return FFNJIT_STATUS_IO_ERROR;
    case ErrorKind::kCompile: return FFNJIT_STATUS_COMPILE_ERROR;
    case ErrorKind::kDriver: return FFNJIT_STATUS_DRIVER_ERROR;
    case ErrorKind::kInternal: return FFNJIT_STATUS_INTERNAL_ERROR;
  }
  return FFNJIT_STATUS_INTERNAL_ERROR;
}

ffnjit_status fail(const Error& e) {
  g_last_error = e.message;
  return to_status(e.kind);
}
ffnjit_status fail(const Status& s) { return fail(s.error()); }
ffnjit_status invalid(std::string msg) { return fail(user_error(std::move(msg))); }
ffnjit_status ok() {
  g_last_error.clear();
  return FFNJIT_STATUS_OK;
}

constexpr uint32_t kContextMagic = 0x46464e43;  // 'FFNC'
constexpr uint32_t kLayerMagic = 0x46464e4c;    // 'FFNL'

}  // namespace

struct ffnjit_context {
  uint32_t magic = kContextMagic;
  std::unique_ptr<Device> device;
  KernelTable kernels;
  Arch arch = Arch::kSm90a;
  ffnjit_context_options options{};
  std::string cache_path;
  // The SQLite cache, used only while resolving a bucket (never on the hot path).
  std::mutex cache_mu;
  std::unique_ptr<cache::Cache> cache;
  RecordLookupState records;  // the cache's tuning records (guarded by cache_mu)
  std::atomic<int64_t> tuned_buckets{0}, shape_buckets{0}, default_buckets{0};
  // Lifetime: one reference for the handle (dropped by ffnjit_context_destroy) and
  // one per live layer; the last one to go deletes the context, so a layer never
  // points at freed memory. `destroyed` makes every later call on the context or
  // its layers fail (ffnjit_layer_destroy excepted).
  std::atomic<int64_t> refs{1};
  std::atomic<bool> destroyed{false};
  // Where repeated forwards are captured into graphs (runtime/forward_graph.hpp).
  CUstream capture_stream = nullptr;
  std::mutex capture_mu;
  ChoiceLookup lookup;  // the cache's tuning records, for Layer::plan
  PointerRanges pointers;  // allocations whose device ffnjit_ffn_forward has checked
  ~ffnjit_context() {
    if (capture_stream && device && device->make_current()) device->api()->cuStreamDestroy(capture_stream);
  }
};

// A handle: the runtime::Layer plus what the C face checks per call.
struct ffnjit_layer {
  uint32_t magic = kLayerMagic;
  ffnjit_context* ctx = nullptr;
  std::unique_ptr<Layer> layer;
};

namespace {

Status check_context(const ffnjit_context* ctx) {
  if (!ctx) return user_error("context is NULL; create one with ffnjit_context_create");
  if (ctx->magic != kContextMagic) return user_error("context handle is invalid or already destroyed");
  if (ctx->destroyed.load(std::memory_order_acquire))
    return user_error(
        "context was destroyed with ffnjit_context_destroy; its remaining layers only accept "
        "ffnjit_layer_destroy");
  return {};
}

// On every forward: one more load (the context's `destroyed` flag) than the handle check.
Status check_layer(const ffnjit_layer* layer) {
  if (!layer) return user_error("layer is NULL; register one with ffnjit_layer_register");
  if (layer->magic != kLayerMagic) return user_error("layer handle is invalid or already destroyed");
  if (layer->ctx->destroyed.load(std::memory_order_acquire))
    return user_error(
        "the layer's context was destroyed; destroy layers before their context "
        "(ffnjit_layer_destroy still frees this layer)");
  return {};
}

// Drops one reference (the handle's or a layer's); the last one deletes the context.
void release(ffnjit_context* ctx) {
  if (ctx->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  ctx->magic = 0;
  delete ctx;
}

// Runs an entry point's body; no C++ exception crosses the C ABI (std::bad_alloc on
// huge shapes, anything else is a bug reported as such).
template <class F>
ffnjit_status guarded(F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(Error{ErrorKind::kUnsupported, "out of host memory; the layer or batch is too large for this machine"});
  } catch (const std::exception& e) {
    return fail(internal_error(std::string("unexpected exception: ") + e.what()));
  } catch (...) {
    return fail(internal_error("unexpected exception"));
  }
}

// The runtime bucket of a positive token count (the caller checked 1 <= tokens <= INT_MAX).
Expected<int> bucket_for(long long tokens) {
  const int b = bucket_index(default_buckets(), tokens);
  if (b < 0) return internal_error("tokens=" + std::to_string(tokens) + " is outside every runtime batch bucket");
  return b;
}

Status check_tokens(int64_t tokens) {
  if (tokens < 0) return user_error("tokens=" + std::to_string(tokens) + " is negative");
  if (tokens > INT_MAX) return user_error("tokens=" + std::to_string(tokens) + " exceeds 2^31-1; split the batch");
  return {};
}

// The layer's plan for a token count; counts, once per (layer, bucket), where it came from.
Expected<const ServedPlan*> plan_for(ffnjit_layer* l, int64_t tokens) {
  auto b = bucket_for(tokens);
  FFNJIT_TRY(b);
  if (const ServedPlan* p = l->layer->published(*b)) return p;  // every call after the first
  ffnjit_context* ctx = l->ctx;
  return l->layer->plan(*b, ctx->lookup, [ctx](ChoiceSource src) {
    ++(src == ChoiceSource::kLayer ? ctx->tuned_buckets
       : src == ChoiceSource::kShape ? ctx->shape_buckets
                                     : ctx->default_buckets);
  });
}

}  // namespace

extern "C" {

int ffnjit_version(void) { return FFNJIT_VERSION; }

const char* ffnjit_last_error(void) { return g_last_error.c_str(); }

const char* ffnjit_status_name(ffnjit_status s) {
  // Any int is a valid argument (the header says so): read it as an int, never as the enum.
  int v = 0;
  std::memcpy(&v, &s, sizeof v);
  switch (v) {
    case FFNJIT_STATUS_OK: return "FFNJIT_STATUS_OK";
    case FFNJIT_STATUS_INVALID_ARGUMENT: return "FFNJIT_STATUS_INVALID_ARGUMENT";
    case FFNJIT_STATUS_UNSUPPORTED: return "FFNJIT_STATUS_UNSUPPORTED";
    case FFNJIT_STATUS_NOT_FOUND: return "FFNJIT_STATUS_NOT_FOUND";
    case FFNJIT_STATUS_IO_ERROR: return "FFNJIT_STATUS_IO_ERROR";
    case FFNJIT_STATUS_COMPILE_ERROR: return "FFNJIT_STATUS_COMPILE_ERROR";
    case FFNJIT_STATUS_DRIVER_ERROR: return "FFNJIT_STATUS_DRIVER_ERROR";
    case FFNJIT_STATUS_INTERNAL_ERROR: return "FFNJIT_STATUS_INTERNAL_ERROR";
    default: return "FFNJIT_STATUS_UNKNOWN";
  }
}

ffnjit_status ffnjit_checkpoint_fingerprint(const char* dir, char* out, size_t out_size) {
  return guarded([&] {
    if (!out || out_size < 65)
      return invalid("out must hold 65 bytes (64 hex digits and the NUL); pass a char[65]");
    out[0] = 0;
    if (!dir || !*dir) return invalid("checkpoint_dir is empty; pass the directory holding config.json");
    auto ckpt = model::Checkpoint::open(dir);
    if (!ckpt) return fail(ckpt.error());
    std::memcpy(out, ckpt->info().fingerprint.c_str(), 65);
    return ok();
  });
}

void ffnjit_context_options_init(ffnjit_context_options* o) {
  if (!o) return;
  o->device = 0;
  o->cache_path = nullptr;
  o->miss_policy = FFNJIT_COMPILE_ON_MISS;
  o->count_sparsity = 0;
}

ffnjit_status ffnjit_context_create(const ffnjit_context_options* options, ffnjit_context** out) {
  return guarded([&] {
    if (!out) return invalid("out is NULL; pass the address of an ffnjit_context* to receive the context");
    *out = nullptr;
    ffnjit_context_options o;
    ffnjit_context_options_init(&o);
    if (options) o = *options;
    if (o.miss_policy != FFNJIT_COMPILE_ON_MISS && o.miss_policy != FFNJIT_CACHE_ONLY)
      return invalid("options->miss_policy=" + std::to_string(int(o.miss_policy)) +
                     " is not FFNJIT_COMPILE_ON_MISS or FFNJIT_CACHE_ONLY");
    auto cache_path = cache::resolve_cache_path(o.cache_path);  // NULL: the default; "": an error
    if (!cache_path) return fail(cache_path.error());
    auto dev = Device::open(o.device);
    if (!dev) return fail(dev.error());
    auto arch = parse_arch(dev->info().arch);
    if (!arch) return fail(arch.error());
    auto ctx = std::make_unique<ffnjit_context>();
    ctx->device = std::make_unique<Device>(std::move(*dev));
    ctx->arch = *arch;
    ctx->options = o;
    ctx->cache_path = *cache_path;
    ctx->options.cache_path = nullptr;  // the caller's string may not outlive the call
    cache::OpenOptions co;
    co.read_only = o.miss_policy == FFNJIT_CACHE_ONLY;
    if (!co.read_only)
      if (Status s = cache::ensure_cache_dir(ctx->cache_path); !s) return fail(s);
    auto db = cache::Cache::open(ctx->cache_path, co);
    if (!db) return fail(db.error());
    ctx->cache = std::make_unique<cache::Cache>(std::move(*db));
    ctx->records = {ctx->cache.get(), &ctx->cache_mu, toolchain_identity(ctx->device->info()), ctx->arch, {}};
    if (Status s = ctx->device->make_current(); !s) return fail(s);
    if (CUresult r = ctx->device->api()->cuStreamCreate(&ctx->capture_stream, CU_STREAM_NON_BLOCKING); r != CUDA_SUCCESS)
      return fail(drv::driver_error("cuStreamCreate", r));
    ffnjit_context* raw = ctx.get();
    ctx->kernels.set_backing(
        {[raw](const std::string& key) -> Expected<std::optional<CompiledKernel>> {
           std::lock_guard<std::mutex> l(raw->cache_mu);
           auto f = raw->cache->find_binary(key, raw->records.identity);
           FFNJIT_TRY(f);
           if (!f->record) return std::optional<CompiledKernel>();
           return std::optional<CompiledKernel>(from_record(*f->record));
         },
         [raw](const Source& src, const CompiledKernel& k) -> Status {
           std::lock_guard<std::mutex> l(raw->cache_mu);
           return raw->cache->put_binary(to_record(k, src));
         },
         o.miss_policy == FFNJIT_COMPILE_ON_MISS});
    ctx->lookup = record_lookup(ctx->records);
    *out = ctx.release();
    return ok();
  });
}

void ffnjit_context_destroy(ffnjit_context* ctx) {
  if (!ctx || ctx->magic != kContextMagic) return;
  // With live layers the context only marks itself destroyed; the last
  // ffnjit_layer_destroy deletes it.
  if (ctx->destroyed.exchange(true, std::memory_order_acq_rel)) return;
  release(ctx);
}

ffnjit_status ffnjit_layer_register(ffnjit_context* ctx, const ffnjit_layer_desc* d, ffnjit_layer** out) {
  return guarded([&] {
    if (Status s = check_context(ctx); !s) return fail(s);
    if (!out) return invalid("out is NULL; pass the address of an ffnjit_layer* to receive the layer");
    *out = nullptr;
    if (!d) return invalid("desc is NULL; describe the layer in an ffnjit_layer_desc");
    if (d->dtype != FFNJIT_BF16) return invalid("dtype " + std::to_string(int(d->dtype)) + " is not FFNJIT_BF16");
    if (!d->up_proj || !d->down_proj || (d->gated && !d->gate_proj))
      return invalid(std::string(!d->up_proj ? "up_proj" : !d->down_proj ? "down_proj" : "gate_proj") +
                     " is NULL; pass the device pointer of that weight");
    if (!d->gated && d->gate_proj)
      return invalid("gate_proj is set for a non-gated layer; set gated=1 or pass gate_proj=NULL");
    if (d->activation != FFNJIT_ACTIVATION_RELU && d->activation != FFNJIT_ACTIVATION_RELU2 &&
        d->activation != FFNJIT_ACTIVATION_FATRELU)
      return invalid("activation=" + std::to_string(int(d->activation)) +
                     " is not an ffnjit_activation; use FFNJIT_ACTIVATION_RELU, _RELU2 or _FATRELU");
    if (d->activation != FFNJIT_ACTIVATION_FATRELU && d->activation_threshold != 0.0f)
      return invalid("activation_threshold is set but the activation is not FFNJIT_ACTIVATION_FATRELU; pass 0");
    LayerOptions lo;
    if (d->layer_id && *d->layer_id) {
      const size_t n = strnlen(d->layer_id, kLayerIdMax + 1);
      auto id = parse_layer_id(std::string(d->layer_id, n));
      if (!id) return fail(id.error());
      lo.id = format_layer_id(*id);
    }
    LayerShape shape{d->d_model, d->d_ff, d->gated != 0, DType::kBF16};
    shape.activation = d->activation == FFNJIT_ACTIVATION_RELU2     ? Activation::kRelu2
                       : d->activation == FFNJIT_ACTIVATION_FATRELU ? Activation::kFatRelu
                                                                    : Activation::kRelu;
    shape.gate_bias = d->gate_bias != nullptr, shape.up_bias = d->up_bias != nullptr;
    shape.down_bias = d->down_bias != nullptr;
    KernelSpec probe = default_spec(Family::kGatePack, shape, ctx->arch, {1, 1},
                                    Sparsity{d->tile_n ? d->tile_n : 128, d->capacity ? d->capacity : 31});
    if (Status s = probe.validate(); !s) return fail(s);
    if (Status s = ctx->device->make_current(); !s) return fail(s);
    lo.shape = probe.layer;
    lo.sparsity = probe.sparsity;
    lo.sparsity_fixed = d->tile_n || d->capacity;
    lo.count_sparsity = ctx->options.count_sparsity != 0;
    // Weights and biases are validated (device, alignment, sizes; the messages name the
    // tensor) and copied into layer-owned memory; the caller's buffers may go afterwards.
    const DeviceFfnSource src{d->gated ? d->gate_proj : nullptr, d->up_proj, d->down_proj, lo.shape,
                              d->gate_bias, d->up_bias, d->down_bias, d->activation_threshold};
    auto w = DeviceWeights::copy_from_device(ctx->kernels, ctx->arch, ctx->options.device, src, /*with_dense=*/true);
    if (!w) return fail(w.error());
    auto layer = Layer::create(ctx->kernels, ctx->arch, std::move(*w), lo);
    if (!layer) return fail(layer.error());
    auto handle = std::make_unique<ffnjit_layer>();
    handle->ctx = ctx;
    handle->layer = std::move(*layer);
    ctx->refs.fetch_add(1, std::memory_order_relaxed);
    *out = handle.release();
    return ok();
  });
}

ffnjit_status ffnjit_context_get_stats(const ffnjit_context* ctx, ffnjit_context_stats* out) {
  return guarded([&] {
    if (Status s = check_context(ctx); !s) return fail(s);
    if (!out) return invalid("out is NULL; pass the address of an ffnjit_context_stats");
    out->kernels_compiled = ctx->kernels.compiles();
    out->kernels_from_cache = ctx->kernels.loaded_from_backing();
    out->tuned_buckets = ctx->tuned_buckets.load();
    out->default_buckets = ctx->default_buckets.load();
    out->shape_buckets = ctx->shape_buckets.load();
    return ok();
  });
}

ffnjit_status ffnjit_layer_get_stats(ffnjit_layer* layer, ffnjit_layer_stats* out) {
  return guarded([&] {
    if (Status s = check_layer(layer); !s) return fail(s);
    if (!out) return invalid("out is NULL; pass the address of an ffnjit_layer_stats");
    if (Status s = layer->ctx->device->make_current(); !s) return fail(s);
    auto overflow = layer->layer->overflow_tiles();
    if (!overflow) return fail(overflow.error());
    out->overflow_tiles = int64_t(*overflow);
    return ok();
  });
}

void ffnjit_layer_destroy(ffnjit_layer* layer) {
  if (!layer || layer->magic != kLayerMagic) return;
  layer->magic = 0;
  ffnjit_context* ctx = layer->ctx;
  delete layer;  // its device memory and dense fallback go while the context still holds the device
  release(ctx);  // the last layer of a destroyed context deletes it
}

ffnjit_status ffnjit_layer_workspace_size(const ffnjit_layer* layer, int64_t tokens, size_t* bytes) {
  return guarded([&] {
    if (Status s = check_layer(layer); !s) return fail(s);
    if (!bytes) return invalid("bytes is NULL; pass the address of a size_t");
    if (Status s = check_tokens(tokens); !s) return fail(s);
    if (tokens == 0) {
      *bytes = 0;
      return ok();
    }
    auto p = plan_for(const_cast<ffnjit_layer*>(layer), tokens);
    if (!p) return fail(p.error());
    *bytes = layer->layer->workspace_bytes(**p, int(tokens));
    return ok();
  });
}

ffnjit_status ffnjit_ffn_forward(ffnjit_layer* layer, const void* x, void* out, int64_t tokens, void* workspace,
                                 size_t workspace_bytes, void* stream) {
  return guarded([&] {
    if (Status s = check_layer(layer); !s) return fail(s);
    if (Status s = check_tokens(tokens); !s) return fail(s);
    if (tokens == 0) return ok();
    if (!x || !out) return invalid(std::string(!x ? "x" : "out") + " is NULL; pass a device pointer");
    if ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(out)) % 16)
      return invalid(std::string(reinterpret_cast<uintptr_t>(x) % 16 ? "x" : "out") +
                     " is not 16-byte aligned; allocate it with cudaMalloc or align the offset");
    ffnjit_context* ctx = layer->ctx;
    auto p = plan_for(layer, tokens);
    if (!p) return fail(p.error());
    const ServedPlan& plan = **p;
    const size_t need = layer->layer->workspace_bytes(plan, int(tokens));
    if (need && !workspace)
      return invalid("workspace is NULL but " + std::to_string(tokens) + " tokens need " + std::to_string(need) +
                     " bytes; ask ffnjit_layer_workspace_size and pass a device buffer");
    if (workspace_bytes < need)
      return invalid("workspace of " + std::to_string(workspace_bytes) + " bytes is too small: " +
                     std::to_string(tokens) + " tokens need " + std::to_string(need) +
                     "; ask ffnjit_layer_workspace_size");
    if (reinterpret_cast<uintptr_t>(workspace) % 256) return invalid("workspace is not 256-byte aligned");
    const drv::Api* cu = ctx->device->api();
    CUcontext current = nullptr;
    if (cu->cuCtxGetCurrent(&current) != CUDA_SUCCESS || current != ctx->device->context())
      if (Status s = ctx->device->make_current(); !s) return fail(s);
    for (const auto& [name, ptr] :
         {std::pair{"x", x}, std::pair<const char*, const void*>{"out", out}}) {
      const int dev = ctx->pointers.device_of(cu, CUdeviceptr(ptr));
      if (dev != ctx->options.device)
        return invalid(
            std::string(name) +
            (dev < 0 ? " is not CUDA device memory" : " is on another device than the layer") +
            "; pass device pointers on device " + std::to_string(ctx->options.device));
    }
    if (Status s = layer->layer->forward(plan, CUdeviceptr(x), CUdeviceptr(out), int(tokens), CUdeviceptr(workspace),
                                         static_cast<CUstream>(stream), ctx->capture_stream, ctx->capture_mu);
        !s)
      return fail(s);
    return ok();
  });
}

ffnjit_status ffnjit_export_profile(ffnjit_layer* const* layers, int count, const char* fingerprint, const char* path) {
  return guarded([&] {
    if (!layers || count <= 0) return invalid("layers is empty; pass the registered layers in checkpoint order");
    if (!path || !*path) return invalid("path is empty; name the profile file to write");
    if (!fingerprint || !is_fingerprint(fingerprint))
      return invalid(
          "checkpoint_fingerprint must be the 64 lower-case hex digits `ffnjit tune` and `ffnjit profile` print");
    // Every handle first, so that a bad one fails the call before anything is read.
    for (int i = 0; i < count; ++i) {
      if (Status s = check_layer(layers[i]); !s)
        return invalid("layers[" + std::to_string(i) + "]: " + s.error().message);
      if (layers[i]->ctx != layers[0]->ctx)
        return invalid("layers[" + std::to_string(i) +
                       "] belongs to another context than layers[0]; export the layers of each "
                       "context separately");
    }
    if (!layers[0]->ctx->options.count_sparsity)
      return invalid(
          "the context was created without count_sparsity; set it in ffnjit_context_options to "
          "collect serving counters");
    profile::Profile prof;
    prof.fingerprint = fingerprint;
    prof.source = "ffnjit runtime serving counters";
    for (int i = 0; i < count; ++i) {
      const Layer& l = *layers[i]->layer;
      if (Status s = layers[i]->ctx->device->make_current(); !s) return fail(s);
      auto h = l.histograms();
      if (!h) return fail(h.error());
      const int dff = l.shape().d_ff;
      profile::LayerProfile lp;
      lp.index = i, lp.d_model = l.shape().d_model, lp.d_ff = dff, lp.gated = l.shape().gated;
      lp.per_token = profile::from_dense(h->tokens_by_active.data(), h->tokens_by_active.size());
      lp.tokens = lp.per_token.total();
      lp.neuron_active = h->neuron_active;
      lp.dead_neurons = profile::dead_neurons(h->neuron_active);
      for (const auto& [tn, v] : h->tiles) lp.tilings.push_back(profile::tiling_from_dense(tn, dff, v.data()));
      prof.layers.push_back(std::move(lp));
    }
    if (Status s = profile::write(path, prof); !s) return fail(s);
    return ok();
  });
}

}  // extern "C"
