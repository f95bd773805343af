// cuBLASLt GEMM plans, made once per shape and reused.
#include "runtime/lt_gemm.hpp"

#include <cublasLt.h>

namespace ffnjit {
namespace {

Error lt_error(const char* call, cublasStatus_t s) {
  return Error{ErrorKind::kDriver, std::string(call) + " failed with cuBLAS status " + std::to_string(int(s))};
}

#define FFNJIT_LT(call)                                                              \
  do {                                                                               \
    cublasStatus_t ffnjit_lt_s_ = (call);                                            \
    if (ffnjit_lt_s_ != CUBLAS_STATUS_SUCCESS) return lt_error(#call, ffnjit_lt_s_); \
  } while (0)

}  // namespace

// Row-major C[M][N] = A[M][K] . W[N][K]^T, as column-major C^T = W^T-op . A^T.
struct LtGemms::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
  }
};

struct LtGemms::Impl {
  cublasLtHandle_t lt = nullptr;
  std::mutex mu;
  std::map<std::tuple<int, int, int, bool, CUdeviceptr>, std::unique_ptr<Plan>> plans;
  ~Impl() {
    plans.clear();
    if (lt) cublasLtDestroy(lt);
  }
};

namespace {

Status make_plan(cublasLtHandle_t lt, LtGemms::Plan& g, int m, int n, int k, bool relu,
                 CUdeviceptr bias);

}  // namespace

LtGemms::LtGemms(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LtGemms::~LtGemms() = default;

Expected<std::unique_ptr<LtGemms>> LtGemms::create() {
  auto impl = std::make_unique<Impl>();
  FFNJIT_LT(cublasLtCreate(&impl->lt));
  return std::unique_ptr<LtGemms>(new LtGemms(std::move(impl)));
}

Status LtGemms::run(int m, int n, int k, bool relu, CUdeviceptr bias, CUdeviceptr a, CUdeviceptr w,
                    CUdeviceptr c, CUdeviceptr workspace, CUstream stream) {
  Impl& I = *impl_;
  const Plan* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(I.mu);
    auto& slot = I.plans[{m, n, k, relu, bias}];
    if (!slot) {
      auto fresh = std::make_unique<Plan>();
      if (Status s = make_plan(I.lt, *fresh, m, n, k, relu, bias); !s) {
        I.plans.erase({m, n, k, relu, bias});
        return s;
      }
      slot = std::move(fresh);
    }
    p = slot.get();
  }
  const float one = 1.0f, zero = 0.0f;
  FFNJIT_LT(cublasLtMatmul(I.lt, p->desc, &one, reinterpret_cast<void*>(w), p->a, reinterpret_cast<void*>(a), p->b,
                           &zero, reinterpret_cast<void*>(c), p->c, reinterpret_cast<void*>(c), p->c, &p->algo,
                           reinterpret_cast<void*>(workspace), kWorkspace, reinterpret_cast<cudaStream_t>(stream)));
  return {};
}

namespace {

Status make_plan(cublasLtHandle_t lt, LtGemms::Plan& g, int m, int n, int k, bool relu,
                 CUdeviceptr bias) {
  FFNJIT_LT(cublasLtMatmulDescCreate(&g.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  FFNJIT_LT(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  FFNJIT_LT(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (relu || bias) {
    // The bias has one value per row of the column-major C (N x M): per output feature.
    // bf16 (C's type); cuBLASLt adds it in fp32 before ReLU and rounding. Its pointer's
    // alignment steers the heuristic, hence plans per pointer (LtGemms::run).
    cublasLtEpilogue_t epi = relu && bias ? CUBLASLT_EPILOGUE_RELU_BIAS
                             : bias       ? CUBLASLT_EPILOGUE_BIAS
                                          : CUBLASLT_EPILOGUE_RELU;
    FFNJIT_LT(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (bias) {  // bf16, C's type: cuBLASLt's default bias type for a bf16 output
      const void* ptr = reinterpret_cast<const void*>(bias);
      FFNJIT_LT(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ptr,
                                               sizeof(ptr)));
    }
  }
  FFNJIT_LT(cublasLtMatrixLayoutCreate(&g.a, CUDA_R_16BF, k, n, k));  // W as col-major K x N
  FFNJIT_LT(cublasLtMatrixLayoutCreate(&g.b, CUDA_R_16BF, k, m, k));  // A as col-major K x M
  FFNJIT_LT(cublasLtMatrixLayoutCreate(&g.c, CUDA_R_16BF, n, m, n));  // C as col-major N x M
  cublasLtMatmulPreference_t pref;
  FFNJIT_LT(cublasLtMatmulPreferenceCreate(&pref));
  size_t ws = LtGemms::kWorkspace;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt, g.desc, g.a, g.b, g.c, g.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS || found == 0)
    return unsupported("cuBLASLt has no algorithm for a " + std::to_string(m) + "x" +
                       std::to_string(n) + "x" + std::to_string(k) + " bf16 GEMM" +
                       (bias ? " with a bias epilogue" : ""));
  g.algo = result.algo;
  return {};
}

}  // namespace

}  // namespace ffnjit
