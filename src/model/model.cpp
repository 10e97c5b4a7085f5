#include "model/model.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "model/cpu_attention.h"
#include "model/cpu_kernels.h"
#include "util/error.h"
#include "util/names.h"
#include "util/hf_cache.h"

namespace kt {
namespace fs = std::filesystem;

at::ScalarType parse_dtype(const std::string& s) {
  const std::string name = canonical_dtype(s);
  return name == "float32" ? at::kFloat : name == "bfloat16" ? at::kBFloat16 : at::kHalf;
}

at::Device parse_device(const std::string& s) {
  if (s == "cpu") return at::kCPU;
  if (s.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA()) throw Error("device '" + s + "' requested but this build of libtorch has no CUDA device available");
    try {
      return at::Device(s);
    } catch (const std::exception&) {
    }
  }
  throw Error("device '" + s + "' is not one of cpu, cuda, cuda:N");
}

std::unique_ptr<Model> load_gguf_model(const std::string& path, const LoadOptions& opts);  // model/gguf_model.cpp

std::unique_ptr<Model> Model::load(const std::string& path_or_id, const LoadOptions& opts) {
  c10::InferenceMode guard;
  const std::string path = resolve_model_path(path_or_id);  // a hub ID: its cached snapshot
  if (fs::is_regular_file(path)) {
    if (fs::path(path).extension() == ".gguf") return load_gguf_model(path, opts);
    throw Error(path + ": expected a Hugging Face checkpoint directory or a .gguf file");
  }
  const std::string cfg_path = (fs::path(path) / "config.json").string();
  if (!fs::exists(cfg_path)) throw Error(cfg_path + ": missing (expected a Hugging Face config.json)");
  ModelConfig cfg = parse_hf_config(cfg_path);
  auto tok = std::make_unique<Tokenizer>(Tokenizer::from_hf_dir(path));
  auto src = open_safetensors_source(path);
  Weights w = load_weights(cfg, *src, opts.dtype, opts.device);
  return std::make_unique<Model>(std::move(cfg), std::move(tok), std::move(w), opts, path);
}

