// CUDA elementwise kernels against the CPU ones: unary, pow, binary (broadcast, type promotion,
// comparisons), where, copy with dtype conversion, fill; contiguous (vectorised), misaligned,
// strided and broadcast operands, odd sizes, every dtype, and a tensor above 2^31 elements.
#include <functional>

#include "cuda_test_util.h"

using namespace dl;
using dl::test::to_cpu;
using dl::test::to_gpu;
using ops::BinaryOp;
using ops::UnaryOp;

namespace {

const std::vector<Shape> kShapes = {{}, {1}, {7}, {1023}, {4099}, {3, 5, 7}, {2, 1, 33, 65}, {129, 257}};

// Views that exercise the launch variants: as is (vectorised), offset by one element (contiguous
// but misaligned), transposed, every second element, and a broadcast row.
std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> views(const Shape& s) {
  std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> v;
  v.push_back({"contiguous", [](const Tensor& t) { return t; }});
  if (!s.empty() && s[0] > 1) v.push_back({"offset", [](const Tensor& t) { return ops::slice(t, 0, 1, t.size(0), 1); }});
  if (s.size() >= 2) v.push_back({"transposed", [](const Tensor& t) { return ops::transpose(t, 0, -1); }});
  if (!s.empty() && s.back() > 1)
    v.push_back({"step2", [](const Tensor& t) { return ops::slice(t, -1, 0, t.size(-1), 2); }});
  if (s.size() >= 2)
    v.push_back({"expanded", [](const Tensor& t) { return ops::expand(ops::slice(t, 0, 0, 1, 1), t.sizes()); }});
  return v;
}

}  // namespace

TEST_CASE("unary ops and pow match the CPU (float32, float64) on every view") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(11);
  struct Op {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
  };
  auto positive = [](const Tensor& t) { return ops::binary_scalar(BinaryOp::Add, ops::unary(UnaryOp::Abs, t), 0.1); };
  const std::vector<Op> unary_ops = {
      {"neg", [](const Tensor& t) { return ops::unary(UnaryOp::Neg, t); }},
      {"exp", [](const Tensor& t) { return ops::unary(UnaryOp::Exp, t); }},
      {"log", [&](const Tensor& t) { return ops::unary(UnaryOp::Log, positive(t)); }},
      {"sqrt", [&](const Tensor& t) { return ops::unary(UnaryOp::Sqrt, positive(t)); }},
      {"abs", [](const Tensor& t) { return ops::unary(UnaryOp::Abs, t); }},
      {"relu", [](const Tensor& t) { return ops::unary(UnaryOp::Relu, t); }},
      {"sigmoid", [](const Tensor& t) { return ops::unary(UnaryOp::Sigmoid, ops::binary_scalar(BinaryOp::Mul, t, 20.0)); }},
      {"tanh", [](const Tensor& t) { return ops::unary(UnaryOp::Tanh, t); }},
      {"sign", [](const Tensor& t) { return ops::unary(UnaryOp::Sign, t); }},
      {"pow2", [](const Tensor& t) { return ops::pow_scalar(t, 2.0); }},
      {"pow0.5", [&](const Tensor& t) { return ops::pow_scalar(positive(t), 0.5); }},
      {"pow3.3", [&](const Tensor& t) { return ops::pow_scalar(positive(t), 3.3); }},
  };
  for (DType dt : {DType::Float32, DType::Float64}) {
    // float32: the GPU's expf/logf/tanhf/powf are within 2 ulp of glibc's
    const double rtol = dt == DType::Float32 ? 2e-6 : 1e-14, atol = dt == DType::Float32 ? 1e-7 : 1e-15;
    for (const Shape& s : kShapes) {
      Tensor x = test::uniform(s, dt, g);
      Tensor xg = to_gpu(x);
      for (const auto& [vname, view] : views(s)) {
        for (const Op& op : unary_ops) {
          CAPTURE(dtype_name(dt));
          CAPTURE(shape_str(s));
          CAPTURE(vname);
          CAPTURE(op.name);
          CHECK_GPU_CLOSE(op.f(view(xg)), op.f(view(x)), rtol, atol);
        }
      }
    }
  }
}

