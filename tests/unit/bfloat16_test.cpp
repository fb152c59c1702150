// bfloat16 and float16 as tensor dtypes: the scalar conversions (against reference formulas and
// PyTorch), the copy kernel's vector paths, tensor plumbing (to, item, fill, views, printing),
// promotion, refusals of arithmetic, and weight files (safetensors, checkpoints, load_state_dict).
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "file_test_util.h"
#include "models/checkpoint.h"
#include "models/io/safetensors.h"
#include "models/weights.h"
#include "nn/layers.h"
#include "onnx/onnx.h"
#include "tensor/cpu/convert16.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"
#include "test_util.h"

using dl::BFloat16;
using dl::DType;
using dl::Float16;
using dl::Tensor;
using dl::test::check_throws_with;

namespace {

float f32(uint32_t bits) { return std::bit_cast<float>(bits); }
uint32_t bits32(float f) { return std::bit_cast<uint32_t>(f); }
bool is_nan_bf16(uint16_t b) { return (b & 0x7F80u) == 0x7F80u && (b & 0x7Fu) != 0; }
bool is_nan_f16(uint16_t h) { return (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu) != 0; }

// Reference bfloat16 rounding from the definition: the two bfloat16 neighbours of x (truncation and
// the next one up in magnitude; past the largest finite value the next one stands for 2^128), the
// nearer wins, a tie goes to the even bit pattern. Computed in double, where every difference here
// is exact.
uint16_t reference_bf16(float x) {
  const uint32_t u = bits32(x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return static_cast<uint16_t>(u >> 16);  // inf (NaN handled by the caller)
  const uint16_t lo = static_cast<uint16_t>(a >> 16), hi = static_cast<uint16_t>(lo + 1);
  const double xv = std::fabs(static_cast<double>(x));
  const double lo_v = static_cast<double>(f32(static_cast<uint32_t>(lo) << 16));
  const double hi_v = hi == 0x7F80u ? std::ldexp(1.0, 128) : static_cast<double>(f32(static_cast<uint32_t>(hi) << 16));
  const double dl = xv - lo_v, dh = hi_v - xv;
  const uint16_t r = dl < dh ? lo : dh < dl ? hi : ((lo & 1u) ? hi : lo);
  return static_cast<uint16_t>(sign | r);
}

// The value of a finite half bit pattern, from the definition.
double half_value(uint16_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  return (h & 0x8000u) ? -v : v;
}

// Reference float16 rounding: nearest of the 0x7C00 non-negative finite halves (0x7C00 standing for
// 2^16 at the top), ties to the even pattern.
uint16_t reference_f16(float x) {
  static const std::vector<double> values = [] {
    std::vector<double> v(0x7C01);
    for (uint32_t h = 0; h < 0x7C00; ++h) v[h] = half_value(static_cast<uint16_t>(h));
    v[0x7C00] = 65536.0;
    return v;
  }();
  const uint16_t sign = (bits32(x) & 0x80000000u) ? 0x8000 : 0;
  const double xv = std::fabs(static_cast<double>(x));
  if (std::isinf(x) || xv >= 65536.0) return static_cast<uint16_t>(sign | 0x7C00);
  const auto it = std::upper_bound(values.begin(), values.end(), xv);  // first > xv
  const uint16_t hi = static_cast<uint16_t>(it - values.begin()), lo = static_cast<uint16_t>(hi - 1);
  const double dl = xv - values[lo], dh = values[hi] - xv;
  const uint16_t r = dl < dh ? lo : dh < dl ? hi : ((lo & 1u) ? hi : lo);
  return static_cast<uint16_t>(sign | r);
}

std::vector<uint16_t> bf16_bits(const Tensor& t) {
  Tensor c = t.contiguous();
  REQUIRE(c.dtype() == DType::BFloat16);
  const auto* p = c.data_ptr<BFloat16>();
  std::vector<uint16_t> out(static_cast<size_t>(c.numel()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = p[i].bits;
  return out;
}
std::vector<uint16_t> f16_bits(const Tensor& t) {
  Tensor c = t.contiguous();
  REQUIRE(c.dtype() == DType::Float16);
  const auto* p = c.data_ptr<Float16>();
  std::vector<uint16_t> out(static_cast<size_t>(c.numel()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = p[i].bits;
  return out;
}

// Float bit patterns to sweep: every pattern in a few dense windows (ties and carries around 1, the
// top of the range, subnormals, half's subnormal and overflow edges) and a stride over all 2^32.
std::vector<uint32_t> sweep_patterns() {
  std::vector<uint32_t> v;
  for (uint32_t base : {0x3F800000u, 0x7F700000u, 0x00000000u, 0x33000000u, 0x38700000u, 0x477F0000u})
    for (uint32_t i = 0; i < (1u << 18); ++i) {
      v.push_back(base + i);
      v.push_back((base + i) | 0x80000000u);
    }
  for (uint64_t b = 0; b < (uint64_t{1} << 32); b += 4093) v.push_back(static_cast<uint32_t>(b));
  return v;
}

}  // namespace

TEST_CASE("bfloat16: float -> bfloat16 rounds to nearest even, by the definition, over swept bit patterns") {
  int64_t checked = 0, mismatches = 0;
  for (uint32_t b : sweep_patterns()) {
    const float x = f32(b);
    const uint16_t got = BFloat16(x).bits;
    if (std::isnan(x)) {
      if (!is_nan_bf16(got) || (got & 0x40u) == 0 || (got & 0x8000u) != ((b >> 16) & 0x8000u)) ++mismatches;
    } else if (got != reference_bf16(x)) {
      if (++mismatches < 5) FAIL_CHECK("bits " << std::hex << b << ": got " << got << " want " << reference_bf16(x));
    }
    ++checked;
  }
  CHECK(checked > 3000000);
  CHECK(mismatches == 0);
}

TEST_CASE("bfloat16: float -> float16 rounds to nearest even with subnormals, by the definition") {
  int64_t mismatches = 0;
  for (uint32_t b : sweep_patterns()) {
    const float x = f32(b);
    const uint16_t got = Float16(x).bits;
    if (std::isnan(x)) {
      if (!is_nan_f16(got) || (got & 0x200u) == 0) ++mismatches;
    } else if (got != reference_f16(x)) {
      if (++mismatches < 5) FAIL_CHECK("bits " << std::hex << b << ": got " << got << " want " << reference_f16(x));
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("bfloat16: special values: NaN, inf, overflow, subnormals, signed zero") {
  CHECK(BFloat16(1.0f).bits == 0x3F80);
  CHECK(BFloat16(-2.0f).bits == 0xC000);
  CHECK(BFloat16(f32(0x3F808000)).bits == 0x3F80);  // tie, even below
  CHECK(BFloat16(f32(0x3F818000)).bits == 0x3F82);  // tie, even above
  CHECK(BFloat16(f32(0x7F7FFFFF)).bits == 0x7F80);  // FLT_MAX rounds to inf
  CHECK(BFloat16(f32(0x7F7F7FFF)).bits == 0x7F7F);  // just below the tie stays finite
  CHECK(BFloat16(std::numeric_limits<float>::infinity()).bits == 0x7F80);
  CHECK(BFloat16(-std::numeric_limits<float>::infinity()).bits == 0xFF80);
  CHECK(BFloat16(-0.0f).bits == 0x8000);
  CHECK(BFloat16(f32(0x00018000)).bits == 0x0002);  // subnormal tie to even
  CHECK(BFloat16(f32(0x00000001)).bits == 0x0000);
  // NaN: stays a NaN, quiet, with its sign, even a signalling NaN whose payload lies in the low bits
  CHECK(BFloat16(f32(0x7F800001)).bits == 0x7FC0);
  CHECK(BFloat16(f32(0xFFC00000)).bits == 0xFFC0);
  CHECK(std::isnan(BFloat16(std::nanf("")).to_float()));
  CHECK(BFloat16::from_bits(0x0001).to_float() == std::ldexp(1.0f, -133));

  CHECK(Float16(1.0f).bits == 0x3C00);
  CHECK(Float16(65504.0f).bits == 0x7BFF);
  CHECK(Float16(65519.99f).bits == 0x7BFF);
  CHECK(Float16(65520.0f).bits == 0x7C00);  // the overflow tie goes to inf (65504 is odd)
  CHECK(Float16(1e6f).bits == 0x7C00);
  CHECK(Float16(-1e6f).bits == 0xFC00);
  CHECK(Float16(std::ldexp(1.0f, -24)).bits == 0x0001);  // smallest subnormal
  CHECK(Float16(std::ldexp(1.0f, -25)).bits == 0x0000);  // tie to even (0)
  CHECK(Float16(std::ldexp(1.5f, -25)).bits == 0x0001);
  CHECK(Float16(std::ldexp(3.0f, -25)).bits == 0x0002);  // 1.5 ulp: tie to even (2)
  CHECK(Float16(f32(0x387FE000)).bits == 0x0400);        // rounds up into the smallest normal
  CHECK(Float16(-0.0f).bits == 0x8000);
  CHECK(is_nan_f16(Float16(std::nanf("")).bits));
  CHECK(is_nan_f16(Float16(f32(0x7F800001)).bits));
  CHECK(Float16::from_bits(0x0001).to_float() == std::ldexp(1.0f, -24));
  CHECK(Float16::from_bits(0x7C00).to_float() == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(Float16::from_bits(0x7E00).to_float()));
}

TEST_CASE("bfloat16: every 16-bit pattern survives 16 bits -> float -> 16 bits") {
  int64_t bad_bf = 0, bad_h = 0;
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const BFloat16 x = BFloat16::from_bits(h);
    const uint16_t back = BFloat16(x.to_float()).bits;
    if (is_nan_bf16(h) ? !is_nan_bf16(back) : back != h) ++bad_bf;
    const Float16 y = Float16::from_bits(h);
    const uint16_t back_h = Float16(y.to_float()).bits;
    if (is_nan_f16(h) ? !is_nan_f16(back_h) : back_h != h) ++bad_h;
    if (!is_nan_f16(h) && (h & 0x7C00u) != 0x7C00u && static_cast<double>(y.to_float()) != half_value(h)) ++bad_h;
  }
  CHECK(bad_bf == 0);
  CHECK(bad_h == 0);
}

TEST_CASE("bfloat16: the copy kernel's vector paths give the scalar rule's bits") {
  std::mt19937 rng(123);
  std::vector<float> in;
  for (int i = 0; i < 100000; ++i) in.push_back(f32(rng()));
  for (uint32_t b : {0x00000001u, 0x807FFFFFu, 0x7F800001u, 0x7FC00000u, 0x3F808000u, 0x7F7FFFFFu})
    in.insert(in.begin() + (rng() % in.size()), f32(b));  // specials (subnormals among them) in some blocks
  for (int i = 0; i < 64; ++i) in.push_back(std::ldexp(1.0f + i / 64.0f, -130));  // a whole block of subnormals
  for (uint32_t b = 0x33000000; b < 0x38800000; b += 0x1001) in.push_back(f32(b));  // float16 subnormals and ties
  const auto n = static_cast<int64_t>(in.size());
  std::vector<BFloat16> fast(in.size()), portable(in.size());
  dl::cpu::float_to_bfloat16(fast.data(), in.data(), n);
  dl::cpu::float_to_bfloat16(portable.data(), in.data(), n, /*portable_only=*/true);
  std::vector<Float16> fast_h(in.size()), portable_h(in.size());
  dl::cpu::float_to_float16(fast_h.data(), in.data(), n);
  dl::cpu::float_to_float16(portable_h.data(), in.data(), n, /*portable_only=*/true);
  int64_t bad = 0, bad_h = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const uint16_t want = BFloat16(in[i]).bits;
    if (fast[i].bits != want || portable[i].bits != want) ++bad;
    const uint16_t want_h = Float16(in[i]).bits;
    if (fast_h[i].bits != want_h || portable_h[i].bits != want_h) ++bad_h;
  }
  CHECK(bad == 0);
  CHECK(bad_h == 0);
  MESSAGE("F16C path " << std::string(dl::cpu::has_f16c() ? "used" : "not available on this CPU"));
  MESSAGE("AVX512_BF16 path " << std::string(dl::cpu::has_avx512_bf16() ? "used" : "not available on this CPU"));

  // through Tensor::to, contiguous and strided, both directions
  Tensor t = dl::from_vector<float>(in, {n});
  Tensor b = t.to(DType::BFloat16);
  std::vector<uint16_t> got = bf16_bits(b);
  bad = 0;
  for (size_t i = 0; i < in.size(); ++i) bad += got[i] != BFloat16(in[i]).bits;
  CHECK(bad == 0);
  std::vector<float> back = b.to(DType::Float32).to_vector<float>();
  bad = 0;
  for (size_t i = 0; i < in.size(); ++i) bad += bits32(back[i]) != (static_cast<uint32_t>(got[i]) << 16);
  CHECK(bad == 0);
  Tensor h = t.to(DType::Float16);
  std::vector<uint16_t> hb = f16_bits(h);
  bad = 0;
  for (size_t i = 0; i < in.size(); ++i) bad += hb[i] != Float16(in[i]).bits;
  CHECK(bad == 0);
}

TEST_CASE("bfloat16: Tensor conversions: float32, float64, int64, uint8, float16, strided") {
  Tensor f = dl::from_vector<float>({1.0f, 0.1f, -3.140625f, 1e30f, 257.0f, 0.0f}, {2, 3});
  Tensor b = f.to(DType::BFloat16);
  CHECK(b.dtype() == DType::BFloat16);
  CHECK(b.element_size() == 2);
  CHECK(b.sizes() == dl::Shape{2, 3});
  auto v = b.to_vector<float>();
  CHECK(v[0] == 1.0f);
  CHECK(v[1] == 0.10009765625f);
  CHECK(v[2] == -3.140625f);
  CHECK(v[4] == 256.0f);  // 257 needs 9 bits; the tie goes to the even 256
  // float64 -> bfloat16 goes through float32, as PyTorch
  Tensor d = dl::from_vector<double>({0.1, -2.5, 1e300}, {3});
  auto bd = bf16_bits(d.to(DType::BFloat16));
  CHECK(bd[0] == BFloat16(0.1f).bits);
  CHECK(bd[1] == 0xC020);
  CHECK(bd[2] == 0x7F80);
  CHECK(d.to(DType::BFloat16).to(DType::Float64).to_vector<double>()[1] == -2.5);
  // int64 both ways
  Tensor i = dl::from_vector<int64_t>({-7, 0, 255, 1000}, {4});
  CHECK(i.to(DType::BFloat16).to(DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{-7, 0, 255, 1000});
  CHECK(dl::from_vector<int64_t>({1001}, {1}).to(DType::BFloat16).item<int64_t>() == 1000);
  CHECK(dl::from_vector<uint8_t>({3, 200}, {2}).to(DType::Float16).to_vector<double>() == std::vector<double>{3, 200});
  // bfloat16 <-> float16 (through float)
  CHECK(b.to(DType::Float16).to(DType::Float32).to_vector<float>()[2] == -3.140625f);
  CHECK(f16_bits(b.to(DType::Float16))[3] == 0x7C00);  // 1e30 is past float16's range
  // strided: a transposed view converts element by element
  Tensor tt = f.t().to(DType::BFloat16);
  CHECK(tt.sizes() == dl::Shape{3, 2});
  CHECK(tt.to_vector<float>() == std::vector<float>{v[0], v[3], v[1], v[4], v[2], v[5]});
}

TEST_CASE("bfloat16: creation, item, at, fill, clone, contiguous and views") {
  for (DType dt : {DType::BFloat16, DType::Float16}) {
    INFO(dl::dtype_name(dt));
    Tensor z = dl::zeros({2, 3}, dt);
    CHECK(z.dtype() == dt);
    CHECK(z.to_vector<float>() == std::vector<float>(6, 0.0f));
    CHECK(dl::ones({4}, dt).to_vector<double>() == std::vector<double>(4, 1.0));
    CHECK(dl::full({2}, -1.5, dt).to_vector<float>() == std::vector<float>{-1.5f, -1.5f});
    Tensor e = dl::empty({3, 0}, dt);
    CHECK(e.numel() == 0);
    CHECK(dl::arange(0.0, 4.0, 1.0, dt).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3});
    Tensor r = dl::randn({1000}, dt);
    CHECK(r.dtype() == dt);
    CHECK(r.to(DType::Float32).abs().max().item<float>() < 10.0f);

    Tensor a = dl::arange(0.0, 12.0, 1.0, dt).view({3, 4});
    CHECK(a.select(0, 1).select(0, 2).item<float>() == 6.0f);
    CHECK(a.at<double>({2, 3}) == 11.0);
    CHECK(a.select(0, 2).select(0, 1).item<int64_t>() == 9);
    Tensor s = a.slice(1, 1, 4, 2);  // columns 1 and 3
    CHECK_FALSE(s.is_contiguous());
    Tensor sc = s.contiguous();
    CHECK(sc.is_contiguous());
    CHECK(sc.dtype() == dt);
    CHECK(sc.to_vector<float>() == std::vector<float>{1, 3, 5, 7, 9, 11});
    Tensor c = a.clone();
    c.fill_(2.0);
    CHECK(c.to_vector<float>() == std::vector<float>(12, 2.0f));
    CHECK(a.to_vector<float>()[5] == 5.0f);  // the clone owns its storage
    a.select(0, 0).fill_(7.0);               // fill through a view
    CHECK(a.to_vector<float>()[3] == 7.0f);
    CHECK(a.to_vector<float>()[4] == 4.0f);
    Tensor tr = a.t();
    CHECK(tr.at<float>({3, 1}) == 7.0f);
    CHECK(tr.contiguous().to_vector<float>()[1] == 4.0f);
    // copy_ converts into a 16-bit destination, broadcasting
    Tensor dst = dl::zeros({2, 2}, dt);
    dst.copy_(dl::from_vector<float>({0.5f, 2.0f}, {2}));
    CHECK(dst.to_vector<float>() == std::vector<float>{0.5f, 2.0f, 0.5f, 2.0f});
    // cat and where only move values
    Tensor cat = dl::cat({dst, dl::ones({1, 2}, dt)}, 0);
    CHECK(cat.dtype() == dt);
    CHECK(cat.to_vector<float>() == std::vector<float>{0.5f, 2.0f, 0.5f, 2.0f, 1.0f, 1.0f});
    Tensor cond = dl::from_vector<uint8_t>({1, 0}, {2});
    Tensor w = dl::where(cond, dl::ones({2}, dt), dl::zeros({2}, dt));
    CHECK(w.dtype() == dt);
    CHECK(w.to_vector<float>() == std::vector<float>{1.0f, 0.0f});
  }
  CHECK(dl::from_vector<BFloat16>({BFloat16(1.5f), BFloat16(-2.0f)}, {2}).to_vector<float>() ==
        std::vector<float>{1.5f, -2.0f});
  CHECK(dl::scalar_tensor(3.0, DType::BFloat16).item<BFloat16>().bits == 0x4040);
  CHECK(dl::scalar_tensor(0.1, DType::Float16).item<Float16>().bits == 0x2E66);
  check_throws_with([] { (void)dl::ones({2}, DType::BFloat16).item<float>(); }, {"item() needs a tensor with one element"});
  check_throws_with([] { (void)dl::ones({2}, DType::BFloat16).data_ptr<float>(); }, {"data_ptr<float32>()", "bfloat16"});
}

TEST_CASE("bfloat16: printing shows the stored values") {
  Tensor b = dl::from_vector<float>({1.0f, 0.1f, -2.5f}, {3}).to(DType::BFloat16);
  const std::string s = fmt::format("{}", b);
  CHECK(s.find("[1.0000, 0.1001, -2.5000]") != std::string::npos);
  CHECK(s.find("dtype=bfloat16") != std::string::npos);
  const std::string h = dl::scalar_tensor(0.1, DType::Float16).str();
  CHECK(h.find("tensor(0.1000") != std::string::npos);  // 0.0999755859375
  CHECK(h.find("dtype=float16") != std::string::npos);
  std::ostringstream os;
  os << dl::from_vector<float>({std::nanf(""), 1e38f}, {2}).to(DType::BFloat16);
  CHECK(os.str().find("nan") != std::string::npos);
}

TEST_CASE("bfloat16: promotion follows PyTorch, and what promotes to float32 computes") {
  using dl::promote_types;
  CHECK(promote_types(DType::BFloat16, DType::Float16) == DType::Float32);
  CHECK(promote_types(DType::Float16, DType::BFloat16) == DType::Float32);
  CHECK(promote_types(DType::BFloat16, DType::Float32) == DType::Float32);
  CHECK(promote_types(DType::Float64, DType::Float16) == DType::Float64);
  CHECK(promote_types(DType::Int64, DType::BFloat16) == DType::BFloat16);
  CHECK(promote_types(DType::UInt8, DType::Float16) == DType::Float16);
  CHECK(promote_types(DType::BFloat16, DType::BFloat16) == DType::BFloat16);
  CHECK(dl::is_low_precision(DType::BFloat16));
  CHECK_FALSE(dl::is_floating(DType::BFloat16));
  CHECK(dl::is_floating_point(DType::Float16));

  Tensor b = dl::from_vector<float>({1.0f, 2.0f}, {2}).to(DType::BFloat16);
  Tensor h = dl::from_vector<float>({0.5f, 0.25f}, {2}).to(DType::Float16);
  Tensor sum = b + h;
  CHECK(sum.dtype() == DType::Float32);
  CHECK(sum.to_vector<float>() == std::vector<float>{1.5f, 2.25f});
  Tensor f = b * dl::from_vector<float>({3.0f, 4.0f}, {2});
  CHECK(f.dtype() == DType::Float32);
  CHECK(f.to_vector<float>() == std::vector<float>{3.0f, 8.0f});
  // comparison helpers of the tests read any dtype
  CHECK(dl::allclose(b, dl::from_vector<float>({1.0f, 2.0f}, {2})));
  CHECK(dl::max_difference(h, dl::from_vector<float>({0.5f, 0.0f}, {2})).abs_diff == 0.25);
}

TEST_CASE("bfloat16: arithmetic on a 16-bit tensor refuses with the op, the dtype and the way out") {
  Tensor b = dl::ones({2, 2}, DType::BFloat16);
  Tensor h = dl::ones({2, 2}, DType::Float16);
  const std::string hint = ".to(DType::Float32)";
  check_throws_with([&] { (void)b.exp(); }, {"exp", "bfloat16", hint});
  check_throws_with([&] { (void)h.relu(); }, {"relu", "float16", hint});
  check_throws_with([&] { (void)(b + b); }, {"add", "bfloat16", hint});
  check_throws_with([&] { (void)(b * 2.0); }, {"mul", "bfloat16", hint});
  check_throws_with([&] { (void)(dl::ones({2, 2}, DType::Int64) + b); }, {"add", "bfloat16", hint});
  check_throws_with([&] { (void)b.sum(); }, {"sum", "bfloat16", hint});
  check_throws_with([&] { (void)h.mean(); }, {"mean", "float16", hint});
  check_throws_with([&] { (void)b.max(1); }, {"max", "bfloat16", hint});
  check_throws_with([&] { (void)b.matmul(b); }, {"matmul", "bfloat16", hint});
  check_throws_with([&] { (void)b.softmax(1); }, {"softmax", "bfloat16", hint});
  check_throws_with([&] { (void)b.pow(2.0); }, {"pow", "bfloat16", hint});
  check_throws_with([&] { (void)b.index_select(0, dl::zeros({1}, DType::Int64)); }, {"index_select", "bfloat16", hint});
  check_throws_with([&] { b.add_(b); }, {"add_", "bfloat16", hint});
  check_throws_with([&] { b.mul_(2.0); }, {"mul", "bfloat16", hint});
  check_throws_with([&] { (void)dl::ones({2}, {DType::BFloat16, dl::kCPU, true}); }, {"requires_grad", "bfloat16", hint});
  dl::Conv2dParams p;
  check_throws_with([&] { (void)dl::ops::conv2d_forward(dl::ones({1, 1, 3, 3}, DType::BFloat16), dl::ones({1, 1, 1, 1}, DType::BFloat16), Tensor(), p); },
                    {"conv2d", "bfloat16", hint});
  // a float32 layer given a bfloat16 input
  dl::nn::Linear lin(2, 2);
  check_throws_with([&] { (void)lin.forward(b); }, {"bfloat16", hint});
  // the way out works
  CHECK((b.to(DType::Float32) + b.to(DType::Float32)).to(DType::BFloat16).to_vector<float>() ==
        std::vector<float>(4, 2.0f));
}

// ---- weight files -------------------------------------------------------------------------------

TEST_CASE("bfloat16: safetensors round trip in bfloat16 and float16") {
  dl::test::TmpDir tmp;
  const std::vector<float> vals{1.0f, 0.1f, -3.0e-39f, 65504.0f, 1e20f, -0.0f};
  Tensor b = dl::from_vector<float>(vals, {2, 3}).to(DType::BFloat16);
  Tensor h = dl::from_vector<float>(vals, {2, 3}).to(DType::Float16);
  const std::string p = tmp.path("w.safetensors");
  dl::save_safetensors(p, {{"b", b}, {"h_t", h.t()}, {"f", dl::ones({1})}});
  // the file holds BF16 and F16 bytes
  const dl::io::RawStateDict raw = dl::io::load_safetensors(p);
  REQUIRE(raw.size() == 3);
  CHECK(raw[0].second.dtype == dl::io::RawDType::BF16);
  CHECK(raw[1].second.dtype == dl::io::RawDType::F16);
  CHECK(raw[1].second.shape == std::vector<int64_t>{3, 2});
  {
    const auto bytes = raw[0].second.contiguous_bytes();
    std::vector<uint16_t> u(bytes.size() / 2);
    std::memcpy(u.data(), bytes.data(), bytes.size());
    CHECK(u == bf16_bits(b));
  }
  // dl::load_safetensors keeps the dtypes; load_weights gives float32 (exactly the 16-bit values)
  dl::TensorDict back = dl::load_safetensors(p);
  CHECK(back[0].second.dtype() == DType::BFloat16);
  CHECK(bf16_bits(back[0].second) == bf16_bits(b));
  CHECK(back[1].second.dtype() == DType::Float16);
  CHECK(f16_bits(back[1].second) == f16_bits(h.t()));
  dl::TensorDict as32 = dl::load_weights(p);
  CHECK(as32[0].second.dtype() == DType::Float32);
  CHECK(as32[0].second.to_vector<float>() == b.to_vector<float>());
  CHECK(as32[1].second.to_vector<float>() == h.t().to_vector<float>());
  // saving what was loaded is byte-identical
  const std::string p2 = tmp.path("w2.safetensors");
  dl::save_safetensors(p2, back);
  CHECK(dl::test::read_file(p2) == dl::test::read_file(p));
}

TEST_CASE("bfloat16: a safetensors file written from PyTorch reads back with PyTorch's rounding") {
  const std::string dir = dl::test::fixtures_dir();
  if (dir.empty()) DL_SKIP("DL_FIXTURES_DIR is not set (ctest's make_torch_fixtures writes tests/fixtures/make_bfloat16.py's files)");
  const std::string p = dir + "/bfloat16.safetensors";
  dl::TensorDict d = dl::load_safetensors(p);
  const Tensor* src = dl::find_tensor(d, "src");
  const Tensor* b = dl::find_tensor(d, "bf16");
  const Tensor* h = dl::find_tensor(d, "f16");
  REQUIRE(src);
  REQUIRE(b);
  REQUIRE(h);
  CHECK(b->dtype() == DType::BFloat16);
  CHECK(h->dtype() == DType::Float16);
  const auto x = src->to_vector<float>();
  const auto want_b = bf16_bits(*b), want_h = f16_bits(*h);
  const auto got_b = bf16_bits(src->to(DType::BFloat16)), got_h = f16_bits(src->to(DType::Float16));
  REQUIRE(x.size() > 4000);
  int64_t bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      bad += !is_nan_bf16(got_b[i]) || !is_nan_bf16(want_b[i]) || !is_nan_f16(got_h[i]) || !is_nan_f16(want_h[i]);
    } else {
      if (got_b[i] != want_b[i] || got_h[i] != want_h[i]) {
        if (++bad < 5)
          FAIL_CHECK("element " << i << " bits " << std::hex << bits32(x[i]) << ": bf16 " << got_b[i] << " vs torch "
                                << want_b[i] << ", f16 " << got_h[i] << " vs torch " << want_h[i]);
      }
    }
  }
  CHECK(bad == 0);
  // and what we write, PyTorch's layout: same dtype strings, same data bytes
  dl::test::TmpDir tmp;
  const std::string q = tmp.path("ours.safetensors");
  dl::save_safetensors(q, {{"src", *src}, {"bf16", src->to(DType::BFloat16)}, {"f16", src->to(DType::Float16)}});
  const dl::io::RawStateDict theirs = dl::io::load_safetensors(p), ours = dl::io::load_safetensors(q);
  for (size_t k = 0; k < 3; ++k) {
    CHECK(theirs[k].second.dtype == ours[k].second.dtype);
    if (k == 0) CHECK(theirs[k].second.contiguous_bytes() == ours[k].second.contiguous_bytes());
  }
}

TEST_CASE("bfloat16: load_state_dict converts bfloat16 weights into a float32 model") {
  const std::string dir = dl::test::fixtures_dir();
  if (dir.empty()) DL_SKIP("DL_FIXTURES_DIR is not set (ctest's make_torch_fixtures writes tests/fixtures/make_bfloat16.py's files)");
  const dl::TensorDict want = dl::load_weights(dir + "/bf16_linear_f32.safetensors");
  for (bool keep : {false, true}) {
    INFO("keep the file's dtypes: " << keep);
    dl::TensorDict sd = dl::load_safetensors(dir + "/bf16_linear.safetensors", nullptr, keep);
    CHECK(sd[0].second.dtype() == (keep ? DType::BFloat16 : DType::Float32));
    dl::nn::Linear lin(3, 2);
    lin.load_state_dict(dl::nn::StateDict(sd.begin(), sd.end()));
    for (const auto& [name, p] : lin.state_dict()) {
      INFO(name);
      CHECK(p.dtype() == DType::Float32);
      CHECK(p.to_vector<float>() == dl::find_tensor(want, name)->to_vector<float>());
    }
  }
}

TEST_CASE("bfloat16: checkpoints and ONNX tensors keep 16-bit tensors") {
  dl::test::TmpDir tmp;
  Tensor b = dl::from_vector<float>({0.3f, -7.0f, 1e-40f}, {3}).to(DType::BFloat16);
  Tensor h = dl::from_vector<float>({0.3f, -7.0f, 6e-8f}, {3}).to(DType::Float16);
  dl::Checkpoint ck;
  ck.model = {{"w", b}};
  ck.optimizer = {{"m", h}};
  ck.meta = {{"epoch", 1}};
  const std::string p = tmp.path("ck.safetensors");
  dl::save_checkpoint(p, ck);
  dl::Checkpoint back = dl::load_checkpoint(p);
  CHECK(back.model[0].second.dtype() == DType::BFloat16);
  CHECK(bf16_bits(back.model[0].second) == bf16_bits(b));
  CHECK(f16_bits(back.optimizer[0].second) == f16_bits(h));

  const std::string q = tmp.path("t.pb");
  dl::onnx::write_tensor_proto(q, b, "b");
  Tensor rb = dl::onnx::read_tensor_proto(q);
  CHECK(rb.dtype() == DType::BFloat16);
  CHECK(bf16_bits(rb) == bf16_bits(b));
  dl::onnx::write_tensor_proto(q, h, "h");
  CHECK(f16_bits(dl::onnx::read_tensor_proto(q)) == f16_bits(h));
}

TEST_CASE("bfloat16: the vector conversion's masked tail (every length to 70, a subnormal in some tails)") {
  std::mt19937 rng(7);
  int64_t bad = 0;
  for (int64_t n = 0; n <= 70; ++n) {
    std::vector<float> in(static_cast<size_t>(n));
    for (auto& v : in) v = std::uniform_real_distribution<float>(-3.0f, 3.0f)(rng);
    if (n % 3 == 1) in[static_cast<size_t>(n - 1)] = f32(0x00000123u);  // a subnormal as the last value
    std::vector<BFloat16> fast(in.size() + 1, BFloat16::from_bits(0xABCD)), portable = fast;
    dl::cpu::float_to_bfloat16(fast.data(), in.data(), n);
    dl::cpu::float_to_bfloat16(portable.data(), in.data(), n, /*portable_only=*/true);
    for (size_t i = 0; i <= in.size(); ++i) bad += fast[i].bits != portable[i].bits;  // the guard value untouched too
  }
  CHECK(bad == 0);
}