namespace {

// ATen 1.13 gives its CPU bfloat16 products to oneDNN on x86 CPUs with
// AVX-512 BW, VL and DQ only.
bool bf16_gemm_in_fp32() {
  static const bool fp32 = [] {
    const char* e = std::getenv("KNOWTRACE_BF16_GEMM");
    const std::string v = e ? e : "";
    if (v == "fp32") return true;
    if (v == "native") return false;
    if (!v.empty()) throw Error("KNOWTRACE_BF16_GEMM=" + v + ": expected native or fp32");
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return !(__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq"));
#else
    return false;
#endif
  }();
  return fp32;
}

// Rotary inverse frequencies in float32, as transformers computes them.
at::Tensor inverse_frequencies(int64_t rd, double theta, const RopeScaling& rs) {
  at::Tensor exponent = at::arange(0, rd, 2, at::kLong).to(at::kFloat) / static_cast<float>(rd);
  at::Tensor inv = 1.0 / at::pow(at::scalar_tensor(theta, at::kFloat), exponent);
  if (rs.type == "linear") {
    inv = inv / rs.factor;
  } else if (rs.type == "llama3") {
    const double old_ctx = static_cast<double>(rs.original_max_positions);
    const double low_wavelen = old_ctx / rs.low_freq_factor, high_wavelen = old_ctx / rs.high_freq_factor;
    at::Tensor wavelen = 2 * M_PI / inv;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv / rs.factor, inv);
    at::Tensor smooth = (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    at::Tensor medium = at::logical_not(wavelen < high_wavelen) * at::logical_not(wavelen > low_wavelen);
    inv = at::where(medium, smoothed, scaled);
  }
  return inv;
}

}  // namespace

Model::Model(ModelConfig cfg, std::unique_ptr<Tokenizer> tok, Weights w, LoadOptions opts, std::string path)
    : cfg_(std::move(cfg)), tok_(std::move(tok)), w_(std::move(w)), opts_(opts), path_(std::move(path)) {
  (void)fp32_gemm_backend();  // the threads of the fp32 products settled before any work
  bound_onednn_primitive_cache();
  const bool bf16_in_fp32 = bf16_gemm_in_fp32();  // read (and KNOWTRACE_BF16_GEMM checked) on every load
  if (opts_.dtype == at::kBFloat16 && opts_.device.is_cpu() && bf16_in_fp32) widen_projections(w_);
  if (cfg_.arch->rope == RopeStyle::None || cfg_.rotary_dim == 0) return;
  at::Tensor inv = inverse_frequencies(cfg_.rotary_dim, cfg_.rope_theta, cfg_.rope_scaling);
  // llama.cpp's rope_freqs (Llama-3.1 GGUF): the llama3 scaling as divisors.
  if (w_.rope_factors.defined()) inv = inv / w_.rope_factors.to(at::kFloat).cpu();
  const RopeScaling& rs = cfg_.rope_scaling;
  if (rs.type == "longrope") {  // Phi-3: divisors for short prompts here, for long ones below
    long_inv_freq_ = (inv / at::tensor(rs.long_factor, at::kDouble).to(at::kFloat)).to(opts_.device);
    inv = inv / at::tensor(rs.short_factor, at::kDouble).to(at::kFloat);
  }
  inv_freq_ = inv.to(opts_.device);
  // gemma3: sliding-window layers rotate with their own base, unscaled.
  if (cfg_.local_rope_theta > 0)
    local_inv_freq_ = inverse_frequencies(cfg_.rotary_dim, cfg_.local_rope_theta, RopeScaling{}).to(opts_.device);
}

std::pair<at::Tensor, at::Tensor> Model::rotary_tables(int64_t layer, int64_t T) const {
  at::Tensor pos = at::arange(T, at::TensorOptions().dtype(at::kFloat).device(opts_.device));
  // T is the whole run's length in every call (pos0 + tokens or more): longrope
  // switches to its long factors beyond the original context, as
  // transformers does per forward pass.
  const at::Tensor& inv = local_inv_freq_.defined() && cfg_.is_sliding(layer)                   ? local_inv_freq_
                          : long_inv_freq_.defined() && T > cfg_.rope_scaling.original_max_positions ? long_inv_freq_
                                                                                                     : inv_freq_;
  at::Tensor freqs = at::outer(pos, inv);  // [T, rd/2]
  at::Tensor emb = cfg_.arch->rope == RopeStyle::Interleaved ? freqs.repeat_interleave(2, -1)
                                                             : at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos(), sin = emb.sin();
  if (cfg_.rope_scaling.attention_factor != 1.0) cos = cos * cfg_.rope_scaling.attention_factor, sin = sin * cfg_.rope_scaling.attention_factor;
  return {cos.to(opts_.dtype), sin.to(opts_.dtype)};
}

#if defined(KT_HAVE_DNNL_SGEMM)
// oneDNN's BLAS-like C entry point (dnnl.h; the header is not always
// installed with the library libtorch links): row-major C = alpha op(A) op(B) + beta C.
extern "C" int dnnl_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
#endif

namespace {

// KNOWTRACE_FP32_GEMM: "onednn" (oneDNN's sgemm; the default when built
// with it), "blas" (at::linear: libtorch's BLAS; the default otherwise) or "split" (the rows split
// over ATen's OpenMP threads, each a single-threaded BLAS call, so one
// thread pool runs everything instead of BLAS's own competing with ATen's).
enum class Fp32Gemm { Blas, OneDnn, Split };

// OpenBLAS single-threaded from here on (others keep theirs): when ATen's
// OpenMP pool runs the products, a second pool of BLAS threads only
// competes with it for the cores (batched_matmul splits the attention's
// small products over ATen's threads instead).
void single_threaded_blas() {
  using SetThreads = void (*)(int);
  if (auto f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(1);
}

Fp32Gemm fp32_gemm_mode() {
  static const Fp32Gemm mode = [] {
    const char* e = std::getenv("KNOWTRACE_FP32_GEMM");
    const std::string v = e ? e : "";
    Fp32Gemm m = v == "split" ? Fp32Gemm::Split : Fp32Gemm::Blas;
#if defined(KT_HAVE_DNNL_SGEMM)
    if (v != "blas" && v != "split") m = Fp32Gemm::OneDnn;  // the default when built with oneDNN
#endif
    if (m == Fp32Gemm::Split || (m == Fp32Gemm::OneDnn && !std::getenv("OPENBLAS_NUM_THREADS"))) single_threaded_blas();
    return m;
  }();
  return mode;
}

bool use_onednn_fp32() { return fp32_gemm_mode() == Fp32Gemm::OneDnn; }

}  // namespace

const char* bf16_gemm_backend() { return bf16_gemm_in_fp32() ? "fp32" : "native"; }

const char* fp32_gemm_backend() {
  switch (fp32_gemm_mode()) {
    case Fp32Gemm::OneDnn: return "onednn";
    case Fp32Gemm::Split: return "split";
    default: return "blas";
  }
}

// oneDNN (ATen's bf16 / fp16 CPU products) caches up to 1024 primitives,
// each holding a scratchpad sized by its rows. The fast engine's sweeps
// have many row counts, so the cache grew the heap to 5 GB on SmolLM2
// (1.4-2.2 GB bounded, and 25 % faster: first-touch page faults;
// docs/PERFORMANCE.md). 16 still holds the reference engine's few shapes.
// ONEDNN_PRIMITIVE_CACHE_CAPACITY, when set, wins.
void bound_onednn_primitive_cache() {
  static const bool done = [] {
    if (std::getenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY") || std::getenv("DNNL_PRIMITIVE_CACHE_CAPACITY")) return false;
    using SetCapacity = int (*)(int);
    if (auto f = reinterpret_cast<SetCapacity>(dlsym(RTLD_DEFAULT, "dnnl_set_primitive_cache_capacity")))
      return f(kOneDnnPrimitiveCache) == 0;
    // a oneDNN inside libtorch (pip's torch): it reads the variable when first used
    return setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", std::to_string(kOneDnnPrimitiveCache).c_str(), 0) == 0;
  }();
  (void)done;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  // A bfloat16 input and a widened (float32) matrix: the product in float32,
  // rounded once to bfloat16.
  if (x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kFloat && x.device().is_cpu())
    return linear(x.to(at::kFloat), w, b.defined() ? b.to(at::kFloat) : b).to(at::kBFloat16);
#if defined(KT_HAVE_DNNL_SGEMM)
  // fp32 on the CPU: oneDNN's sgemm (JIT AVX-512 kernels, threaded by the
  // same OpenMP pool as ATen) instead of libtorch's BLAS, whose own thread
  // pool competes with ATen's for the cores.
  if (use_onednn_fp32() && x.device().is_cpu() && x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
      w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1) && x.numel() > 0 && w.numel() > 0) {
    const int64_t K = w.size(1), N = w.size(0);
    const at::Tensor wc = w.contiguous();
    const at::Tensor x2 = x.reshape({-1, K}).contiguous();
    const int64_t M = x2.size(0);
    at::Tensor y;
    float beta = 0.f;
    if (b.defined()) {
      // a fresh buffer: expand(...).contiguous() of a one-row output would
      // be the bias tensor itself, and sgemm writes into it
      y = at::empty({M, N}, x2.options());
      y.copy_(b.expand({M, N}));
      beta = 1.f;
    } else {
      y = at::empty({M, N}, x2.options());
    }
    const int st = dnnl_sgemm('N', 'T', M, N, K, 1.f, x2.data_ptr<float>(), K, wc.data_ptr<float>(), K, beta,
                              y.data_ptr<float>(), N);
    if (st != 0) throw Error("oneDNN sgemm failed (status " + std::to_string(st) + ")");
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = N;
    return y.view(shape);
  }
#endif
  if (fp32_gemm_mode() == Fp32Gemm::Split && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
      w.scalar_type() == at::kFloat && w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1)) {
    const int64_t K = w.size(1), N = w.size(0);
    const at::Tensor x2 = x.reshape({-1, K}).contiguous();
    const int64_t M = x2.size(0);
    const at::Tensor wt = w.t();
    at::Tensor y = at::empty({M, N}, x2.options());
    const int64_t grain = std::max<int64_t>(64, (M + at::get_num_threads() - 1) / at::get_num_threads());
    at::parallel_for(0, M, grain, [&](int64_t lo, int64_t hi) {
      c10::InferenceMode guard;  // thread-local: the worker threads' own
      at::Tensor out = y.narrow(0, lo, hi - lo);
      if (b.defined())
        at::addmm_out(out, b, x2.narrow(0, lo, hi - lo), wt);
      else
        at::mm_out(out, x2.narrow(0, lo, hi - lo), wt);
    });
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = N;
    return y.view(shape);
  }
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

namespace {

// The fused pass where it applies, else rotary_ops.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, RopeStyle style) {
  at::Tensor fused = fused_rotary(x, cos, sin, style == RopeStyle::Interleaved);
  return fused.defined() ? fused : rotary_ops(x, cos, sin, style);
}

// a [B, h, M, K] @ b [B, h, K, N]. On the CPU ATen runs the B x h small
// products of a batched matmul one after another; here the batch is split
// over ATen's threads, each running its slice.
at::Tensor batched_matmul(const at::Tensor& a, const at::Tensor& b) {
  const int64_t B = a.size(0);
  if (!a.device().is_cpu() || B < 2 || b.size(0) != B || at::get_num_threads() < 2 || at::in_parallel_region())
    return at::matmul(a, b);
  at::Tensor out = at::empty({B, a.size(1), a.size(2), b.size(3)}, a.options());
  at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    c10::InferenceMode guard;  // thread-local: the worker threads' own
    at::Tensor slice = out.narrow(0, lo, hi - lo);
    at::matmul_out(slice, a.narrow(0, lo, hi - lo), b.narrow(0, lo, hi - lo));
  });
  return out;
}

