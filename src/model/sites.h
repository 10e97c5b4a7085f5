// Named sites of the decoder forward pass and the hooks that read or
// replace them.
//
// Every site is a [batch, tokens, hidden] tensor. Its name is the Hugging
// Face module whose output it is (model.layers.3.mlp, transformer.h.3, ...),
// so configs written for transformers hooks work unchanged. The input of a
// block, which no HF module outputs, is named "<block>.input".
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "model/config.h"

namespace kt {

enum class SiteKind {
  Embed,      // token embedding (before learned positions are added)
  ResidPre,   // input of block l
  Attn,       // attention output of block l (after the output projection)
  Mlp,        // MLP output of block l
  ResidPost,  // output of block l = input of block l+1
};

struct Site {
  SiteKind kind;
  int64_t layer = 0;  // ignored for Embed
  bool operator==(const Site& o) const { return kind == o.kind && (kind == SiteKind::Embed || layer == o.layer); }
};

std::string site_name(const ModelConfig& cfg, const Site& site);
// Every site of the model in forward order.
std::vector<Site> all_sites(const ModelConfig& cfg);
// Parses a site name; throws kt::Error listing the valid name patterns.
Site parse_site_name(const ModelConfig& cfg, const std::string& name);

// Called at every site with the value the forward pass is about to use.
// A hook may read it or assign a new tensor of the same shape to it.
using SiteHook = std::function<void(const Site&, at::Tensor& value)>;

// Records chosen sites (all when `sites` is empty); values are detached
// copies keyed by site name.
class SiteRecorder {
 public:
  SiteRecorder(const ModelConfig& cfg, std::vector<Site> sites = {}) : cfg_(cfg), sites_(std::move(sites)) {}
  SiteHook hook();
  const at::Tensor& at_site(const Site& s) const;
  bool has(const Site& s) const;

 private:
  const ModelConfig& cfg_;
  std::vector<Site> sites_;
  std::vector<std::pair<Site, at::Tensor>> values_;
};

// Overwrites a site for chosen batch rows and token positions with given
// values ([rows, positions, hidden], or broadcastable to it).
struct SitePatch {
  Site site;
  std::vector<int64_t> rows;       // empty: every row
  std::vector<int64_t> positions;  // empty: every position
  at::Tensor value;
};
SiteHook patch_hook(std::vector<SitePatch> patches);

// Runs several hooks one after the other at each site.
SiteHook chain_hooks(std::vector<SiteHook> hooks);

}  // namespace kt
