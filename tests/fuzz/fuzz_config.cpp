// libFuzzer target: the YAML run configuration (kt::parse_config, in memory)
// and its JSON form (kt::config_from_json). A config that parses must survive
// config_to_json -> config_from_json unchanged. Built from
// src/pipeline/config.cpp alone (yaml-cpp, nlohmann_json, kt_util; no torch).
#include <string>

#include "fuzz_common.h"
#include "pipeline/config.h"

namespace {

void roundtrip(const kt::RunConfig& c) {
  const std::string j = kt::config_to_json(c);
  const kt::RunConfig d = kt::config_from_json(j, "roundtrip");
  KT_FUZZ_CHECK(kt::config_to_json(d) == j);
  (void)kt::results_dir(c);
  for (const auto& s : kt::parse_stages("filter,trace,aggregate,plot")) (void)kt::has_stage(c, s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    roundtrip(kt::parse_config(text, "fuzz.yaml"));
  } catch (const kt::Error& e) {
    ktfuzz::check_error(e);
  }
  try {
    roundtrip(kt::config_from_json(text, "run.json"));
  } catch (const kt::Error& e) {
    ktfuzz::check_error(e);
  }
  return 0;
}