at::Tensor activate(const at::Tensor& x, Act a) {
  switch (a) {
    case Act::SiLU: return at::silu(x);
    case Act::Gelu: return at::gelu(x);
    case Act::GeluTanh: return at::gelu(x, "tanh");
    case Act::Relu: return at::relu(x);
  }
  return x;
}

}  // namespace

at::Tensor rotary_ops(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, RopeStyle style) {
  const int64_t rd = cos.size(-1), half = rd / 2;
  at::Tensor rot = x.narrow(-1, 0, rd), partner, signed_sin;
  if (style == RopeStyle::Half) {
    partner = at::cat({rot.narrow(-1, half, half), rot.narrow(-1, 0, half)}, -1);
    signed_sin = at::cat({-sin.narrow(-1, 0, half), sin.narrow(-1, half, half)}, -1);
  } else {  // interleaved pairs (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)
    std::vector<int64_t> pairs(rot.sizes().begin(), rot.sizes().end());
    pairs.back() = half, pairs.push_back(2);
    partner = rot.reshape(pairs).flip(-1).flatten(-2);
    signed_sin = sin * at::tensor({-1.0f, 1.0f}, sin.options().dtype(at::kFloat)).to(sin.scalar_type()).repeat(half);
  }
  at::Tensor out = at::addcmul(rot * cos, partner, signed_sin);
  if (rd == x.size(-1)) return out;
  return at::cat({out, x.narrow(-1, rd, x.size(-1) - rd)}, -1);
}

