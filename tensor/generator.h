#pragma once
// A seedable random generator that gives the same numbers on every platform: xoshiro256**
// seeded through splitmix64, uniform floats from the top bits, normals by Box-Muller.
// No std:: distributions (their output is implementation-defined).
#include <array>
#include <cstdint>

namespace dl {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { manual_seed(seed); }
  void manual_seed(uint64_t seed);
  uint64_t next_u64();
  double uniform();        // [0, 1) with 53 random bits
  double normal();         // standard normal
  uint64_t below(uint64_t n);  // uniform integer in [0, n), unbiased

  // The whole state, so a run can be resumed exactly.
  struct State {
    std::array<uint64_t, 4> s;
    bool has_spare;
    double spare;
  };
  State state() const { return {s_, has_spare_, spare_}; }
  void set_state(const State& st) { s_ = st.s; has_spare_ = st.has_spare; spare_ = st.spare; }

 private:
  std::array<uint64_t, 4> s_{};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

Generator& default_generator();
void manual_seed(uint64_t seed);  // seeds the default generator

}  // namespace dl