TEST_CASE("integer unary ops (neg, abs, relu, sign) match the CPU, uint8 wrapping included") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(12);
  for (DType dt : {DType::Int64, DType::UInt8}) {
    for (const Shape& s : kShapes) {
      Tensor x = test::uniform(s, dt, g, dt == DType::UInt8 ? 0 : -50, 50);
      Tensor xg = to_gpu(x);
      for (UnaryOp op : {UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Relu, UnaryOp::Sign}) {
        CAPTURE(dtype_name(dt));
        CAPTURE(shape_str(s));
        CAPTURE(static_cast<int>(op));
        CHECK_GPU_CLOSE(ops::unary(op, xg), ops::unary(op, x), 0, 0);
      }
    }
  }
}

TEST_CASE("binary ops and comparisons match the CPU with broadcasting, promotion and strides") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(13);
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{}, {}}, {{1023}, {1023}}, {{4099}, {}}, {{3, 1, 5}, {4, 1}}, {{2, 3, 4, 5}, {5}}, {{129, 257}, {129, 1}},
      {{1, 7}, {6, 1}}};
  const std::vector<BinaryOp> all = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Maximum,
                                     BinaryOp::Minimum, BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt, BinaryOp::Le,
                                     BinaryOp::Gt, BinaryOp::Ge};
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8}) {
    const bool fl = is_floating(dt);
    for (const auto& [sa, sb] : pairs) {
      // integer divisors are kept away from zero (ops::binary refuses a zero divisor)
      Tensor a = test::uniform(sa, dt, g, fl ? -3 : 1, fl ? 3 : 60);
      Tensor b = test::uniform(sb, dt, g, fl ? -3 : 1, fl ? 3 : 9);
      if (fl && a.numel() > 2) ops::copy_(ops::slice(ops::view(a, {-1}), 0, 0, 1, 1), ops::slice(ops::view(b, {-1}), 0, 0, 1, 1));
      Tensor ag = to_gpu(a), bg = to_gpu(b);
      for (BinaryOp op : all) {
        CAPTURE(dtype_name(dt));
        CAPTURE(shape_str(sa));
        CAPTURE(shape_str(sb));
        CAPTURE(static_cast<int>(op));
        CHECK_GPU_CLOSE(ops::binary(op, ag, bg), ops::binary(op, a, b), 0, 0);
        // the same on transposed (broadcast, so strided) operands
        const Shape out = broadcast_shapes(sa, sb);
        if (out.size() >= 2) {
          auto tr = [&](const Tensor& t) { return ops::transpose(ops::expand(t, out), 0, -1); };
          CHECK_GPU_CLOSE(ops::binary(op, tr(ag), tr(bg)), ops::binary(op, tr(a), tr(b)), 0, 0);
        }
      }
    }
  }
  // NaN propagates through maximum/minimum; type promotion int64 + float32 -> float32
  Tensor a = from_vector<float>({1.f, NAN, 3.f, -1.f}, {4});
  Tensor b = from_vector<float>({NAN, 2.f, 1.f, -2.f}, {4});
  CHECK_GPU_CLOSE(ops::binary(BinaryOp::Maximum, to_gpu(a), to_gpu(b)), ops::binary(BinaryOp::Maximum, a, b), 0, 0);
  CHECK_GPU_CLOSE(ops::binary(BinaryOp::Minimum, to_gpu(a), to_gpu(b)), ops::binary(BinaryOp::Minimum, a, b), 0, 0);
  Tensor i = from_vector<int64_t>({1, 2, 3, 4}, {4});
  Tensor mixed = ops::binary(BinaryOp::Add, to_gpu(i), to_gpu(b));
  CHECK(mixed.dtype() == DType::Float32);
  CHECK_GPU_CLOSE(mixed, ops::binary(BinaryOp::Add, i, b), 0, 0);
  // in place: add_ with alpha, into a non-contiguous view
  Tensor base = test::uniform({6, 8}, DType::Float32, g), inc = test::uniform({8}, DType::Float32, g);
  Tensor bg2 = to_gpu(base);
  ops::add_(ops::transpose(ops::view(base, {8, 6}), 0, 1), ops::view(inc, {1, 8}), 0.5);
  ops::add_(ops::transpose(ops::view(bg2, {8, 6}), 0, 1), ops::view(to_gpu(inc), {1, 8}), 0.5);
  CHECK_GPU_CLOSE(bg2, base, 1e-7, 1e-7);
}

