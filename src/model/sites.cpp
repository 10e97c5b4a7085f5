#include "model/sites.h"


#include "util/error.h"

namespace kt {

std::string site_name(const ModelConfig& cfg, const Site& s) {
  const ArchSpec& a = *cfg.arch;
  switch (s.kind) {
    case SiteKind::Embed: return a.embed_name;
    case SiteKind::ResidPre: return layer_template(a.layer_name, s.layer) + ".input";
    case SiteKind::Attn: return layer_template(a.attn_name, s.layer);
    case SiteKind::Mlp: return layer_template(a.mlp_name, s.layer);
    case SiteKind::ResidPost: return layer_template(a.layer_name, s.layer);
  }
  return "";
}

std::vector<Site> all_sites(const ModelConfig& cfg) {
  std::vector<Site> out{{SiteKind::Embed, 0}};
  for (int64_t l = 0; l < cfg.n_layers; ++l)
    for (SiteKind k : {SiteKind::ResidPre, SiteKind::Attn, SiteKind::Mlp, SiteKind::ResidPost}) out.push_back({k, l});
  return out;
}

Site parse_site_name(const ModelConfig& cfg, const std::string& name) {
  // Names are few (4 per layer): compare against each rather than parse.
  for (const Site& s : all_sites(cfg))
    if (site_name(cfg, s) == name) return s;
  const ArchSpec& a = *cfg.arch;
  throw Error("unknown site '" + name + "' for " + cfg.model_type + " (valid: " + a.embed_name + ", " +
              a.layer_name + ", " + a.layer_name + ".input, " + a.attn_name + ", " + a.mlp_name +
              " with [LAYER_NUM] in 0.." + std::to_string(cfg.n_layers - 1) + ")");
}

SiteHook SiteRecorder::hook() {
  return [this](const Site& s, at::Tensor& v) {
    if (!sites_.empty()) {
      bool wanted = false;
      for (const Site& w : sites_) wanted = wanted || w == s;
      if (!wanted) return;
    }
    values_.emplace_back(s, v.detach().clone());
  };
}

bool SiteRecorder::has(const Site& s) const {
  for (const auto& [k, v] : values_)
    if (k == s) return true;
  return false;
}

const at::Tensor& SiteRecorder::at_site(const Site& s) const {
  for (const auto& [k, v] : values_)
    if (k == s) return v;
  throw Error("site " + site_name(cfg_, s) + " was not recorded");
}

SiteHook patch_hook(std::vector<SitePatch> patches) {
  return [patches = std::move(patches)](const Site& s, at::Tensor& v) {
    for (const SitePatch& p : patches) {
      if (!(p.site == s)) continue;
      at::Tensor out = v.clone();
      auto opts = at::TensorOptions().dtype(at::kLong).device(v.device());
      at::Tensor rows = p.rows.empty() ? at::arange(v.size(0), opts)
                                       : at::tensor(p.rows, at::kLong).to(v.device());
      at::Tensor pos = p.positions.empty() ? at::arange(v.size(1), opts)
                                           : at::tensor(p.positions, at::kLong).to(v.device());
      // out[rows][:, pos] = value, through advanced indexing on a 2-D grid.
      at::Tensor r = rows.unsqueeze(1).expand({rows.size(0), pos.size(0)});
      at::Tensor t = pos.unsqueeze(0).expand({rows.size(0), pos.size(0)});
      at::Tensor val = p.value.to(v.device(), v.scalar_type()).expand({rows.size(0), pos.size(0), v.size(2)});
      out.index_put_({r, t}, val);
      v = out;
    }
  };
}

SiteHook chain_hooks(std::vector<SiteHook> hooks) {
  return [hooks = std::move(hooks)](const Site& s, at::Tensor& v) {
    for (const auto& h : hooks)
      if (h) h(s, v);
  };
}

}  // namespace kt
