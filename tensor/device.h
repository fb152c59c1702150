#pragma once
#include <string>

#include <fmt/format.h>

namespace dl {

enum class DeviceType : uint8_t { CPU = 0, CUDA = 1 };
constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  constexpr Device() = default;
  constexpr Device(DeviceType t, int i = 0) : type(t), index(i) {}
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const = default;
  std::string str() const { return is_cpu() ? "cpu" : fmt::format("cuda:{}", index); }
  // Parses "cpu", "cuda" or "cuda:N"; throws dl::Error otherwise.
  static Device parse(const std::string& s);
};

inline constexpr Device kCPU{DeviceType::CPU, 0};

}  // namespace dl
