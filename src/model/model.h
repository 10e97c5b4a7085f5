// A loaded decoder-only language model: config, tokenizer, weights, and
// the forward pass with named sites (see sites.h).
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <tuple>

#include "model/config.h"
#include "model/cpu_attention.h"
#include "model/sites.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace kt {

struct LoadOptions {
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
};

// "float32" | "bfloat16" | "float16" (also fp32/bf16/fp16); kt::Error otherwise.
at::ScalarType parse_dtype(const std::string& s);
// "cpu" | "cuda" | "cuda:N"; kt::Error otherwise or when CUDA is unavailable.
at::Device parse_device(const std::string& s);

// The dense layer of every projection: x @ w^T (+ b). float32 on the CPU
// goes through oneDNN's sgemm when the build found libdnnl (the library
// libtorch links; faster than Debian libtorch's OpenBLAS here, see
// docs/PERFORMANCE.md); KNOWTRACE_FP32_GEMM=blas
// selects libtorch's own BLAS instead. Everything else is at::linear.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {});
// The attention and rotary embedding as ATen ops, on every device: what
// Model runs where the one-pass CPU versions (cpu_attention.h,
// cpu_kernels.h) decline, and what their tests compare them with.
// attend_ops: q [B, nh, Tq, hd], k / v [B, nkv, Tk, hd] -> [B, Tq, nh * hd].
at::Tensor attend_ops(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& blocked,
                      const AttendShape& shape);
// rotary_ops: x [B, heads, T, head_dim]; rotates the first rotary_dim
// (cos.size(-1)) dims: each pair (x_i, x_j) becomes (x_i cos - x_j sin,
// x_j cos + x_i sin), pairs being the two halves (Half) or neighbours
// (Interleaved). Computed as x cos + partner(x) (sign sin) by addcmul.
at::Tensor rotary_ops(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, RopeStyle style);
// "onednn", "blas" or "split": which path runs the float32 CPU products.
const char* fp32_gemm_backend();
// How bfloat16 products run on the CPU: "native" (at::linear in bfloat16:
// oneDNN on the AVX-512 CPUs libtorch 1.13 gives it to, ATen's own loop
// elsewhere: ~5 GFLOP/s on a Zen 3) or "fp32" (Model keeps its projection
// matrices as float32 holding the same bfloat16 values; linear() multiplies
// in float32 and rounds once, as a bfloat16 GEMM with float32 sums does).
// KNOWTRACE_BF16_GEMM=native|fp32 picks; by default fp32 on x86 CPUs
// without AVX-512 (BW, VL, DQ).
const char* bf16_gemm_backend();
// Primitives oneDNN keeps cached from the first model load on (unless
// ONEDNN_PRIMITIVE_CACHE_CAPACITY says otherwise).
constexpr int kOneDnnPrimitiveCache = 16;
void bound_onednn_primitive_cache();

// Attention edges a caller removes at a layer (attention knockout): a bool
// mask broadcastable to [batch, heads, Tq, Tk], true where the query must
// not see the key, or an undefined tensor for none.
using AttentionBlock = std::function<at::Tensor(int64_t layer)>;

class Model {
 public:
  // `path`: a Hugging Face checkpoint directory, a .gguf file, or a hub ID
  // ("org/name") found in the local Hugging Face cache (util/hf_cache.h).
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& opts = {});

  const ModelConfig& config() const { return cfg_; }
  const Tokenizer& tokenizer() const { return *tok_; }
  const std::string& path() const { return path_; }
  at::ScalarType dtype() const { return opts_.dtype; }
  at::Device device() const { return opts_.device; }

  // ids: [batch, tokens] int64 (equal-length rows, no padding). Returns
  // float32 logits [batch, tokens, vocab], or [batch, vocab] for the last
  // position only. `hook` sees every site in forward order; `blocked`
  // removes attention edges layer by layer.
  at::Tensor forward(const at::Tensor& ids, const SiteHook& hook = nullptr, bool last_only = false,
                     const AttentionBlock& blocked = nullptr) const;
  // Logits [batch, n, vocab] of the last n positions only.
  at::Tensor forward_tail(const at::Tensor& ids, int64_t n, const SiteHook& hook = nullptr,
                          const AttentionBlock& blocked = nullptr) const;

  // Token embeddings [batch, tokens, hidden] in the compute dtype: the
  // embedding site's value (gemma3's embedding module already scales them).
  at::Tensor embed(const at::Tensor& ids) const;

  Model(ModelConfig cfg, std::unique_ptr<Tokenizer> tok, Weights w, LoadOptions opts, std::string path);

  // ---- The pieces of one block, for engines that schedule the forward
  // themselves (the fast tracer). forward() is built from the same calls.
  at::Tensor input_embeddings(const at::Tensor& token_embeddings) const;  // + learned positions (gpt2)
  at::Tensor attn_norm(int64_t layer, const at::Tensor& x) const;
  at::Tensor mlp_norm(int64_t layer, const at::Tensor& x) const;  // the block's second norm (gptj: its only one)
  // q [B, heads, T, hd] and k, v [B, kv_heads, T, hd] of the normed input,
  // rotated for absolute positions pos0 .. pos0 + T - 1 of a run of
  // run_tokens tokens (-1: pos0 + T; longrope picks its factors by it).
  std::tuple<at::Tensor, at::Tensor, at::Tensor> qkv(int64_t layer, const at::Tensor& h, int64_t pos0,
                                                     int64_t run_tokens = -1) const;
  // Causal attention of queries at positions q_pos0.. over keys at 0..Tk-1
  // (the layer's sliding window, scaling and soft-capping applied; then
  // the edges `blocked` is true for are removed as well); with a prefix,
  // row b's keys are prefix row b % P's, then its own (cpu_attention.h);
  // returns [B, Tq, heads * hd] before the output projection.
  at::Tensor attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    int64_t q_pos0, const at::Tensor& blocked = {}, const KvPrefix& prefix = {}) const;
  at::Tensor attn_out(int64_t layer, const at::Tensor& o) const;  // output projection
  at::Tensor mlp(int64_t layer, const at::Tensor& h) const;
  at::Tensor logits(const at::Tensor& x) const;  // final norm + head (+ soft-capping), float32

  // One block, its residual wiring written once (sequential, parallel, or
  // with gemma2/olmo2 post-norms) for forward() and the fast engine alike.
  // `attention` maps the block's normed input to the attention output (the
  // Attn site: o_proj's output, before any post-norm); `at_attn` / `at_mlp`
  // see and may replace the Attn / Mlp site values before they join the
  // residual. Works on any leading shape ([B, T, d] or packed [N, d]).
  using BlockAttention = std::function<at::Tensor(const at::Tensor& normed)>;
  using SiteEdit = std::function<void(at::Tensor&)>;
  at::Tensor block(int64_t layer, const at::Tensor& x, const BlockAttention& attention, const SiteEdit& at_attn,
                   const SiteEdit& at_mlp) const;

 private:
  at::Tensor norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const;
  // cos/sin tables [tokens, rotary_dim] of a layer for positions 0..T-1.
  std::pair<at::Tensor, at::Tensor> rotary_tables(int64_t layer, int64_t T) const;

  ModelConfig cfg_;
  std::unique_ptr<Tokenizer> tok_;
  Weights w_;
  LoadOptions opts_;
  std::string path_;
  at::Tensor inv_freq_;        // float32 [rotary_dim / 2]
  at::Tensor local_inv_freq_;  // gemma3's sliding-window layers, or undefined
  at::Tensor long_inv_freq_;   // longrope beyond the original context, or undefined
};

}  // namespace kt
