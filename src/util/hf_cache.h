// Hugging Face hub IDs ("meta-llama/Llama-3.2-3B", the seed's form) resolved
// from the local Hugging Face cache the way transformers does offline:
// $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; in it
// models--<org>--<name>/refs/<revision> names the snapshot directory
// snapshots/<hash>. Nothing is downloaded.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace kt {

// Whether `text` has the shape of a hub ID: "org/name" (optionally
// "@revision"), no leading "/", "./" or "~", no ".gguf".
bool looks_like_hub_id(const std::string& text);

// The cache folders looked in, in order (existing or not).
std::vector<std::string> hf_cache_dirs();

// The snapshot directory of a hub ID, or nullopt when it is not cached.
std::optional<std::string> find_in_hf_cache(const std::string& hub_id);

// The cache folders as one line for messages ("a, b, c"), and the command
// that fetches a hub ID ("huggingface-cli download org/name").
std::string hf_cache_dirs_text();
std::string hf_download_command(const std::string& hub_id);

// `path` itself when it exists; else, for a hub ID, its cached snapshot;
// else kt::Error naming the path or the cache folders tried and how to
// fetch the model.
std::string resolve_model_path(const std::string& path);

}  // namespace kt
