// Tokenizer::from_hf_dir: reads a Hugging Face tokenizer.json (and
// tokenizer_config.json when present) into Tokenizer::Impl.
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <unordered_map>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/paths.h"

namespace kt {

using json = nlohmann::json;
using namespace kt::tok;

namespace {

constexpr int64_t kMaxTokenId = 1 << 26;  // far above any real vocabulary

const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "an unexpected value";
  }
}

// Keeps a message on one line whatever the input held.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// The file being read, for error messages: "<file>: <field>: <problem>".
struct Ctx {
  std::string file;

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(one_line(file + ": " + field + ": " + what));
  }
  [[noreturn]] void expected(const std::string& field, const std::string& what,
                             const json& got) const {
    fail(field, "expected " + what + ", got " + type_name(got));
  }

  const json& member(const json& obj, const char* key, const std::string& field) const {
    auto it = obj.find(key);
    if (it == obj.end()) fail(field, "missing");
    return *it;
  }
  const json& object(const json& obj, const char* key, const std::string& field) const {
    const json& v = member(obj, key, field);
    if (!v.is_object()) expected(field, "an object", v);
    return v;
  }
  std::string string(const json& obj, const char* key, const std::string& field) const {
    const json& v = member(obj, key, field);
    if (!v.is_string()) expected(field, "a string", v);
    return v.get<std::string>();
  }
  bool flag(const json& obj, const char* key, const std::string& field, bool dflt) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) expected(field, "true or false", *it);
    return it->get<bool>();
  }
  int32_t id(const json& v, const std::string& field) const {
    if (!v.is_number_integer()) expected(field, "a non-negative integer id", v);
    int64_t x = v.get<int64_t>();
    if (x < 0 || x >= kMaxTokenId) fail(field, "id " + std::to_string(x) + " is out of range");
    return static_cast<int32_t>(x);
  }
};

json parse_file(const std::string& path) {
  std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for "1e400"
    std::string msg = e.what();
    // nlohmann's text starts "[json.exception.parse_error.101] parse error at ...".
    auto p = msg.find("] ");
    if (p != std::string::npos) msg = msg.substr(p + 2);
    throw Error(one_line(path + ": invalid JSON: " + msg));
  }
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

SplitBehavior parse_behavior(const Ctx& ctx, const json& obj, const std::string& field) {
  auto it = obj.find("behavior");
  if (it == obj.end() || it->is_null()) return SplitBehavior::Isolated;
  if (!it->is_string()) ctx.expected(field, "a string", *it);
  std::string b = it->get<std::string>();
  std::string l;
  for (char c : b) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "removed") return SplitBehavior::Removed;
  if (l == "isolated") return SplitBehavior::Isolated;
  if (l == "mergedwithprevious" || l == "merged_with_previous") return SplitBehavior::MergedWithPrevious;
  if (l == "mergedwithnext" || l == "merged_with_next") return SplitBehavior::MergedWithNext;
  if (l == "contiguous") return SplitBehavior::Contiguous;
  ctx.fail(field, "unknown split behavior \"" + b + "\"");
}

std::shared_ptr<const Regex> compile(const Ctx& ctx, const std::string& pattern, bool literal,
                                     const std::string& field) {
  try {
    return shared_regex(pattern, literal);
  } catch (const std::invalid_argument& e) {
    ctx.fail(field, e.what());
  }
}

// {"String": s} or {"Regex": r} of a Replace / Split, compiled.
std::shared_ptr<const Regex> parse_pattern(const Ctx& ctx, const json& j, const char* key,
                                           const std::string& field) {
  const json& pat = ctx.object(j, key, field);
  if (pat.contains("Regex"))
    return compile(ctx, ctx.string(pat, "Regex", field + ".Regex"), false, field + ".Regex");
  if (pat.contains("String")) {
    std::string s = ctx.string(pat, "String", field + ".String");
    if (s.empty()) ctx.fail(field + ".String", "empty pattern");
    return compile(ctx, s, true, field + ".String");
  }
  ctx.fail(field, "expected {\"Regex\": ...} or {\"String\": ...}");
}

