// One fast-engine layer step on packed rows, op by op: where a sweep's time
// goes between the products and the passes around them. Not a test; build
// with `ninja -C build layer_ops` and run
//   build/layer_ops MODEL [dtype] [rows len t]...
// e.g. build/layer_ops models/SmolLM2-135M-Instruct.Q4_1.gguf bfloat16 1000 6 4
// (rows = restorations x S, len = live positions t..T-1, t = the restored token).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "model/cpu_kernels.h"
#include "model/model.h"
#include "util/error.h"
#include "util/memory.h"

namespace {

// Milliseconds per call, after one warm-up call.
template <class F>
double ms(F&& f, int n = 20) {
  f();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / n * 1e3;
}

void step(const kt::Model& m, at::ScalarType dt, int64_t R, int64_t len, int64_t t) {
  const kt::ModelConfig& c = m.config();
  const int64_t d = c.hidden, l = 1, I = c.intermediate, S = 10;
  const at::Tensor x = at::randn({R, len, d}).to(dt);
  const at::Tensor k0 = at::randn({S, c.n_kv_heads, t, c.head_dim}).to(dt), v0 = at::randn_like(k0);
  at::Tensor h, q, k, v, a, o, mid, h2, mo, gu;
  const double norm = ms([&] { h = m.attn_norm(l, x); });
  const double qkv = ms([&] { std::tie(q, k, v) = m.qkv(l, h, t); });
  // the corrupted run's S rows of keys / values before t, shared by the R rows
  const double attend = ms([&] { a = m.attend(l, q, k, v, t, {}, {k0, v0}); });
  const double out = ms([&] { o = m.attn_out(l, a); });
  const double add = ms([&] { mid = x + o; });
  const double norm2 = ms([&] { h2 = m.mlp_norm(l, mid); });
  const double mlp = ms([&] { mo = m.mlp(l, h2); });
  // The products alone, on weights of the same shapes.
  const int64_t qkv_n = (c.n_heads + 2 * c.n_kv_heads) * c.head_dim;
  // (bfloat16 on CPUs whose products run in float32: widened, as Model's)
  const at::ScalarType wt = dt == at::kBFloat16 && std::string(kt::bf16_gemm_backend()) == "fp32" ? at::kFloat : dt;
  const at::Tensor w_qkv = at::randn({qkv_n, d}).to(dt).to(wt), w_gu = at::randn({2 * I, d}).to(dt).to(wt),
                   w_down = at::randn({d, I}).to(dt).to(wt);
  const double g_qkv = ms([&] { kt::linear(h, w_qkv, {}); });
  const double g_gu = ms([&] { gu = kt::linear(h2, w_gu, {}); });
  // act*up is timed where the fused pass takes it (Model::mlp's path on
  // AVX-512 and AVX2 CPUs); elsewhere the down product gets a random input.
  at::Tensor au = kt::fused_act_mul(gu, I, c.act);
  const double act = au.defined() ? ms([&] { au = kt::fused_act_mul(gu, I, c.act); }) : -1;
  if (!au.defined()) au = at::randn({R, len, I}).to(dt);
  const double g_down = ms([&] { kt::linear(au, w_down, {}); });
  const double total = norm + qkv + attend + out + add + norm2 + mlp + add;
  const double tok = static_cast<double>(R * len);
  const double gemm_flops = 2.0 * tok * (d * qkv_n + c.n_heads * c.head_dim * d + 3.0 * d * I);
  std::printf("rows %lld x len %lld (t %lld): %.0f tokens, %.2f ms, %.0f GFLOP/s of products\n",
              static_cast<long long>(R), static_cast<long long>(len), static_cast<long long>(t), tok, total,
              gemm_flops / total / 1e6);
  std::printf("  attn_norm %.2f | qkv %.2f (its product %.2f, so rotary and views %.2f)\n", norm, qkv, g_qkv,
              qkv - g_qkv);
  std::printf("  attend %.2f | o-proj %.2f | residual adds 2 x %.2f | mlp_norm %.2f\n", attend, out, add, norm2);
  char act_ms[64] = "n/a (the fused pass declines here)";
  if (act >= 0) std::snprintf(act_ms, sizeof act_ms, "%.2f", act);
  std::printf("  mlp %.2f (gate-up product %.2f = %.0f GFLOP/s, act*up %s, down %.2f = %.0f GFLOP/s)\n", mlp, g_gu,
              4.0 * tok * d * I / g_gu / 1e6, act_ms, g_down, 2.0 * tok * d * I / g_down / 1e6);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2 || (argc > 3 && (argc - 3) % 3 != 0)) {
    std::fprintf(stderr, "usage: layer_ops MODEL [float32|bfloat16] [rows len t]...\n");
    return 2;
  }
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));  // as knowtrace does
  kt::keep_freed_memory();  // the heap settings knowtrace runs with
  c10::InferenceMode guard;
  kt::LoadOptions opts;
  opts.dtype = kt::parse_dtype(argc > 2 ? argv[2] : "bfloat16");
  const auto model = kt::Model::load(argv[1], opts);
  if (model->config().arch->mlp != kt::MlpKind::Gated)
    throw kt::Error(std::string(argv[1]) + ": layer_ops times a gated MLP (gate-up, act*up, down); this model's is not");
  std::printf("%s, %s, %d threads\n", argv[1], argc > 2 ? argv[2] : "bfloat16", at::get_num_threads());
  if (argc <= 3) {
    step(*model, opts.dtype, 1000, 6, 4);
    step(*model, opts.dtype, 2000, 3, 7);
    return 0;
  }
  for (int i = 3; i + 2 < argc; i += 3) {
    const int64_t rows = std::atoll(argv[i]), len = std::atoll(argv[i + 1]), t = std::atoll(argv[i + 2]);
    if (rows < 10 || rows % 10 != 0 || len < 1 || t < 0)
      throw kt::Error("rows len t = " + std::string(argv[i]) + " " + argv[i + 1] + " " + argv[i + 2] +
                      ": expected rows a positive multiple of S = 10, len >= 1, t >= 0");
    step(*model, opts.dtype, rows, len, t);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "layer_ops: %s\n", e.what());
  return 1;
}
