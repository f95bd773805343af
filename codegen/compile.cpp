// Stage 2 of the pipeline: Source -> CompiledKernel (cubin, PTX, ptxas resources) via NVRTC.
#include "codegen/compile.hpp"

#include <nvrtc.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <sstream>

#include "codegen/version.hpp"
#include "support/hash.hpp"
#include "support/strings.hpp"

namespace ffnjit {
namespace {

// Owns an nvrtcProgram for one compile.
class Program {
 public:
  ~Program() {
    if (prog_) nvrtcDestroyProgram(&prog_);
  }
  nvrtcProgram* out() { return &prog_; }
  nvrtcProgram get() const { return prog_; }

 private:
  nvrtcProgram prog_ = nullptr;
};

Error nvrtc_error(nvrtcResult r, const std::string& what) {
  return internal_error(what + " failed: " + nvrtcGetErrorString(r));
}

std::string get_log(nvrtcProgram prog) {
  size_t n = 0;
  if (nvrtcGetProgramLogSize(prog, &n) != NVRTC_SUCCESS || n <= 1) return "";
  std::string log(n, '\0');
  if (nvrtcGetProgramLog(prog, log.data()) != NVRTC_SUCCESS) return "";
  log.resize(n - 1);
  return log;
}

struct RunResult {
  std::string log, cubin, ptx;
};

// One NVRTC compilation of `src` with `options`; keeps the cubin (real arch) or PTX.
Expected<RunResult> run_nvrtc(const Source& src, const std::vector<std::string>& options, bool real_arch) {
  std::vector<const char*> hdr_text, hdr_names;
  std::vector<std::string> hdr_storage;
  for (const auto& h : device_headers()) {
    hdr_storage.emplace_back(h.text);
    hdr_storage.emplace_back(h.path);
  }
  for (size_t i = 0; i < hdr_storage.size(); i += 2) {
    hdr_text.push_back(hdr_storage[i].c_str());
    hdr_names.push_back(hdr_storage[i + 1].c_str());
  }
  Program prog;
  const std::string file_name = src.kernel_name + ".cu";
  nvrtcResult r = nvrtcCreateProgram(prog.out(), src.text.c_str(), file_name.c_str(), int(hdr_text.size()),
                                     hdr_text.data(), hdr_names.data());
  if (r != NVRTC_SUCCESS) return nvrtc_error(r, "nvrtcCreateProgram");
  std::vector<const char*> argv;
  for (const auto& o : options) argv.push_back(o.c_str());
  r = nvrtcCompileProgram(prog.get(), int(argv.size()), argv.data());
  RunResult out;
  out.log = get_log(prog.get());
  if (r != NVRTC_SUCCESS) {
    return Error{ErrorKind::kCompile, "NVRTC could not compile " + src.kernel_name + " (" +
                                          nvrtcGetErrorString(r) + ")\noptions: " + join(options, " ") +
                                          "\nlog:\n" + out.log};
  }
  size_t n = 0;
  if (real_arch) {
    if ((r = nvrtcGetCUBINSize(prog.get(), &n)) != NVRTC_SUCCESS) return nvrtc_error(r, "nvrtcGetCUBINSize");
    out.cubin.resize(n);
    if ((r = nvrtcGetCUBIN(prog.get(), out.cubin.data())) != NVRTC_SUCCESS) return nvrtc_error(r, "nvrtcGetCUBIN");
  } else {
    if ((r = nvrtcGetPTXSize(prog.get(), &n)) != NVRTC_SUCCESS) return nvrtc_error(r, "nvrtcGetPTXSize");
    out.ptx.resize(n);
    if ((r = nvrtcGetPTX(prog.get(), out.ptx.data())) != NVRTC_SUCCESS) return nvrtc_error(r, "nvrtcGetPTX");
    while (!out.ptx.empty() && out.ptx.back() == '\0') out.ptx.pop_back();
  }
  return out;
}

int capture_int(const std::string& s, const std::regex& re) {
  std::smatch m;
  return std::regex_search(s, m, re) ? std::stoi(m[1].str()) : 0;
}

}  // namespace

ResourceReport parse_ptxas_report(const std::string& log, const std::string& kernel_name) {
  ResourceReport r;
  // ptxas prints "Compiling entry function 'NAME'" then the properties and usage lines.
  size_t at = log.find("'" + kernel_name + "'");
  if (at == std::string::npos) return r;
  size_t end = log.find("Compiling entry function", at + 1);
  std::string block = log.substr(at, end == std::string::npos ? std::string::npos : end - at);
  static const std::regex regs(R"(Used (\d+) registers)"), bars(R"(used (\d+) barriers)"),
      stack(R"((\d+) bytes stack frame)"), sstore(R"((\d+) bytes spill stores)"),
      sload(R"((\d+) bytes spill loads)"), smem(R"((\d+) bytes smem)"), cmem(R"((\d+) bytes cmem\[0\])");
  std::smatch m;
  if (std::regex_search(block, m, regs)) r.registers = std::stoi(m[1].str());
  r.barriers = capture_int(block, bars);
  r.stack_frame_bytes = capture_int(block, stack);
  r.spill_store_bytes = capture_int(block, sstore);
  r.spill_load_bytes = capture_int(block, sload);
  r.static_smem_bytes = capture_int(block, smem);
  r.constant_bytes = capture_int(block, cmem);
  return r;
}

std::string format_resources(const ResourceReport& r) {
  std::ostringstream o;
  o << "registers: " << r.registers << "\n"
    << "spill stores: " << r.spill_store_bytes << " bytes\n"
    << "spill loads: " << r.spill_load_bytes << " bytes\n"
    << "stack frame: " << r.stack_frame_bytes << " bytes\n"
    << "static shared memory: " << r.static_smem_bytes << " bytes\n"
    << "dynamic shared memory: " << r.dynamic_smem_bytes << " bytes\n"
    << "barriers: " << r.barriers << "\n"
    << "constant memory: " << r.constant_bytes << " bytes\n";
  return o.str();
}

std::string nvrtc_version() {
  int major = 0, minor = 0;
  if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return "unknown";
  return std::to_string(major) + "." + std::to_string(minor);
}

Expected<CompiledKernel> compile(const Source& src, const CompileOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string arch = arch_name(src.spec.arch);
  const std::vector<std::string> options = compile_options(src, opts);

  auto run = run_nvrtc(src, options, /*real_arch=*/true);
  FFNJIT_TRY(run);
  CompiledKernel k;
  k.kernel_name = src.kernel_name;
  k.lowered_name = src.kernel_name;  // extern "C": no mangling
  k.arch = arch;
  k.cubin = std::move(run->cubin);
  k.log = std::move(run->log);
  k.options = options;
  k.resources = parse_ptxas_report(k.log, k.kernel_name);
  k.resources.dynamic_smem_bytes = src.spec.dynamic_smem_bytes();
  if (opts.want_ptx) {
    std::vector<std::string> ptx_options = options;
    ptx_options[0] = "-arch=compute_" + arch.substr(3);
    ptx_options.erase(std::find(ptx_options.begin(), ptx_options.end(), "--ptxas-options=-v"));
    auto ptx = run_nvrtc(src, ptx_options, /*real_arch=*/false);
    FFNJIT_TRY(ptx);
    k.ptx = std::move(ptx->ptx);
  }
  k.compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  k.key = compile_key(src, opts);
  return k;
}

std::vector<std::string> compile_options(const Source& src, const CompileOptions& opts) {
  std::vector<std::string> options = {"-arch=" + std::string(arch_name(src.spec.arch)), "-std=c++17",
                                      "-default-device", "--ptxas-options=-v", "-DFFNJIT_NVRTC=1"};
  if (opts.line_info) options.push_back("-lineinfo");
  return options;
}

std::string compile_key(const Source& src, const CompileOptions& opts) {
  Sha256 key;
  key.update(src.text).update("\n").update(templates_hash()).update("\n").update(kGeneratorVersion);
  key.update("\nnvrtc=").update(nvrtc_version()).update("\n").update(join(compile_options(src, opts), " "));
  return key.hex_digest();
}

}  // namespace ffnjit