// Metaspace's replacement character and prepend scheme, shared by the
// pre-tokenizer and the decoder of that name. Older files have
// add_prefix_space instead of prepend_scheme.
std::string metaspace_replacement(const Ctx& ctx, const json& j, const std::string& field) {
  std::string r = "\xE2\x96\x81";
  if (j.contains("replacement") && !j["replacement"].is_null()) r = ctx.string(j, "replacement", field + ".replacement");
  if (r.empty()) ctx.fail(field + ".replacement", "expected one character, got an empty string");
  return r;
}

PrependScheme metaspace_scheme(const Ctx& ctx, const json& j, const std::string& field) {
  auto it = j.find("prepend_scheme");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_string()) ctx.expected(field + ".prepend_scheme", "\"always\", \"first\" or \"never\"", *it);
    const std::string v = it->get<std::string>();
    if (v == "always") return PrependScheme::Always;
    if (v == "first") return PrependScheme::First;
    if (v == "never") return PrependScheme::Never;
    ctx.fail(field + ".prepend_scheme", "unknown scheme \"" + v + "\" (expected always, first or never)");
  }
  return ctx.flag(j, "add_prefix_space", field + ".add_prefix_space", true) ? PrependScheme::Always
                                                                           : PrependScheme::Never;
}

// The pre-tokenizer steps; Metaspace's rewrite of spaces is a text change,
// so it goes to the normalizer steps (it must come before any split).
void parse_pre_tokenizer(const Ctx& ctx, const json& j, const std::string& field,
                         std::vector<PreStep>& steps, std::vector<NormStep>& norm, bool& byte_level) {
  if (j.is_null()) return;
  if (!j.is_object()) ctx.expected(field, "an object or null", j);
  const std::string type = ctx.string(j, "type", field + ".type");
  if (type == "Sequence") {
    const json& list = ctx.member(j, "pretokenizers", field + ".pretokenizers");
    if (!list.is_array()) ctx.expected(field + ".pretokenizers", "an array", list);
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(ctx, list[i], field + ".pretokenizers[" + std::to_string(i) + "]", steps,
                          norm, byte_level);
  } else if (type == "ByteLevel") {
    PreStep st;
    st.kind = PreStep::Kind::ByteLevel;
    st.add_prefix_space = ctx.flag(j, "add_prefix_space", field + ".add_prefix_space", true);
    if (ctx.flag(j, "use_regex", field + ".use_regex", true)) {
      st.regex = compile(ctx, kGpt2Pattern, false, field);
      st.behavior = SplitBehavior::Isolated;
    }
    steps.push_back(st);
    byte_level = true;
  } else if (type == "Split") {
    PreStep st;
    st.kind = PreStep::Kind::Split;
    st.regex = parse_pattern(ctx, j, "pattern", field + ".pattern");
    st.behavior = parse_behavior(ctx, j, field + ".behavior");
    st.invert = ctx.flag(j, "invert", field + ".invert", false);
    steps.push_back(st);
  } else if (type == "Digits") {
    PreStep st;
    st.kind = PreStep::Kind::Split;
    bool individual = ctx.flag(j, "individual_digits", field + ".individual_digits", false);
    // Rust's char::is_numeric is \p{N}; runs are merged unless individual.
    st.regex = compile(ctx, individual ? R"(\p{N})" : R"(\p{N}+)", false, field);
    st.behavior = SplitBehavior::Isolated;
    steps.push_back(st);
  } else if (type == "Metaspace") {
    if (!steps.empty())
      ctx.fail(field, "Metaspace after another pre-tokenizer is not supported (it must come first)");
    NormStep ms;
    ms.kind = NormStep::Kind::Metaspace;
    ms.content = metaspace_replacement(ctx, j, field);
    ms.scheme = metaspace_scheme(ctx, j, field);
    norm.push_back(ms);
    if (ctx.flag(j, "split", field + ".split", true)) {
      PreStep st;
      st.kind = PreStep::Kind::Split;
      st.regex = compile(ctx, ms.content, true, field + ".replacement");
      st.behavior = SplitBehavior::MergedWithNext;
      steps.push_back(st);
    }
  } else {
    ctx.fail(field + ".type", "unsupported pre-tokenizer \"" + type +
                                  "\" (supported: ByteLevel, Metaspace, Split, Digits, Sequence)");
  }
}

