/* Example host engine in C: loads a safetensors checkpoint (Llama/SparseLM naming,
 * bf16), registers every FFN layer with ffnjit, runs forward for several token
 * counts and checks each result against an fp64 CPU reference.
 *
 * usage: c_engine <checkpoint dir containing model.safetensors>
 * Exit code 0 when every check passes. Needs a GPU. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffnjit/ffnjit.h"

#define CHECK_CUDA(call)                                                             \
  do {                                                                               \
    cudaError_t e_ = (call);                                                         \
    if (e_ != cudaSuccess) {                                                         \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)
#define CHECK_FFNJIT(call)                                                           \
  do {                                                                               \
    ffnjit_status s_ = (call);                                                       \
    if (s_ != FFNJIT_STATUS_OK) {                                                    \
      fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, ffnjit_status_name(s_), ffnjit_last_error()); \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

/* ---- a minimal safetensors reader: enough for named bf16 tensors ---- */
typedef struct {
  char* header; /* JSON text */
  unsigned char* data;
  size_t data_size;
} Safetensors;

static int st_open(const char* path, Safetensors* st) {
  FILE* f = fopen(path, "rb");
  if (!f) return 0;
  uint64_t n = 0;
  if (fread(&n, 8, 1, f) != 1 || n > (100u << 20)) return fclose(f), 0;
  st->header = calloc(n + 1, 1);
  if (fread(st->header, 1, n, f) != n) return fclose(f), 0;
  long start = ftell(f);
  fseek(f, 0, SEEK_END);
  st->data_size = (size_t)(ftell(f) - start);
  fseek(f, start, SEEK_SET);
  st->data = malloc(st->data_size ? st->data_size : 1);
  int ok = fread(st->data, 1, st->data_size, f) == st->data_size;
  fclose(f);
  return ok;
}

/* Finds tensor `name`: its bf16 data and up to 2 dims. Returns 0 if absent. */
static const uint16_t* st_tensor(const Safetensors* st, const char* name, int64_t dims[2]) {
  char key[256];
  snprintf(key, sizeof key, "\"%s\"", name);
  const char* p = strstr(st->header, key);
  if (!p) return NULL;
  const char* dtype = strstr(p, "\"dtype\"");
  const char* shape = strstr(p, "\"shape\"");
  const char* offs = strstr(p, "\"data_offsets\"");
  if (!dtype || !shape || !offs) return NULL;
  if (!strstr(dtype, "\"BF16\"") || strstr(dtype, "\"BF16\"") > shape + 64) {
    fprintf(stderr, "%s is not bf16; this example reads bf16 checkpoints only\n", name);
    exit(1);
  }
  long long a = 0, b = 0;
  if (sscanf(strchr(shape, '['), "[%lld,%lld]", &a, &b) != 2) return NULL;
  dims[0] = a, dims[1] = b;
  long long begin = 0, end = 0;
  if (sscanf(strchr(offs, '['), "[%lld,%lld]", &begin, &end) != 2) return NULL;
  if (end < begin || (size_t)end > st->data_size || end - begin != a * b * 2) return NULL;
  return (const uint16_t*)(st->data + begin);
}

