// The dense FFN on cuBLASLt (fallback and benchmark baseline).
#include "runtime/dense_ffn.hpp"

#include <cublasLt.h>

#include "templates/ffnjit/params.h"

namespace ffnjit {
namespace {

constexpr size_t kLtWorkspace = 32u << 20;

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

Error lt_error(const char* call, cublasStatus_t s) {
  return Error{ErrorKind::kDriver, std::string(call) + " failed with cuBLAS status " + std::to_string(int(s))};
}

#define FFNJIT_LT(call)                                         \
  do {                                                          \
    cublasStatus_t ffnjit_lt_s_ = (call);                       \
    if (ffnjit_lt_s_ != CUBLAS_STATUS_SUCCESS) return lt_error(#call, ffnjit_lt_s_); \
  } while (0)

// One row-major GEMM C[M][N] = A[M][K] . W[N][K]^T, as column-major C^T = W^T-op . A^T.
struct Gemm {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Gemm() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
  }
};

Status make_gemm(cublasLtHandle_t lt, Gemm& g, int m, int n, int k, bool relu) {
  FFNJIT_LT(cublasLtMatmulDescCreate(&g.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  FFNJIT_LT(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  FFNJIT_LT(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (relu) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_RELU;
    FFNJIT_LT(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  }
  FFNJIT_LT(cublasLtMatrixLayoutCreate(&g.a, CUDA_R_16BF, k, n, k));  // W as col-major K x N
  FFNJIT_LT(cublasLtMatrixLayoutCreate(&g.b, CUDA_R_16BF, k, m, k));  // X as col-major K x M
  FFNJIT_LT(cublasLtMatrixLayoutCreate(&g.c, CUDA_R_16BF, n, m, n));  // C as col-major N x M
  cublasLtMatmulPreference_t pref;
  FFNJIT_LT(cublasLtMatmulPreferenceCreate(&pref));
  size_t ws = kLtWorkspace;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt, g.desc, g.a, g.b, g.c, g.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS || found == 0)
    return unsupported("cuBLASLt has no algorithm for a " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                       std::to_string(k) + " bf16 GEMM");
  g.algo = result.algo;
  return {};
}

}  // namespace

struct DenseFfn::Impl {
  KernelTable* kernels = nullptr;
  Arch arch = Arch::kSm90a;
  LayerShape layer;
  cublasLtHandle_t lt = nullptr;
  const LoadedKernel* act = nullptr;
  struct Plan {
    Gemm up, down;
  };
  std::map<int, std::unique_ptr<Plan>> plans;  // by token count
  ~Impl() {
    plans.clear();
    if (lt) cublasLtDestroy(lt);
  }
};

DenseFfn::DenseFfn(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DenseFfn::~DenseFfn() = default;

Expected<std::unique_ptr<DenseFfn>> DenseFfn::create(KernelTable& kernels, Arch arch, const LayerShape& layer) {
  auto impl = std::make_unique<Impl>();
  impl->kernels = &kernels;
  impl->arch = arch;
  impl->layer = layer;
  FFNJIT_LT(cublasLtCreate(&impl->lt));
  if (layer.gated) {
    auto act = kernels.get(default_spec(Family::kDenseAct, layer, arch, {1, 1}));
    FFNJIT_TRY(act);
    impl->act = *act;
  }
  return std::unique_ptr<DenseFfn>(new DenseFfn(std::move(impl)));
}

size_t DenseFfn::workspace_bytes(int tokens) const {
  const size_t m = size_t(tokens), f = size_t(impl_->layer.d_ff);
  return kLtWorkspace + align256(m * f * 2 * (impl_->layer.gated ? 2 : 1)) + align256(m * f * 2);
}

Status DenseFfn::forward(const DenseDeviceWeights& w, CUdeviceptr x, CUdeviceptr out, int tokens,
                         CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  Impl& I = *impl_;
  const int dm = I.layer.d_model, dff = I.layer.d_ff, n1 = I.layer.gated ? 2 * dff : dff;
  auto& plan = I.plans[tokens];
  if (!plan) {
    auto p = std::make_unique<Impl::Plan>();
    FFNJIT_TRY(make_gemm(I.lt, p->up, tokens, n1, dm, !I.layer.gated));
    FFNJIT_TRY(make_gemm(I.lt, p->down, tokens, dm, dff, false));
    plan = std::move(p);
  }
  const CUdeviceptr lt_ws = workspace;
  const CUdeviceptr gu = workspace + kLtWorkspace;
  const CUdeviceptr h = I.layer.gated ? gu + align256(size_t(tokens) * n1 * 2) : gu;
  const float one = 1.0f, zero = 0.0f;
  auto cs = reinterpret_cast<cudaStream_t>(stream);
  FFNJIT_LT(cublasLtMatmul(I.lt, plan->up.desc, &one, reinterpret_cast<void*>(w.w_gate_up), plan->up.a,
                           reinterpret_cast<void*>(x), plan->up.b, &zero, reinterpret_cast<void*>(gu), plan->up.c,
                           reinterpret_cast<void*>(gu), plan->up.c, &plan->up.algo, reinterpret_cast<void*>(lt_ws),
                           kLtWorkspace, cs));
  if (I.layer.gated) {
    DenseActParams p{reinterpret_cast<const u16*>(gu), reinterpret_cast<u16*>(h), tokens};
    const long long vecs = (long long)tokens * dff / 8;
    const unsigned blocks = unsigned(std::min<long long>((vecs + 255) / 256, 132LL * 16));
    FFNJIT_TRY(launch(*I.act, blocks, 1, &p, stream));
  }
  FFNJIT_LT(cublasLtMatmul(I.lt, plan->down.desc, &one, reinterpret_cast<void*>(w.w_down), plan->down.a,
                           reinterpret_cast<void*>(h), plan->down.b, &zero, reinterpret_cast<void*>(out),
                           plan->down.c, reinterpret_cast<void*>(out), plan->down.c, &plan->down.algo,
                           reinterpret_cast<void*>(lt_ws), kLtWorkspace, cs));
  return {};
}

}  // namespace ffnjit