at::Tensor attend_ops(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& blocked,
                      const AttendShape& s) {
  const int64_t B = q.size(0), nh = q.size(1), Tq = q.size(2), hd = q.size(3), nkv = k.size(1), Tk = k.size(2);
  const int64_t g = nh / nkv;
  // Scores and softmax in float32 (GPT-J and GPT-NeoX upcast; llama's
  // softmax is float32 too), probabilities back in the compute dtype. The
  // g query heads sharing a kv head are one product with it, [g x Tq, hd]
  // by [hd, Tk], so k and v are never repeated.
  at::Tensor scores =
      batched_matmul(q.to(at::kFloat).reshape({B, nkv, g * Tq, hd}), k.to(at::kFloat).transpose(-1, -2));
  scores = scores.mul_(s.scale).view({B, nh, Tq, Tk});
  if (s.softcap > 0) scores = at::tanh(scores / s.softcap) * s.softcap;
  // Query i sits at position q_pos0 + i and may see keys 0 .. q_pos0 + i
  // (in a sliding-window layer only the last `window` of them).
  auto opts = at::TensorOptions().dtype(at::kLong).device(q.device());
  at::Tensor qpos = at::arange(s.q_pos0, s.q_pos0 + Tq, opts).unsqueeze(1);
  at::Tensor kpos = at::arange(Tk, opts).unsqueeze(0);
  at::Tensor hidden = kpos > qpos;
  if (s.window > 0) hidden = at::logical_or(hidden, kpos <= qpos - s.window);
  if (blocked.defined()) hidden = at::logical_or(hidden, blocked);
  scores.masked_fill_(hidden, -std::numeric_limits<float>::infinity());
  at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type()).view({B, nkv, g * Tq, Tk});
  // bf16 / fp16 on the CPU: the rounded probabilities times v in float32,
  // rounded once (a bf16 GEMM's float32 accumulation), through BLAS rather
  // than one oneDNN primitive per shape (a sweep has many).
  const bool widen = v.scalar_type() != at::kFloat && v.device().is_cpu();
  const at::Tensor out = widen ? batched_matmul(probs.to(at::kFloat), v.to(at::kFloat)).to(v.scalar_type())
                               : batched_matmul(probs, v);
  return out.view({B, nh, Tq, hd}).transpose(1, 2).reshape({B, Tq, nh * hd});
}