void parse_normalizer(const Ctx& ctx, const json& j, const std::string& field, std::vector<NormStep>& steps) {
  if (j.is_null()) return;
  if (!j.is_object()) ctx.expected(field, "an object or null", j);
  const std::string type = ctx.string(j, "type", field + ".type");
  NormStep st;
  if (type == "NFC" || type == "NFKC") {
    st.kind = type == "NFC" ? NormStep::Kind::NFC : NormStep::Kind::NFKC;
  } else if (type == "Prepend") {
    st.kind = NormStep::Kind::Prepend;
    st.content = ctx.string(j, "prepend", field + ".prepend");
  } else if (type == "Replace") {
    st.kind = NormStep::Kind::Replace;
    st.pattern = parse_pattern(ctx, j, "pattern", field + ".pattern");
    st.content = ctx.string(j, "content", field + ".content");
  } else if (type == "Sequence") {
    const json& list = ctx.member(j, "normalizers", field + ".normalizers");
    if (!list.is_array()) ctx.expected(field + ".normalizers", "an array", list);
    for (size_t i = 0; i < list.size(); ++i)
      parse_normalizer(ctx, list[i], field + ".normalizers[" + std::to_string(i) + "]", steps);
    return;
  } else {
    ctx.fail(field + ".type", "unsupported normalizer \"" + type +
                                  "\" (supported: NFC, NFKC, Prepend, Replace, Sequence)");
  }
  steps.push_back(std::move(st));
}

// The decoder of a SentencePiece-style tokenizer (byte-level ones map their
// tokens back to bytes and need none).
void parse_decoder(const Ctx& ctx, const json& j, const std::string& field, std::vector<DecodeStep>& steps) {
  if (j.is_null()) return;
  if (!j.is_object()) ctx.expected(field, "an object or null", j);
  const std::string type = ctx.string(j, "type", field + ".type");
  DecodeStep st;
  if (type == "Sequence") {
    const json& list = ctx.member(j, "decoders", field + ".decoders");
    if (!list.is_array()) ctx.expected(field + ".decoders", "an array", list);
    for (size_t i = 0; i < list.size(); ++i)
      parse_decoder(ctx, list[i], field + ".decoders[" + std::to_string(i) + "]", steps);
    return;
  } else if (type == "Replace") {
    st.kind = DecodeStep::Kind::Replace;
    st.pattern = parse_pattern(ctx, j, "pattern", field + ".pattern");
    st.content = ctx.string(j, "content", field + ".content");
  } else if (type == "ByteFallback") {
    st.kind = DecodeStep::Kind::ByteFallback;
  } else if (type == "Fuse") {
    st.kind = DecodeStep::Kind::Fuse;
  } else if (type == "Strip") {
    st.kind = DecodeStep::Kind::Strip;
    const std::string c = ctx.string(j, "content", field + ".content");
    const size_t l = c.empty() ? 0 : utf8_seq_len(c, 0);
    if (!l || l != c.size()) ctx.fail(field + ".content", "expected one character, got \"" + c + "\"");
    st.ch = decode_utf8(c, 0, l);
    for (auto [key, out] : {std::pair<const char*, size_t*>{"start", &st.start}, {"stop", &st.stop}}) {
      const std::string f = field + "." + key;
      const json& v = ctx.member(j, key, f);
      if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
        ctx.expected(f, "a non-negative integer", v);
      *out = static_cast<size_t>(std::min<uint64_t>(v.get<uint64_t>(), 1u << 20));
    }
  } else if (type == "Metaspace") {
    st.kind = DecodeStep::Kind::Metaspace;
    st.content = metaspace_replacement(ctx, j, field);
    st.scheme = metaspace_scheme(ctx, j, field);
  } else if (type == "ByteLevel") {
    ctx.fail(field + ".type", "a ByteLevel decoder needs a ByteLevel pre_tokenizer, and there is none");
  } else {
    ctx.fail(field + ".type", "unsupported decoder \"" + type +
                                  "\" for a SentencePiece-style tokenizer (supported: Replace, ByteFallback, "
                                  "Fuse, Strip, Metaspace, Sequence)");
  }
  steps.push_back(std::move(st));
}