/* ---- fp64 reference ---- */
static double bf(uint16_t v) {
  uint32_t u = (uint32_t)v << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

static void reference(const uint16_t* wg, const uint16_t* wu, const uint16_t* wd, int dm, int dff,
                      const uint16_t* x, double* out) {
  for (int d = 0; d < dm; ++d) out[d] = 0;
  for (int j = 0; j < dff; ++j) {
    double g = 0, u = 0;
    for (int k = 0; k < dm; ++k) {
      g += bf(x[k]) * bf((wg ? wg : wu)[(size_t)j * dm + k]);
      if (wg) u += bf(x[k]) * bf(wu[(size_t)j * dm + k]);
    }
    if (!(g > 0)) continue;
    double h = wg ? g * u : g;
    for (int d = 0; d < dm; ++d) out[d] += h * bf(wd[(size_t)d * dff + j]);
  }
}

typedef struct {
  const uint16_t *wg, *wu, *wd;
  int d_model, d_ff;
  ffnjit_layer* handle;
  void *d_wg, *d_wu, *d_wd;
} Layer;

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <checkpoint dir with model.safetensors>\n", argv[0]);
    return 2;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
  Safetensors st;
  if (!st_open(path, &st)) {
    fprintf(stderr, "cannot read %s\n", path);
    return 1;
  }
  printf("ffnjit %d.%d.%d (library %d)\n", FFNJIT_VERSION_MAJOR, FFNJIT_VERSION_MINOR, FFNJIT_VERSION_PATCH,
         ffnjit_version());

  ffnjit_context_options opts;
  ffnjit_context_options_init(&opts);
  ffnjit_context* ctx = NULL;
  CHECK_FFNJIT(ffnjit_context_create(&opts, &ctx));
  /* The layer ids `ffnjit tune` stored its records under (docs/identity.md):
   * "<checkpoint fingerprint>:<layer index>". */
  char fingerprint[65];
  CHECK_FFNJIT(ffnjit_checkpoint_fingerprint(argv[1], fingerprint, sizeof fingerprint));

  Layer layers[256];
  int n = 0;
  for (; n < 256; ++n) {
    char name[256];
    int64_t g[2], u[2], d[2];
    snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", n);
    const uint16_t* wu = st_tensor(&st, name, u);
    if (!wu) break;
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", n);
    const uint16_t* wg = st_tensor(&st, name, g);
    snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", n);
    const uint16_t* wd = st_tensor(&st, name, d);
    if (!wd) {
      fprintf(stderr, "layer %d has no down_proj\n", n);
      return 1;
    }
    Layer* L = &layers[n];
    L->wg = wg, L->wu = wu, L->wd = wd, L->d_ff = (int)u[0], L->d_model = (int)u[1];
    size_t bytes = (size_t)L->d_ff * L->d_model * 2;
    L->d_wg = NULL;
    if (wg) {
      CHECK_CUDA(cudaMalloc(&L->d_wg, bytes));
      CHECK_CUDA(cudaMemcpy(L->d_wg, wg, bytes, cudaMemcpyHostToDevice));
    }
    CHECK_CUDA(cudaMalloc(&L->d_wu, bytes));
    CHECK_CUDA(cudaMemcpy(L->d_wu, wu, bytes, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMalloc(&L->d_wd, bytes));
    CHECK_CUDA(cudaMemcpy(L->d_wd, wd, bytes, cudaMemcpyHostToDevice));
    ffnjit_layer_desc desc = {0};
    desc.d_model = L->d_model, desc.d_ff = L->d_ff, desc.gated = wg != NULL, desc.dtype = FFNJIT_BF16;
    desc.gate_proj = L->d_wg, desc.up_proj = L->d_wu, desc.down_proj = L->d_wd;
    snprintf(name, sizeof name, "%s:%d", fingerprint, n);
    desc.layer_id = name;
    CHECK_FFNJIT(ffnjit_layer_register(ctx, &desc, &L->handle));
    /* ffnjit copied the weights: the engine's copies could be freed here. */
  }
  if (n == 0) {
    fprintf(stderr, "no model.layers.N.mlp.up_proj.weight tensors in %s\n", path);
    return 1;
  }
  printf("registered %d FFN layers (d_model %d, d_ff %d, %s)\n", n, layers[0].d_model, layers[0].d_ff,
         layers[0].wg ? "gated" : "non-gated");

  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const int token_counts[] = {1, 7, 64, 300};
  int failures = 0;
  srand(7);
  for (size_t t = 0; t < sizeof token_counts / sizeof *token_counts; ++t) {
    const int m = token_counts[t];
    for (int l = 0; l < n; ++l) {
      Layer* L = &layers[l];
      size_t xb = (size_t)m * L->d_model * 2, ws_bytes = 0;
      uint16_t* x = malloc(xb);
      uint16_t* y = malloc(xb);
      for (size_t i = 0; i < (size_t)m * L->d_model; ++i) x[i] = to_bf16((float)rand() / RAND_MAX * 3.4f - 1.7f);
      void *dx, *dy, *ws = NULL;
      CHECK_CUDA(cudaMalloc(&dx, xb));
      CHECK_CUDA(cudaMalloc(&dy, xb));
      CHECK_CUDA(cudaMemcpy(dx, x, xb, cudaMemcpyHostToDevice));
      CHECK_FFNJIT(ffnjit_layer_workspace_size(L->handle, m, &ws_bytes));
      if (ws_bytes) CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
      CHECK_FFNJIT(ffnjit_ffn_forward(L->handle, dx, dy, m, ws, ws_bytes, stream));
      CHECK_CUDA(cudaStreamSynchronize(stream));
      CHECK_CUDA(cudaMemcpy(y, dy, xb, cudaMemcpyDeviceToHost));
      double num = 0, den = 0;
      double* ref = malloc(sizeof(double) * L->d_model);
      for (int k = 0; k < m; k += (m > 16 ? 37 : 1)) {
        reference(L->wg, L->wu, L->wd, L->d_model, L->d_ff, x + (size_t)k * L->d_model, ref);
        for (int d = 0; d < L->d_model; ++d) {
          double diff = bf(y[(size_t)k * L->d_model + d]) - ref[d];
          num += diff * diff, den += ref[d] * ref[d];
        }
      }
      double err = den > 0 ? sqrt(num / den) : sqrt(num);
      int ok = err <= 1e-2;
      failures += !ok;
      printf("layer %2d tokens %4d: rel error %.2e %s\n", l, m, err, ok ? "ok" : "FAIL");
      free(ref), free(x), free(y);
      cudaFree(dx), cudaFree(dy), cudaFree(ws);
    }
  }
  for (int l = 0; l < n; ++l) {
    ffnjit_layer_destroy(layers[l].handle);
    cudaFree(layers[l].d_wg), cudaFree(layers[l].d_wu), cudaFree(layers[l].d_wd);
  }
  ffnjit_context_destroy(ctx);
  printf("%d passed, %d failed\n", 4 * n - failures, failures);
  return failures ? 1 : 0;
}
