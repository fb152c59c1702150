#pragma once
// Internal to tensor/cpu/conv.cpp: the table of per-shape algorithm choices and its cache file (conv.h
// describes both). Thread-safe.
#include <optional>
#include <string>

namespace dl::cpu {
// The algorithm chosen for `key` in this process or read from the cache file (read once, on first use).
std::optional<std::string> conv_algo_lookup(const std::string& key);
// Records a choice and, when it is new, appends it to the cache file.
void conv_algo_store(const std::string& key, const std::string& algo);
}  // namespace dl::cpu