struct PostInfo {
  bool trim_offsets = false;
  std::vector<int32_t> prefix, suffix;
};

void parse_post(const Ctx& ctx, const json& j, const std::string& field, PostInfo& post) {
  if (j.is_null()) return;
  if (!j.is_object()) ctx.expected(field, "an object or null", j);
  const std::string type = ctx.string(j, "type", field + ".type");
  if (type == "Sequence") {
    const json& list = ctx.member(j, "processors", field + ".processors");
    if (!list.is_array()) ctx.expected(field + ".processors", "an array", list);
    for (size_t i = 0; i < list.size(); ++i)
      parse_post(ctx, list[i], field + ".processors[" + std::to_string(i) + "]", post);
  } else if (type == "ByteLevel") {
    post.trim_offsets = ctx.flag(j, "trim_offsets", field + ".trim_offsets", true);
  } else if (type == "TemplateProcessing") {
    const json& single = ctx.member(j, "single", field + ".single");
    if (!single.is_array()) ctx.expected(field + ".single", "an array", single);
    const json& specials = ctx.member(j, "special_tokens", field + ".special_tokens");
    if (!specials.is_object()) ctx.expected(field + ".special_tokens", "an object", specials);
    post.prefix.clear();
    post.suffix.clear();
    bool seen_a = false;
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string f = field + ".single[" + std::to_string(i) + "]";
      const json& item = single[i];
      if (!item.is_object()) ctx.expected(f, "an object", item);
      if (item.contains("Sequence")) {
        seen_a = true;
        continue;
      }
      const json& sp = ctx.object(item, "SpecialToken", f + ".SpecialToken");
      std::string name = ctx.string(sp, "id", f + ".SpecialToken.id");
      auto it = specials.find(name);
      if (it == specials.end())
        ctx.fail(f + ".SpecialToken.id", "\"" + name + "\" is not in special_tokens");
      const std::string sf = field + ".special_tokens[\"" + name + "\"].ids";
      const json& ids = ctx.member(*it, "ids", sf);
      if (!ids.is_array()) ctx.expected(sf, "an array of ids", ids);
      for (const json& id : ids) (seen_a ? post.suffix : post.prefix).push_back(ctx.id(id, sf));
    }
    if (!seen_a) ctx.fail(field + ".single", "no $A sequence in the template");
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto tok = [&](const char* key) {
      const std::string f = field + "." + key;
      const json& v = ctx.member(j, key, f);
      if (!v.is_array() || v.size() != 2) ctx.expected(f, "[token, id]", v);
      return ctx.id(v[1], f + "[1]");
    };
    post.prefix = {tok("cls")};
    post.suffix = {tok("sep")};
    if (type == "RobertaProcessing")
      post.trim_offsets = ctx.flag(j, "trim_offsets", field + ".trim_offsets", true);
  } else {
    ctx.fail(field + ".type", "unsupported post-processor \"" + type +
                                  "\" (supported: ByteLevel, TemplateProcessing, Sequence)");
  }
}

// "<s>" or {"content": "<s>", ...} or null.
std::optional<std::string> token_name(const Ctx& ctx, const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) return ctx.string(*it, "content", std::string(key) + ".content");
  ctx.expected(key, "a string or an object with \"content\"", *it);
}

}  // namespace