TEST_CASE("where matches the CPU with a broadcast condition") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(14);
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8}) {
    Tensor a = test::uniform({4, 1, 9}, dt, g, 0, 50), b = test::uniform({3, 1}, dt, g, 0, 50);
    Tensor cond = ops::binary(BinaryOp::Gt, test::uniform({4, 3, 9}, DType::Float32, g), zeros({}));
    CAPTURE(dtype_name(dt));
    CHECK_GPU_CLOSE(ops::where(to_gpu(cond), to_gpu(a), to_gpu(b)), ops::where(cond, a, b), 0, 0);
    Tensor ct = ops::transpose(cond, 0, 2);
    CHECK_GPU_CLOSE(ops::where(ops::transpose(to_gpu(cond), 0, 2), to_gpu(ops::transpose(ops::expand(a, {4, 3, 9}), 0, 2)), to_gpu(ops::transpose(ops::expand(b, {4, 3, 9}), 0, 2))),
                    ops::where(ct, ops::transpose(ops::expand(a, {4, 3, 9}), 0, 2), ops::transpose(ops::expand(b, {4, 3, 9}), 0, 2)), 0, 0);
  }
}

TEST_CASE("copy converts between every pair of dtypes and writes strided destinations") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(15);
  const std::vector<DType> dts = {DType::Float32, DType::Float64, DType::Int64, DType::UInt8};
  for (DType from : dts) {
    // values every dtype holds exactly or truncates the same way (non-negative, below 256)
    Tensor x = test::uniform({5, 6, 7}, from, g, 0, 250);
    Tensor xg = to_gpu(x);
    for (DType to : dts) {
      CAPTURE(dtype_name(from));
      CAPTURE(dtype_name(to));
      CHECK_GPU_CLOSE(ops::to_dtype(xg, to), ops::to_dtype(x, to), 0, 0);
      CHECK_GPU_CLOSE(ops::to_dtype(ops::transpose(xg, 0, 2), to), ops::to_dtype(ops::transpose(x, 0, 2), to), 0, 0);
      Tensor dc = zeros({7, 6, 5}, to), dg = zeros({7, 6, 5}, {to, test::gpu()});
      ops::copy_(ops::transpose(dc, 0, 2), x);
      ops::copy_(ops::transpose(dg, 0, 2), xg);
      CHECK_GPU_CLOSE(dg, dc, 0, 0);
    }
  }
}

TEST_CASE("fill writes every element of contiguous, misaligned and strided tensors") {
  DL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8}) {
    for (const Shape& s : kShapes) {
      for (const auto& [vname, view] : views(s)) {
        if (vname == "expanded") continue;  // writing through a broadcast view is not meaningful
        Tensor c = zeros(s, dt), gt = zeros(s, {dt, test::gpu()});
        ops::fill_(view(c), 7.0);
        ops::fill_(view(gt), 7.0);
        CAPTURE(dtype_name(dt));
        CAPTURE(shape_str(s));
        CAPTURE(vname);
        CHECK_GPU_CLOSE(gt, c, 0, 0);
      }
    }
  }
}

