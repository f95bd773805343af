/* ffnjit C API: sparse FFN kernels for host inference engines.
 *
 * Conventions (the SQLite/cuBLASLt style):
 * - Every function returns an ffnjit_status; on failure, ffnjit_last_error()
 *   returns a message for the calling thread that names the fix. It stays valid
 *   until the next ffnjit call on that thread.
 * - Handles are opaque. Destroying NULL is a no-op.
 * - Lifetime: destroy layers before their context. A context destroyed while
 *   layers of it are alive is only marked destroyed: every later call on it or on
 *   those layers fails with FFNJIT_STATUS_INVALID_ARGUMENT ("the layer's context
 *   was destroyed; ..."), except ffnjit_layer_destroy, and the last
 *   ffnjit_layer_destroy frees the context.
 * - All device pointers are plain CUDA device pointers (cudaMalloc / cuMemAlloc /
 *   torch tensors) on the context's device; streams are CUstream / cudaStream_t.
 * - Thread safety is stated per function. Unless stated, distinct handles may be
 *   used from distinct threads at the same time.
 */
#ifndef FFNJIT_FFNJIT_H_
#define FFNJIT_FFNJIT_H_

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define FFNJIT_API __attribute__((visibility("default")))
#else
#define FFNJIT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The one source of ffnjit's version: CMake (project, soname, package files), the CLI
 * (--version, doctor) and the Python package's metadata read these three lines. */
#define FFNJIT_VERSION_MAJOR 0
#define FFNJIT_VERSION_MINOR 3
#define FFNJIT_VERSION_PATCH 1
/* major * 10000 + minor * 100 + patch, as ffnjit_version() returns it. */
#define FFNJIT_VERSION (FFNJIT_VERSION_MAJOR * 10000 + FFNJIT_VERSION_MINOR * 100 + FFNJIT_VERSION_PATCH)
#define FFNJIT_STRINGIFY_(x) #x
#define FFNJIT_STRINGIFY(x) FFNJIT_STRINGIFY_(x)
/* "0.3.1" */
#define FFNJIT_VERSION_STRING            \
  FFNJIT_STRINGIFY(FFNJIT_VERSION_MAJOR) \
  "." FFNJIT_STRINGIFY(FFNJIT_VERSION_MINOR) "." FFNJIT_STRINGIFY(FFNJIT_VERSION_PATCH)

typedef enum ffnjit_status {
  FFNJIT_STATUS_OK = 0,
  FFNJIT_STATUS_INVALID_ARGUMENT = 1, /* the caller passed something wrong */
  FFNJIT_STATUS_UNSUPPORTED = 2,      /* valid, but this build/device cannot serve it */
  FFNJIT_STATUS_NOT_FOUND = 3,        /* a file, record or kernel that does not exist (e.g. cache-only miss) */
  FFNJIT_STATUS_IO_ERROR = 4,         /* file system or cache database trouble */
  FFNJIT_STATUS_COMPILE_ERROR = 5,    /* NVRTC rejected generated code (a bug: please report) */
  FFNJIT_STATUS_DRIVER_ERROR = 6,     /* a CUDA driver call failed */
  FFNJIT_STATUS_INTERNAL_ERROR = 7,   /* a bug in ffnjit */
  FFNJIT_STATUS_MAX_ENUM = 0x7fffffff /* keeps every int a valid value (C callers may pass any) */
} ffnjit_status;

/* The library's version, FFNJIT_VERSION format. Thread-safe. */
FFNJIT_API int ffnjit_version(void);

/* Message of the calling thread's last failure ("" if none). Thread-safe. */
FFNJIT_API const char* ffnjit_last_error(void);

/* Name of a status ("FFNJIT_STATUS_INVALID_ARGUMENT"). Thread-safe. */
FFNJIT_API const char* ffnjit_status_name(ffnjit_status status);

/* The 64 lower-case hex digits that identify a checkpoint directory's weights (the
 * fingerprint `ffnjit tune` and `ffnjit profile` print and key tuning records by): SHA-256
 * of config.json and the tensors' names, dtypes, shapes and sampled bytes, independent of
 * path and shard layout. Writes 65 bytes (with the NUL) to `out`; out_size must be >= 65.
 * Reads the checkpoint's headers and a sample of its FFN tensors. Thread-safe. */
FFNJIT_API ffnjit_status ffnjit_checkpoint_fingerprint(const char* checkpoint_dir, char* out, size_t out_size);

typedef struct ffnjit_context ffnjit_context;
typedef struct ffnjit_layer ffnjit_layer;

