// Measuring a checkpoint's sparsity: layer inputs in, gate evaluated (CPU or a caller's GPU),
// profile out.
#include "model/profiler.hpp"

#include <algorithm>
#include <cmath>
#include <thread>

#include "support/bf16.hpp"
#include "support/json.hpp"
#include "support/strings.hpp"

namespace ffnjit::model {

GateFn cpu_gate(int threads) {
  // The math of ref::gate_row (exact bf16 x bf16 products summed in fp64) with the
  // weights widened to fp32 once and eight independent partial sums: only the
  // summation order differs (~1e-16 relative), about 5x faster.
  return [threads](const LayerWeights& w, const uint16_t* x, int64_t tokens,
                   float* gate) -> Status {
    const uint16_t* wg = w.gated ? w.wg.data() : w.wu.data();
    const std::vector<float>& bias = w.gated ? w.gate_bias : w.up_bias;
    const int D = w.d_model;
    std::vector<float> wf(size_t(w.d_ff) * D);
    for (size_t i = 0; i < wf.size(); ++i) wf[i] = bf16_to_float(wg[i]);
    const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
    const int n = int(std::max<int64_t>(1, std::min<int64_t>(tokens, threads > 0 ? threads : hw)));
    std::vector<std::thread> pool;
    for (int t = 0; t < n; ++t)
      pool.emplace_back([&, t] {
        std::vector<float> xf(static_cast<size_t>(D));
        for (int64_t m = t; m < tokens; m += n) {
          for (int k = 0; k < D; ++k) xf[k] = bf16_to_float(x[size_t(m) * D + k]);
          float* out = gate + size_t(m) * w.d_ff;
          for (int j = 0; j < w.d_ff; ++j) {
            const float* r = wf.data() + size_t(j) * D;
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int k = 0;
            for (; k + 8 <= D; k += 8)
              for (int l = 0; l < 8; ++l) acc[l] += double(xf[k + l] * r[k + l]);  // exact in fp32
            for (; k < D; ++k) acc[0] += double(xf[k] * r[k]);
            const double g =
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            out[j] = float(g + (bias.empty() ? 0.0 : double(bias[j])));
            if (w.activation == ref::Activation::kFatRelu && out[j] <= w.activation_threshold)
              out[j] = 0.0f;
          }
        }
      });
    for (auto& th : pool) th.join();
    return {};
  };
}

Expected<std::vector<LayerInputs>> load_layer_inputs(const st::Store& inputs,
                                                     const ModelInfo& info) {
  std::vector<LayerInputs> out;
  std::vector<std::string> unknown;
  for (const std::string& name : inputs.names()) {
    // layers.<1 to 6 digits>.input, matched by hand (linear, unlike std::regex).
    const std::string_view pre = "layers.", post = ".input";
    const std::string_view num =
        name.size() > pre.size() + post.size() && starts_with(name, pre) &&
                name.compare(name.size() - post.size(), post.size(), post) == 0
            ? std::string_view(name).substr(pre.size(), name.size() - pre.size() - post.size())
            : std::string_view();
    if (num.empty() || num.size() > 6 ||
        num.find_first_not_of("0123456789") != std::string_view::npos) {
      unknown.push_back(text_excerpt(name, 120));
      continue;
    }
    if (num.size() > 1 && num[0] == '0')
      return user_error("inputs tensor '" + name + "' writes layer " +
                        std::to_string(std::stoi(std::string(num))) + " as '" + std::string(num) +
                        "'; layer numbers have no leading zeros");
    const int layer = std::stoi(std::string(num));
    const FfnLayer* L = nullptr;
    for (const auto& l : info.layers)
      if (l.index == layer) L = &l;
    if (!L)
      return user_error("inputs tensor '" + name + "' is for layer " + std::to_string(layer) +
                        ", but the checkpoint has " + std::to_string(info.layers.size()) +
                        " FFN layers");
    const st::TensorRef& t = *inputs.find(name);
    const auto& s = t.info->shape;
    if (s.size() < 2 || s.size() > 3 || s.back() != L->d_model)
      return user_error("inputs tensor '" + name + "' must be [tokens, " +
                        std::to_string(L->d_model) + "] or [batch, seq, " +
                        std::to_string(L->d_model) + "] (d_model of layer " +
                        std::to_string(layer) + ")");
    auto x = st::to_bf16(t);
    if (!x) return x.error();
    LayerInputs li;
    li.layer = layer;
    li.tokens = int64_t(x->size() / size_t(L->d_model));
    li.x = std::move(*x);
    out.push_back(std::move(li));
  }
  if (out.empty())
    return user_error("the inputs file holds no tensor named layers.<N>.input (found: " +
                      (unknown.empty() ? std::string("nothing")
                                       : unknown.front() + (unknown.size() > 1 ? ", ..." : "")) +
                      "); save each layer's FFN inputs as layers.N.input [tokens, d_model]");
  std::sort(out.begin(), out.end(),
            [](const LayerInputs& a, const LayerInputs& b) { return a.layer < b.layer; });
  return out;
}

namespace {
// Active neurons (gate > 0 or NaN, the TwELL rule) of each row, appended to `sets`.
void extract(const float* gate, int64_t tokens, int d_ff, profile::ActiveSets& sets) {
  std::vector<uint32_t> active;
  for (int64_t m = 0; m < tokens; ++m) {
    active.clear();
    for (int j = 0; j < d_ff; ++j)
      if (!(gate[size_t(m) * d_ff + j] <= 0.0f)) active.push_back(uint32_t(j));
    sets.add_token(active.data(), active.size());
  }
}
}  // namespace

Expected<ProfileRun> profile_checkpoint(const Checkpoint& ckpt,
                                        const std::vector<LayerInputs>& inputs,
                                        const ProfileOptions& opts, const GateFn& gate) {
  if (!(opts.held_out_fraction >= 0.0 && opts.held_out_fraction < 1.0))
    return user_error("held-out fraction " + std::to_string(opts.held_out_fraction) +
                      " must be in [0, 1)");
  if (opts.batch_tokens < 1) return user_error("batch_tokens must be >= 1");
  profile::Builder::Options bo;
  bo.tile_widths = opts.tile_widths;
  bo.keep_sample_tokens = opts.keep_sample_tokens;
  profile::Builder builder(bo);
  ProfileRun run;
  std::vector<float> g;
  for (const FfnLayer& L : ckpt.info().layers) {
    const LayerInputs* in = nullptr;
    for (const auto& i : inputs)
      if (i.layer == L.index) in = &i;
    if (!in) {
      run.layers_without_inputs.push_back(L.index);
      continue;
    }
    if (in->x.size() != size_t(in->tokens) * size_t(L.d_model))
      return user_error("inputs of layer " + std::to_string(L.index) +
                        " are not [tokens][d_model=" + std::to_string(L.d_model) + "]");
    auto w = ckpt.load_layer(L.index);
    if (!w) return w.error();
    const int64_t held = int64_t(std::floor(double(in->tokens) * opts.held_out_fraction));
    const int64_t fit = in->tokens - held;
    if (fit < 1)
      return user_error("layer " + std::to_string(L.index) +
                        " has no tokens left to profile after holding out");
    FFNJIT_TRY(builder.add_layer(L.index, L.d_model, L.d_ff, L.gated));
    profile::ActiveSets& held_sets = run.held_out[L.index];
    held_sets.d_ff = L.d_ff;
    for (int64_t m0 = 0; m0 < in->tokens; m0 += opts.batch_tokens) {
      // Batches never straddle the fit/held-out boundary.
      const int64_t end = std::min(
          in->tokens, m0 < fit ? std::min(fit, m0 + opts.batch_tokens) : m0 + opts.batch_tokens);
      const int64_t n = end - m0;
      g.assign(size_t(n) * L.d_ff, 0.0f);
      FFNJIT_TRY(gate(*w, in->x.data() + size_t(m0) * L.d_model, n, g.data()));
      if (m0 < fit)
        FFNJIT_TRY(builder.add_gate(L.index, g.data(), uint64_t(n)));
      else
        extract(g.data(), n, L.d_ff, held_sets);
      m0 = end - opts.batch_tokens;  // the loop adds batch_tokens back
    }
    run.fit[L.index] = *builder.sample(L.index);
    if (held > 0) {
      LayerInputs hx;
      hx.layer = L.index;
      hx.tokens = held;
      hx.x.assign(in->x.begin() + ptrdiff_t(size_t(fit) * L.d_model), in->x.end());
      run.held_out_x[L.index] = std::move(hx);
    }
  }
  if (run.fit.empty())
    return user_error("no layer of the checkpoint has inputs; nothing to profile");
  run.profile = builder.finish(ckpt.info().fingerprint, ckpt.info().model_type, opts.source);
  return run;
}

Status check_profile(const profile::Profile& p, const ModelInfo& info) {
  if (p.fingerprint != info.fingerprint)
    return user_error("the profile was measured on another checkpoint (fingerprint " +
                      p.fingerprint.substr(0, 12) + ", this one " + info.fingerprint.substr(0, 12) +
                      "); profile this checkpoint with `ffnjit profile`");
  for (const auto& l : p.layers) {
    const FfnLayer* L = nullptr;
    for (const auto& x : info.layers)
      if (x.index == l.index) L = &x;
    if (!L || L->d_model != l.d_model || L->d_ff != l.d_ff || L->gated != l.gated)
      return user_error("the profile's layer " + std::to_string(l.index) +
                        " does not match the checkpoint's; re-profile");
  }
  return {};
}

}  // namespace ffnjit::model