Tokenizer Tokenizer::from_hf_dir(const std::string& dir) {
  std::string tok_path, cfg_path;
  if (is_dir(dir) || dir.empty()) {
    tok_path = join(dir, "tokenizer.json");
    cfg_path = join(dir, "tokenizer_config.json");
  } else {
    // Also accept the path of a tokenizer.json itself.
    tok_path = dir;
    auto slash = dir.rfind('/');
    cfg_path = join(slash == std::string::npos ? "" : dir.substr(0, slash), "tokenizer_config.json");
  }
  if (!file_exists(tok_path)) throw Error(tok_path + ": cannot open file (no tokenizer.json)");
  const Ctx ctx{tok_path};
  const json root = parse_file(tok_path);
  auto impl = std::make_unique<Impl>();
  try {
    if (!root.is_object()) ctx.expected("(top level)", "an object", root);

    // -- model ---------------------------------------------------------------
    const json& model = ctx.object(root, "model", "model");
    std::string mtype;
    if (model.contains("type")) {
      mtype = ctx.string(model, "type", "model.type");
    } else if (model.contains("merges")) {
      mtype = "BPE";  // very old files leave the type implicit
    } else {
      ctx.fail("model.type", "missing");
    }
    if (mtype != "BPE")
      ctx.fail("model.type", "unsupported tokenizer model \"" + mtype +
                                 "\" (supported: BPE, byte-level or SentencePiece-style)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      auto it = model.find(key);
      if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()))
        ctx.fail(std::string("model.") + key, "not supported (decoder-only models' BPE has none)");
    }

    const json& vocab = ctx.member(model, "vocab", "model.vocab");
    if (!vocab.is_object()) ctx.expected("model.vocab", "an object of token -> id", vocab);
    std::vector<std::string> tokens;
    std::unordered_map<std::string, int32_t> ids_by_text;
    ids_by_text.reserve(vocab.size());
    // Ids are dense in real files (added tokens may fill holes), so bound them
    // by the entry count: a small file must not make a huge id table.
    const auto added_it = root.find("added_tokens");
    const size_t n_added = added_it != root.end() && added_it->is_array() ? added_it->size() : 0;
    const size_t id_limit = vocab.size() + n_added + 65536;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      int32_t id = ctx.id(it.value(), "model.vocab[\"" + it.key() + "\"]");
      if (static_cast<size_t>(id) >= id_limit)
        ctx.fail("model.vocab[\"" + it.key() + "\"]",
                 "id " + std::to_string(id) + " is out of range for a vocabulary of " +
                     std::to_string(vocab.size()) + " entries (ids should run from 0 without large gaps)");
      if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(static_cast<size_t>(id) + 1);
      if (!tokens[static_cast<size_t>(id)].empty())
        ctx.fail("model.vocab[\"" + it.key() + "\"]",
                 "id " + std::to_string(id) + " is also used by \"" +
                     tokens[static_cast<size_t>(id)] + "\"");
      tokens[static_cast<size_t>(id)] = it.key();
      ids_by_text[it.key()] = id;
    }

    const json& merges_j = ctx.member(model, "merges", "model.merges");
    if (!merges_j.is_array()) ctx.fail("model.merges", "expected an array of strings");
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merges_j.size());
    for (size_t i = 0; i < merges_j.size(); ++i) {
      const json& m = merges_j[i];
      const std::string f = "model.merges[" + std::to_string(i) + "]";
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() ||
            s.find(' ', sp + 1) != std::string::npos)
          ctx.fail(f, "expected \"left right\", got \"" + s + "\"");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        ctx.fail(f, "expected a string \"left right\" or an array [left, right]");
      }
    }

    std::optional<int32_t> unk;
    {
      auto it = model.find("unk_token");
      if (it != model.end() && !it->is_null()) {
        if (!it->is_string()) ctx.expected("model.unk_token", "a string or null", *it);
        auto f = ids_by_text.find(it->get<std::string>());
        if (f == ids_by_text.end())
          ctx.fail("model.unk_token", "\"" + it->get<std::string>() + "\" is not in model.vocab");
        unk = f->second;
      }
    }
    BpeOptions opts;
    opts.ignore_merges = ctx.flag(model, "ignore_merges", "model.ignore_merges", false);
    opts.fuse_unk = ctx.flag(model, "fuse_unk", "model.fuse_unk", false);
    opts.byte_fallback = ctx.flag(model, "byte_fallback", "model.byte_fallback", false);
    opts.unk_id = unk;

    // -- normalizer, pre-tokenizer (they decide how tokens spell bytes) ------------
    parse_normalizer(ctx, root.value("normalizer", json()), "normalizer", impl->norm_steps);
    bool byte_level = false;
    parse_pre_tokenizer(ctx, root.value("pre_tokenizer", json()), "pre_tokenizer", impl->pre_steps,
                        impl->norm_steps, byte_level);
    if (byte_level && opts.byte_fallback)
      ctx.fail("model.byte_fallback", "byte fallback with a ByteLevel pre-tokenizer (every byte is a token already)");
    opts.spelling = byte_level ? Spelling::ByteLevel : Spelling::Pieces;

    // -- added tokens ----------------------------------------------------------
    if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
      const json& list = root["added_tokens"];
      if (!list.is_array()) ctx.expected("added_tokens", "an array", list);
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string f = "added_tokens[" + std::to_string(i) + "]";
        const json& a = list[i];
        if (!a.is_object()) ctx.expected(f, "an object", a);
        AddedToken t;
        t.id = ctx.id(ctx.member(a, "id", f + ".id"), f + ".id");
        t.content = ctx.string(a, "content", f + ".content");
        t.special = ctx.flag(a, "special", f + ".special", false);
        t.lstrip = ctx.flag(a, "lstrip", f + ".lstrip", false);
        t.rstrip = ctx.flag(a, "rstrip", f + ".rstrip", false);
        t.single_word = ctx.flag(a, "single_word", f + ".single_word", false);
        ids_by_text[t.content] = t.id;
        impl->added.push_back(std::move(t));
      }
    }

    try {
      impl->model = std::make_unique<BpeModel>(std::move(tokens), merges, opts);
    } catch (const std::invalid_argument& e) {
      // BpeModel reports "merges[i]: problem".
      throw Error(one_line(tok_path + ": model." + e.what()));
    }

    // -- decoder, post-processor ------------------------------------------------------
    impl->byte_level = byte_level;
    if (!byte_level) parse_decoder(ctx, root.value("decoder", json()), "decoder", impl->decoder);
    impl->kind = byte_level ? "byte-level BPE" : opts.byte_fallback ? "SentencePiece-style BPE (byte fallback)"
                                                                   : "SentencePiece-style BPE";
    PostInfo post;
    parse_post(ctx, root.value("post_processor", json()), "post_processor", post);
    impl->trim_offsets = post.trim_offsets;
    impl->prefix_ids = post.prefix;
    impl->suffix_ids = post.suffix;
    if (!post.prefix.empty()) impl->bos = post.prefix.front();
    if (!post.suffix.empty()) impl->eos = post.suffix.back();

    // -- tokenizer_config.json -----------------------------------------------------
    if (file_exists(cfg_path)) {
      const Ctx cctx{cfg_path};
      const json cfg = parse_file(cfg_path);
      if (!cfg.is_object()) cctx.expected("(top level)", "an object", cfg);
      auto lookup = [&](const std::optional<std::string>& name) -> std::optional<int32_t> {
        if (!name) return std::nullopt;
        auto it = ids_by_text.find(*name);
        if (it == ids_by_text.end()) return std::nullopt;
        return it->second;
      };
      if (auto b = lookup(token_name(cctx, cfg, "bos_token"))) impl->bos = b;
      if (auto e = lookup(token_name(cctx, cfg, "eos_token"))) impl->eos = e;
      // transformers' generic fast tokenizer ignores add_bos_token /
      // add_eos_token (the post-processor decides); the model-specific
      // classes (Llama, Gemma...) rebuild the post-processor from them.
      std::string cls;
      if (cfg.contains("tokenizer_class") && cfg["tokenizer_class"].is_string())
        cls = cfg["tokenizer_class"].get<std::string>();
      const bool generic = cls.empty() || cls == "PreTrainedTokenizerFast" ||
                           cls == "TokenizersBackend";
      auto apply = [&](const char* key, std::optional<int32_t> id, std::vector<int32_t>& where) {
        auto it = cfg.find(key);
        if (it == cfg.end() || it->is_null()) return;
        if (!it->is_boolean()) cctx.expected(key, "true or false", *it);
        if (generic || !id) return;
        bool want = it->get<bool>();
        bool has = std::find(where.begin(), where.end(), *id) != where.end();
        if (want && !has) where.insert(&where == &impl->prefix_ids ? where.begin() : where.end(), *id);
        if (!want && has) where.erase(std::remove(where.begin(), where.end(), *id), where.end());
      };
      apply("add_bos_token", impl->bos, impl->prefix_ids);
      apply("add_eos_token", impl->eos, impl->suffix_ids);
    }
  } catch (const json::exception& e) {
    // Safety net: a structure the checks above did not foresee.
    throw Error(one_line(tok_path + ": unexpected JSON structure: " + e.what()));
  }
  impl->finish();
  return Tokenizer(std::move(impl));
}

}  // namespace kt