at::Tensor Model::norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const {
  if (!w.defined()) return x;  // the architecture has no norm here
  if (cfg_.arch->norm == NormKind::LayerNorm) return at::layer_norm(x, {w.size(0)}, w, b, cfg_.norm_eps);
  // RMSNorm in float32, scaled in the compute dtype (as transformers does);
  // on the CPU one fused pass when it can.
  if (at::Tensor y = fused_rms_norm(x, w, cfg_.norm_eps); y.defined()) return y;
  const at::Tensor xf = x.to(at::kFloat);
  at::Tensor y = (xf * at::rsqrt(xf.square().mean(-1, /*keepdim=*/true).add_(cfg_.norm_eps))).to(x.scalar_type());
  return y.mul_(w);
}

namespace {

// Gemma's sqrt(hidden), rounded to the compute dtype as transformers does.
at::Tensor embedding_scale(const at::Tensor& x, int64_t hidden) {
  return x * at::scalar_tensor(std::sqrt(static_cast<double>(hidden)), x.options());
}

}  // namespace

at::Tensor Model::input_embeddings(const at::Tensor& x) const {
  if (!cfg_.arch->learned_positions) return x;
  return x + w_.pos_embed.narrow(0, 0, x.size(1)).unsqueeze(0);
}

at::Tensor Model::attn_norm(int64_t l, const at::Tensor& x) const {
  return norm(x, w_.layers[l].attn_norm_w, w_.layers[l].attn_norm_b);
}

