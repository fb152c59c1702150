#include "models/checkpoint.h"

namespace dl {

namespace {
constexpr const char* kFormat = "dl-checkpoint-v1";
}

void save_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  TensorDict all;
  all.reserve(ckpt.model.size() + ckpt.optimizer.size());
  for (const auto& [k, t] : ckpt.model) all.emplace_back("model/" + k, t);
  for (const auto& [k, t] : ckpt.optimizer) all.emplace_back("optim/" + k, t);
  save_safetensors(path, all, {{"format", kFormat}, {"dl", ckpt.meta.dump()}});
}

Checkpoint load_checkpoint(const std::string& path) {
  std::map<std::string, std::string> md;
  TensorDict all = load_safetensors(path, &md, true);
  auto f = md.find("format");
  if (f == md.end() || f->second != kFormat)
    fail("'{}' is not a checkpoint written by this framework (no '{}' format tag)", path, kFormat);
  Checkpoint c;
  try {
    c.meta = nlohmann::json::parse(md.at("dl"));
  } catch (const std::exception& e) {
    fail("checkpoint '{}' has corrupt metadata: {}", path, e.what());
  }
  for (auto& [k, t] : all) {
    if (k.rfind("model/", 0) == 0) {
      c.model.emplace_back(k.substr(6), t);
    } else if (k.rfind("optim/", 0) == 0) {
      c.optimizer.emplace_back(k.substr(6), t);
    } else {
      fail("checkpoint '{}' holds an unexpected tensor '{}'", path, k);
    }
  }
  return c;
}

nlohmann::json generator_state_to_json(const Generator::State& s) {
  return {{"s", std::vector<uint64_t>(s.s.begin(), s.s.end())}, {"has_spare", s.has_spare}, {"spare", s.spare}};
}

Generator::State generator_state_from_json(const nlohmann::json& j) {
  Generator::State s{};
  try {
    const auto& words = j.at("s");
    if (!words.is_array() || words.size() != 4) fail("generator state must have 4 words, got {}", words.dump());
    for (int i = 0; i < 4; ++i) {
      if (!words[i].is_number_unsigned()) fail("generator state word {} is not an unsigned integer: {}", i, words[i].dump());
      s.s[i] = words[i].get<uint64_t>();
    }
    if (s.s[0] == 0 && s.s[1] == 0 && s.s[2] == 0 && s.s[3] == 0) fail("generator state is all zeros");
    s.has_spare = j.at("has_spare").get<bool>();
    s.spare = j.at("spare").get<double>();
  } catch (const nlohmann::json::exception& e) {
    fail("malformed generator state {}: {}", j.dump(), e.what());
  }
  return s;
}

}  // namespace dl