/* What to do when no compiled kernel for a layer and batch bucket is cached. */
typedef enum ffnjit_miss_policy {
  FFNJIT_COMPILE_ON_MISS = 0, /* compile the default configuration (once per process) */
  FFNJIT_CACHE_ONLY = 1,      /* fail with FFNJIT_STATUS_NOT_FOUND instead */
  FFNJIT_MISS_POLICY_MAX_ENUM = 0x7fffffff
} ffnjit_miss_policy;

typedef struct ffnjit_context_options {
  int device;                     /* CUDA device ordinal */
  const char* cache_path;         /* NULL: $FFNJIT_CACHE, else $XDG_CACHE_HOME/ffnjit/cache.db */
  ffnjit_miss_policy miss_policy;
  int count_sparsity;             /* nonzero: keep per-layer serving counters (one small extra kernel per
                                     sparse forward); read them with ffnjit_export_profile */
} ffnjit_context_options;

/* Fills `options` with the defaults (device 0, default cache, compile on miss, no counters). */
FFNJIT_API void ffnjit_context_options_init(ffnjit_context_options* options);

/* Creates a context on options->device (retains its primary context, shared with
 * the CUDA runtime and frameworks). Thread-safe. */
FFNJIT_API ffnjit_status ffnjit_context_create(const ffnjit_context_options* options, ffnjit_context** out);

typedef struct ffnjit_context_stats {
  int64_t kernels_compiled;   /* kernels NVRTC compiled in this process (0 when the cache is warm) */
  int64_t kernels_from_cache; /* kernels loaded from cached binaries */
  int64_t tuned_buckets;      /* (layer, bucket) pairs served by a record tuned for the layer's layer_id */
  int64_t default_buckets;    /* (layer, bucket) pairs served by the default configuration */
  int64_t shape_buckets;      /* (layer, bucket) pairs served by a record for the layer's shape (no
                                 record for its layer_id, or no layer_id) */
} ffnjit_context_stats;

/* Counters of how this context found its kernels. Thread-safe. */
FFNJIT_API ffnjit_status ffnjit_context_get_stats(const ffnjit_context* ctx, ffnjit_context_stats* out);

/* Destroys a context. Destroy its layers first: with layers still alive, the
 * context is only marked destroyed (every later call on it or on its layers, other
 * than ffnjit_layer_destroy, fails with FFNJIT_STATUS_INVALID_ARGUMENT) and its
 * memory, device context reference and kernels are freed by the last
 * ffnjit_layer_destroy. NULL is a no-op. Not concurrent with other calls on the
 * same context; calls on its layers may race it (they either complete or fail as
 * above). */
FFNJIT_API void ffnjit_context_destroy(ffnjit_context* ctx);

typedef enum ffnjit_dtype { FFNJIT_BF16 = 0, FFNJIT_DTYPE_MAX_ENUM = 0x7fffffff } ffnjit_dtype;

/* The FFN's activation; every one gives exactly 0 for an inactive neuron, which is what
 * the sparse kernels skip. z is the gate pre-activation (gated: x Wg^T + gate_bias;
 * non-gated: x Wu^T + up_bias). */
typedef enum ffnjit_activation {
  FFNJIT_ACTIVATION_RELU = 0,    /* max(z, 0) */
  FFNJIT_ACTIVATION_RELU2 = 1,   /* max(z, 0)^2 (squared ReLU) */
  FFNJIT_ACTIVATION_FATRELU = 2, /* z if z > activation_threshold, else 0 (threshold >= 0) */
  FFNJIT_ACTIVATION_MAX_ENUM = 0x7fffffff
} ffnjit_activation;

/* Longest layer_id ffnjit_layer_register accepts, without the terminating NUL. */
#define FFNJIT_LAYER_ID_MAX 255

