// Loading a model from a single .gguf file (filled in by the GGUF work).
#include "model/model.h"
#include "util/error.h"

namespace kt {

std::unique_ptr<Model> load_gguf_model(const std::string& path, const LoadOptions&) {
  throw Error(path + ": GGUF loading is not available in this build yet");
}

}  // namespace kt