TEST_CASE("random shapes, permutations and slices: binary, unary, copy and reductions match the CPU") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(16);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t nd = 1 + static_cast<int64_t>(g.below(5));
    Shape s;
    for (int64_t d = 0; d < nd; ++d) s.push_back(1 + static_cast<int64_t>(g.below(d == nd - 1 ? 70 : 9)));
    std::vector<int64_t> perm(nd);
    for (int64_t d = 0; d < nd; ++d) perm[d] = d;
    for (int64_t d = nd - 1; d > 0; --d) std::swap(perm[d], perm[g.below(static_cast<uint64_t>(d + 1))]);
    const int64_t sd = static_cast<int64_t>(g.below(static_cast<uint64_t>(nd)));
    const int64_t step = 1 + static_cast<int64_t>(g.below(3));
    // the same view on both devices: permuted, then sliced with a step along one dim
    auto view = [&](const Tensor& t) { return ops::slice(ops::permute(t, perm), sd, 0, t.size(perm[sd]), step); };
    Tensor a = test::uniform(s, DType::Float32, g), b = test::uniform(s, DType::Float32, g);
    Tensor ag = to_gpu(a), bg = to_gpu(b);
    CAPTURE(trial);
    CAPTURE(shape_str(s));
    CHECK_GPU_CLOSE(ops::binary(BinaryOp::Mul, view(ag), view(bg)), ops::binary(BinaryOp::Mul, view(a), view(b)), 0, 0);
    CHECK_GPU_CLOSE(ops::unary(UnaryOp::Exp, view(ag)), ops::unary(UnaryOp::Exp, view(a)), 2e-6, 1e-7);
    CHECK_GPU_CLOSE(ops::contiguous(view(ag)), ops::contiguous(view(a)), 0, 0);
    const std::vector<int64_t> dims{static_cast<int64_t>(g.below(static_cast<uint64_t>(nd)))};
    CHECK_GPU_CLOSE(ops::reduce(ops::ReduceOp::Sum, view(ag), dims, false), ops::reduce(ops::ReduceOp::Sum, view(a), dims, false),
                    1e-6, 1e-6);
  }
}

TEST_CASE("elementwise kernels index past 2^31 elements (64-bit offsets, grid-stride loops)") {
  DL_SKIP_WITHOUT_CUDA();
  const int64_t n = (int64_t(1) << 31) + 76;  // uint8: 2 GiB per tensor; even
  Tensor a = full({n}, 3.0, {DType::UInt8, test::gpu()});
  Tensor b = ops::binary_scalar(BinaryOp::Mul, a, 5.0);  // contiguous path
  // strided path with offsets beyond int32: every second element of a 2n view
  Tensor wide = zeros({2, n}, {DType::UInt8, test::gpu()});
  ops::copy_(ops::select(wide, 0, 1), b);
  auto tail = [&](const Tensor& t) { return to_cpu(ops::slice(t, -1, n - 3, n, 1)).to_vector<int64_t>(); };
  CHECK(tail(b) == std::vector<int64_t>{15, 15, 15});
  CHECK(tail(ops::select(wide, 0, 1)) == std::vector<int64_t>{15, 15, 15});
  CHECK(tail(ops::select(wide, 0, 0)) == std::vector<int64_t>{0, 0, 0});
  // (2, 2, n/2) with strides (n, 1, 2): no dims merge, offsets beyond int32
  Tensor t = ops::transpose(ops::view(wide, {2, n / 2, 2}), 1, 2);
  Tensor u = ops::binary_scalar(BinaryOp::Add, t, 1.0);
  const int64_t h = n / 2;
  CHECK(to_cpu(ops::slice(ops::select(ops::select(u, 0, 1), 0, 1), 0, h - 3, h, 1)).to_vector<int64_t>() ==
        std::vector<int64_t>{16, 16, 16});
  CHECK(to_cpu(ops::slice(ops::select(ops::select(u, 0, 0), 0, 1), 0, h - 3, h, 1)).to_vector<int64_t>() ==
        std::vector<int64_t>{1, 1, 1});
}
