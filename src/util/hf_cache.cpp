#include "util/hf_cache.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "util/error.h"
#include "util/paths.h"

namespace kt {

namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::string();
}

}  // namespace

bool looks_like_hub_id(const std::string& text) {
  if (text.empty() || text[0] == '/' || text[0] == '.' || text[0] == '~') return false;
  const std::string id = text.substr(0, text.find('@'));
  const size_t slash = id.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= id.size() || id.find('/', slash + 1) != std::string::npos)
    return false;
  if (id.size() > 5 && id.compare(id.size() - 5, 5, ".gguf") == 0) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) return false;
  return true;
}

std::vector<std::string> hf_cache_dirs() {
  std::vector<std::string> dirs;
  if (const std::string c = env("HF_HUB_CACHE"); !c.empty()) dirs.push_back(c);
  if (const std::string h = env("HF_HOME"); !h.empty()) dirs.push_back((fs::path(h) / "hub").string());
  const std::string xdg = env("XDG_CACHE_HOME");
  if (!xdg.empty()) dirs.push_back((fs::path(xdg) / "huggingface" / "hub").string());
  if (const std::string home = env("HOME"); !home.empty())
    dirs.push_back((fs::path(home) / ".cache" / "huggingface" / "hub").string());
  return dirs;
}

std::optional<std::string> find_in_hf_cache(const std::string& hub_id) {
  const size_t at = hub_id.find('@');
  const std::string id = hub_id.substr(0, at);
  const std::string revision = at == std::string::npos ? "main" : hub_id.substr(at + 1);
  std::string folder = "models--" + id;
  folder.replace(folder.find('/'), 1, "--");
  for (const std::string& dir : hf_cache_dirs()) {
    const fs::path repo = fs::path(dir) / folder;
    if (!fs::is_directory(repo)) continue;
    // refs/<revision> holds the snapshot hash; a revision may also be the hash itself.
    std::string hash = revision;
    const fs::path ref = repo / "refs" / revision;
    if (fs::is_regular_file(ref)) {
      hash = read_text_file(ref.string());
      while (!hash.empty() && (hash.back() == '\n' || hash.back() == '\r' || hash.back() == ' ')) hash.pop_back();
    }
    const fs::path snap = repo / "snapshots" / hash;
    if (!hash.empty() && fs::is_directory(snap)) return snap.string();
  }
  return std::nullopt;
}

std::string hf_cache_dirs_text() {
  std::string dirs;
  for (const std::string& d : hf_cache_dirs()) dirs += (dirs.empty() ? "" : ", ") + d;
  return dirs;
}

std::string hf_download_command(const std::string& hub_id) {
  return "huggingface-cli download " + hub_id.substr(0, hub_id.find('@'));
}

std::string resolve_model_path(const std::string& path) {
  if (fs::exists(path)) return path;
  if (looks_like_hub_id(path)) {
    if (auto snap = find_in_hf_cache(path)) return *snap;
    throw NotFound(path + ": not a file or directory, and not in the Hugging Face cache (looked in " +
                hf_cache_dirs_text() + "); fetch it with `" + hf_download_command(path) +
                "` (or hf download) or give the checkpoint directory");
  }
  throw NotFound(path + ": no such file or directory");
}

}  // namespace kt