typedef struct ffnjit_layer_desc {
  int d_model;             /* hidden size, multiple of 8 */
  int d_ff;                /* FFN size, multiple of 8 */
  int gated;               /* nonzero: (relu(x Wg^T) * x Wu^T) Wd^T; zero: relu(x Wu^T) Wd^T */
  ffnjit_dtype dtype;
  const void* gate_proj;   /* Wg [d_ff][d_model] (Hugging Face gate_proj.weight); NULL when not gated */
  const void* up_proj;     /* Wu [d_ff][d_model] */
  const void* down_proj;   /* Wd [d_model][d_ff] */
  /* Which tuning records serve this layer (docs/identity.md): "<fingerprint>:<index>" with
   * the checkpoint's 64-hex fingerprint (ffnjit_checkpoint_fingerprint, printed by
   * `ffnjit tune`) and the FFN layer index, or "<fingerprint>:<index>:tp<size>.<rank>" for
   * one tensor-parallel shard. Lookup: records tuned for this layer_id, else records for
   * the layer's shape, else the default kernels. NULL or "": shape records only. */
  const char* layer_id;
  int tile_n;              /* TwELL tile width (0: the tuned record's, else 128) */
  int capacity;            /* TwELL entries per (token, tile) (0: the tuned record's, else 31) */
  const void* gate_bias;   /* [d_ff] bf16 or NULL: gate_proj.bias (gated layers only) */
  const void* up_bias;     /* [d_ff] bf16 or NULL: up_proj.bias, or fc1.bias of a non-gated layer */
  const void* down_bias;   /* [d_model] bf16 or NULL: down_proj.bias / fc2.bias */
  ffnjit_activation activation; /* 0 (FFNJIT_ACTIVATION_RELU) unless set */
  float activation_threshold;   /* FFNJIT_ACTIVATION_FATRELU only; must be 0 otherwise */
} ffnjit_layer_desc;

/* Registers a layer: validates the description, copies the weights into the
 * layouts the kernels read (device memory owned by the layer), and resolves
 * nothing else yet. The caller's weight buffers may be freed afterwards. The
 * layer keeps its context allocated until ffnjit_layer_destroy (see
 * ffnjit_context_destroy). Thread-safe with respect to other layers of the same
 * context. */
FFNJIT_API ffnjit_status ffnjit_layer_register(ffnjit_context* ctx, const ffnjit_layer_desc* desc, ffnjit_layer** out);

typedef struct ffnjit_layer_stats {
  int64_t overflow_tiles; /* (token, tile) pairs over TwELL capacity since registration (computed exactly) */
} ffnjit_layer_stats;

/* Serving counters of a layer. Synchronizes with the device to read them. Fails
 * (FFNJIT_STATUS_INVALID_ARGUMENT) once the layer's context was destroyed. */
FFNJIT_API ffnjit_status ffnjit_layer_get_stats(ffnjit_layer* layer, ffnjit_layer_stats* out);

/* Destroys a layer and its device memory; the last layer of a destroyed context
 * also frees the context. Works after ffnjit_context_destroy. NULL is a no-op.
 * Not concurrent with other calls on the same layer. */
FFNJIT_API void ffnjit_layer_destroy(ffnjit_layer* layer);

/* Bytes of device workspace ffnjit_ffn_forward needs for `tokens` tokens (256-byte
 * aligned pointers). Fails (FFNJIT_STATUS_INVALID_ARGUMENT) once the layer's
 * context was destroyed. Thread-safe. */
FFNJIT_API ffnjit_status ffnjit_layer_workspace_size(const ffnjit_layer* layer, int64_t tokens, size_t* bytes);

/* out[tokens][d_model] = FFN(x[tokens][d_model]), both bf16 device pointers
 * (16-byte aligned), enqueued on `stream`. Zero tokens is a valid call that does
 * nothing. Never allocates or synchronizes, so it can be captured in a CUDA graph;
 * the first call for a batch bucket looks the kernel up (and may compile, see
 * ffnjit_miss_policy), later calls do not touch the cache. Fails
 * (FFNJIT_STATUS_INVALID_ARGUMENT) once the layer's context was destroyed. A call
 * with the same (tokens, x, out, workspace) as the previous call on this layer and
 * bucket replays one cached CUDA graph launch (captured on the second such call;
 * never while the caller is capturing `stream`). Calls on the same layer may come
 * from several threads. */
FFNJIT_API ffnjit_status ffnjit_ffn_forward(ffnjit_layer* layer, const void* x, void* out, int64_t tokens, void* workspace,
                                 size_t workspace_bytes, void* stream);

/* Writes what the layers saw while serving (histograms of active neurons per token
 * and per (token, tile), per-neuron firing counts, dead neurons) as an ffnjit profile
 * (docs/profile.md) that `ffnjit tune --profile` reads. layers[i] must be FFN layer i
 * of the checkpoint with this fingerprint (64 hex digits, printed by `ffnjit tune`
 * and `ffnjit profile`), all from one live context created with count_sparsity
 * (layers of another context, or of a destroyed one, fail the call with
 * FFNJIT_STATUS_INVALID_ARGUMENT before anything is read or written). Buckets
 * served by the dense fallback produce no TwELL and are not counted. Synchronizes
 * with the device; not concurrent with forwards on these layers. */
FFNJIT_API ffnjit_status ffnjit_export_profile(ffnjit_layer* const* layers, int count,
                                               const char* checkpoint_fingerprint, const char* path);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FFNJIT_FFNJIT_H_ */