at::Tensor Model::mlp_norm(int64_t l, const at::Tensor& x) const {
  if (cfg_.arch->shared_block_norm) return attn_norm(l, x);
  return norm(x, w_.layers[l].mlp_norm_w, w_.layers[l].mlp_norm_b);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> Model::qkv(int64_t l, const at::Tensor& h, int64_t pos0,
                                                          int64_t run_tokens) const {
  const LayerWeights& L = w_.layers[l];
  const int64_t B = h.size(0), T = h.size(1), nh = cfg_.n_heads, nkv = cfg_.n_kv_heads, hd = cfg_.head_dim;
  const at::Tensor qkv = linear(h, L.qkv_w, L.qkv_b);  // one product, then the q / k / v columns
  at::Tensor q = qkv.narrow(-1, 0, nh * hd), k = qkv.narrow(-1, nh * hd, nkv * hd);
  if (cfg_.arch->qk_norm == QkNorm::Full) q = norm(q, L.q_norm_w, {}), k = norm(k, L.k_norm_w, {});
  q = q.view({B, T, nh, hd}), k = k.view({B, T, nkv, hd});
  if (cfg_.arch->qk_norm == QkNorm::PerHead) q = norm(q, L.q_norm_w, {}), k = norm(k, L.k_norm_w, {});
  q = q.transpose(1, 2), k = k.transpose(1, 2);
  at::Tensor v = qkv.narrow(-1, (nh + nkv) * hd, nkv * hd).view({B, T, nkv, hd}).transpose(1, 2);
  if (inv_freq_.defined()) {
    auto [cos, sin] = rotary_tables(l, run_tokens < 0 ? pos0 + T : run_tokens);
    cos = cos.narrow(0, pos0, T), sin = sin.narrow(0, pos0, T);
    q = apply_rotary(q, cos, sin, cfg_.arch->rope);
    k = apply_rotary(k, cos, sin, cfg_.arch->rope);
  }
  return {q, k, v};
}

at::Tensor Model::attend(int64_t l, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         int64_t q_pos0, const at::Tensor& blocked, const KvPrefix& prefix) const {
  const double scale = cfg_.attn_scale > 0 ? cfg_.attn_scale : 1.0 / std::sqrt(double(cfg_.head_dim));
  const AttendShape shape{scale, cfg_.attn_softcap, q_pos0, cfg_.is_sliding(l) ? cfg_.sliding_window : 0};
  at::Tensor fused = fused_attend(q, k, v, blocked, shape, prefix);  // one pass per row on the CPU, where it can
  if (fused.defined()) return fused;
  if (!prefix.k.defined()) return attend_ops(q, k, v, blocked, shape);
  const int64_t reps = k.size(0) / prefix.k.size(0);  // each row's keys in full, as the ops take them
  return attend_ops(q, at::cat({prefix.k.repeat({reps, 1, 1, 1}), k}, 2), at::cat({prefix.v.repeat({reps, 1, 1, 1}), v}, 2),
                    blocked, shape);
}

at::Tensor Model::attn_out(int64_t l, const at::Tensor& o) const {
  return linear(o, w_.layers[l].o_w, w_.layers[l].o_b);
}

at::Tensor Model::mlp(int64_t l, const at::Tensor& h) const {
  const LayerWeights& L = w_.layers[l];
  if (cfg_.arch->mlp == MlpKind::Gated) {  // gate and up as one product
    const at::Tensor gu = linear(h, L.gate_up_w, L.gate_up_b);
    const int64_t I = cfg_.intermediate;
    at::Tensor act_up = fused_act_mul(gu, I, cfg_.act);  // one pass on the CPU when it can
    if (!act_up.defined()) act_up = activate(gu.narrow(-1, 0, I), cfg_.act).mul_(gu.narrow(-1, I, I));
    return linear(act_up, L.down_w, L.down_b);
  }
  return linear(activate(linear(h, L.up_w, L.up_b), cfg_.act), L.down_w, L.down_b);
}

at::Tensor Model::block(int64_t l, const at::Tensor& x, const BlockAttention& attention, const SiteEdit& at_attn,
                        const SiteEdit& at_mlp) const {
  const LayerWeights& L = w_.layers[l];
  at::Tensor h1 = attn_norm(l, x);
  at::Tensor a = attention(h1);
  if (at_attn) at_attn(a);
  if (cfg_.parallel_block) {  // gptj, gpt_neox: both read the block input
    at::Tensor m = mlp(l, cfg_.arch->shared_block_norm ? h1 : mlp_norm(l, x));
    if (at_mlp) at_mlp(m);
    return x + a + m;
  }
  // Sequential, with the post-norms of gemma2/3 and olmo2 where present.
  at::Tensor mid = x + norm(a, L.attn_post_norm_w, {});
  at::Tensor m = mlp(l, mlp_norm(l, mid));
  if (at_mlp) at_mlp(m);
  return mid + norm(m, L.mlp_post_norm_w, {});
}

at::Tensor Model::logits(const at::Tensor& x) const {
  at::Tensor out = linear(norm(x, w_.final_norm_w, w_.final_norm_b), w_.lm_head_w, w_.lm_head_b).to(at::kFloat);
  if (cfg_.final_softcap > 0) out = at::tanh(out / cfg_.final_softcap) * cfg_.final_softcap;
  return out;
}

at::Tensor Model::embed(const at::Tensor& ids) const {
  c10::InferenceMode guard;
  at::Tensor x = at::embedding(w_.embed, ids.to(opts_.device, at::kLong));
  if (cfg_.arch->scaled_embedding) x = embedding_scale(x, cfg_.hidden);
  return x;
}

at::Tensor Model::forward(const at::Tensor& ids, const SiteHook& hook, bool last_only,
                          const AttentionBlock& blocked) const {
  if (last_only) return forward_tail(ids, 1, hook, blocked).select(1, 0);
  return forward_tail(ids, ids.dim() == 2 ? ids.size(1) : 0, hook, blocked);
}

at::Tensor Model::forward_tail(const at::Tensor& ids_in, int64_t n, const SiteHook& hook,
                               const AttentionBlock& blocked) const {
  c10::InferenceMode guard;
  if (ids_in.dim() != 2) throw Error("forward: ids must be [batch, tokens]");
  const int64_t T = ids_in.size(1);
  if (T == 0) throw Error("forward: empty input (no tokens)");
  if (n < 1 || n > T) throw Error("forward: " + std::to_string(n) + " scored positions of " + std::to_string(T));
  if (T > cfg_.max_positions)
    throw Error("input has " + std::to_string(T) + " tokens, more than the model's context of " +
                std::to_string(cfg_.max_positions));
  auto at_site = [&](SiteKind k, int64_t l, at::Tensor& v) {
    if (hook) hook(Site{k, l}, v);
  };

  at::Tensor x = embed(ids_in);
  at_site(SiteKind::Embed, 0, x);
  x = input_embeddings(x);

  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    at_site(SiteKind::ResidPre, l, x);
    x = block(
        l, x,
        [&](const at::Tensor& h) {
          auto [q, k, v] = qkv(l, h, 0);
          return attn_out(l, attend(l, q, k, v, 0, blocked ? blocked(l) : at::Tensor()));
        },
        [&](at::Tensor& a) { at_site(SiteKind::Attn, l, a); }, [&](at::Tensor& m) { at_site(SiteKind::Mlp, l, m); });
    at_site(SiteKind::ResidPost, l, x);
  }
  if (n < T) x = x.narrow(1, T - n, n);
  return logits(x);
}

}  // namespace kt
