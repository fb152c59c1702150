// CUDA reductions, argmax, softmax, gather/scatter and matmul against the CPU: each launch shape
// of the row reductions (warp, block, split rows), NaN and tie rules, dims in the middle, and
// the GEMM through cuBLAS and the hand-written kernel (transposes, broadcast batches, K = 0,
// split-K), float64 included.
#include "cuda_test_util.h"

using namespace dl;
using dl::test::to_cpu;
using dl::test::to_gpu;
using ops::BinaryOp;
using ops::ReduceOp;

TEST_CASE("sum / mean / max / min over any dims match the CPU on every launch shape") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(21);
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
  };
  const std::vector<Case> cases = {
      {{}, {}},            {{1}, {}},           {{17}, {0}},            {{5000, 17}, {1}},      // warp per row
      {{300, 700}, {1}},   {{3, 100001}, {1}},  {{1, 300000}, {}},      {{2, 70000, 3}, {1}},   // block, split
      {{4, 5, 6}, {0, 2}}, {{4, 5, 6}, {1}},    {{0, 4}, {0}},          {{6, 0}, {1}}};
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64}) {
    for (const Case& c : cases) {
      Tensor x = test::uniform(c.shape, dt, g, -100, 100);
      Tensor xg = to_gpu(x);
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min}) {
        const bool empty_reduce = x.numel() == 0 && (c.dims.empty() || x.size(c.dims[0]) == 0);
        if ((op == ReduceOp::Max || op == ReduceOp::Min) && empty_reduce) {
          CHECK_THROWS_AS(ops::reduce(op, xg, c.dims, false), Error);
          continue;
        }
        for (bool keepdim : {false, true}) {
          CAPTURE(dtype_name(dt));
          CAPTURE(shape_str(c.shape));
          CAPTURE(static_cast<int>(op));
          CAPTURE(keepdim);
          // both accumulate float sums in double: only the summation order differs
          const double rtol = dt == DType::Float32 ? 1e-6 : 1e-12;
          CHECK_GPU_CLOSE(ops::reduce(op, xg, c.dims, keepdim), ops::reduce(op, x, c.dims, keepdim), rtol, 1e-9);
        }
      }
    }
  }
  // uint8 sums go through int64, means through float64
  Tensor u = test::uniform({33, 65}, DType::UInt8, g, 0, 255);
  CHECK_GPU_CLOSE(ops::reduce(ReduceOp::Sum, to_gpu(u), {1}, false), ops::reduce(ReduceOp::Sum, u, {1}, false), 0, 0);
  CHECK_GPU_CLOSE(ops::reduce(ReduceOp::Mean, to_gpu(u), {0}, false), ops::reduce(ReduceOp::Mean, u, {0}, false), 1e-15, 0);
  // var (mean, subtract, square, sum)
  Tensor v = test::uniform({7, 9, 11}, DType::Float64, g);
  CHECK_GPU_CLOSE(ops::var(to_gpu(v), {0, 2}, true, false), ops::var(v, {0, 2}, true, false), 1e-12, 1e-14);
}

TEST_CASE("max over a dim: values and first indices, NaN and ties as on the CPU") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(22);
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8}) {
    for (const Shape& s : std::vector<Shape>{{7}, {40, 33}, {3, 5000}, {2, 300000}, {6, 4, 5}}) {
      // few distinct values: many ties
      Tensor x = test::uniform(s, dt, g, 0, 4);
      for (int64_t dim = 0; dim < static_cast<int64_t>(s.size()); ++dim) {
        CAPTURE(dtype_name(dt));
        CAPTURE(shape_str(s));
        CAPTURE(dim);
        auto [vc, ic] = ops::max_dim(x, dim, false);
        auto [vg, ig] = ops::max_dim(to_gpu(x), dim, false);
        CHECK_GPU_CLOSE(vg, vc, 0, 0);
        CHECK_GPU_CLOSE(ig, ic, 0, 0);
      }
    }
  }
  Tensor n = from_vector<float>({1.f, 5.f, NAN, 5.f, NAN, 2.f, 7.f, 7.f, 0.f}, {3, 3});
  auto [vc, ic] = ops::max_dim(n, 1, true);
  auto [vg, ig] = ops::max_dim(to_gpu(n), 1, true);
  CHECK_GPU_CLOSE(vg, vc, 0, 0);  // NaN == NaN for CHECK_CLOSE
  CHECK_GPU_CLOSE(ig, ic, 0, 0);
  CHECK(to_cpu(ig).to_vector<int64_t>() == std::vector<int64_t>{2, 1, 0});
  CHECK(std::isnan(ops::reduce(ReduceOp::Max, to_gpu(n), {}, false).item<float>()));
  CHECK(std::isnan(ops::reduce(ReduceOp::Min, to_gpu(n), {}, false).item<float>()));
}

TEST_CASE("softmax and log_softmax, forward and backward, over first, middle and last dims") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(23);
  for (DType dt : {DType::Float32, DType::Float64}) {
    const double rtol = dt == DType::Float32 ? 1e-5 : 1e-12, atol = dt == DType::Float32 ? 1e-7 : 1e-15;
    for (const Shape& s : std::vector<Shape>{{5}, {64, 10}, {3, 2000}, {2, 7, 9}, {4, 1500, 3}, {1, 1}}) {
      Tensor x = ops::binary_scalar(BinaryOp::Mul, test::uniform(s, dt, g), 5.0);
      Tensor gr = test::uniform(s, dt, g);
      for (int64_t dim = 0; dim < static_cast<int64_t>(s.size()); ++dim) {
        CAPTURE(dtype_name(dt));
        CAPTURE(shape_str(s));
        CAPTURE(dim);
        Tensor y = ops::softmax(x, dim), ly = ops::log_softmax(x, dim);
        Tensor yg = ops::softmax(to_gpu(x), dim), lyg = ops::log_softmax(to_gpu(x), dim);
        CHECK_GPU_CLOSE(yg, y, rtol, atol);
        CHECK_GPU_CLOSE(lyg, ly, rtol, atol);
        CHECK_GPU_CLOSE(ops::softmax_backward(to_gpu(gr), yg, dim), ops::softmax_backward(gr, y, dim), rtol, 10 * atol);
        CHECK_GPU_CLOSE(ops::log_softmax_backward(to_gpu(gr), lyg, dim), ops::log_softmax_backward(gr, ly, dim), rtol,
                        10 * atol);
      }
    }
  }
  // -inf entries, an all -inf row
  Tensor x = from_vector<float>({-INFINITY, 0.f, 1.f, -INFINITY, -INFINITY, -INFINITY}, {2, 3});
  CHECK_GPU_CLOSE(ops::softmax(to_gpu(x), 1), ops::softmax(x, 1), 1e-6, 1e-7);
  CHECK_GPU_CLOSE(ops::log_softmax(to_gpu(x), 1), ops::log_softmax(x, 1), 1e-6, 1e-7);
}

TEST_CASE("gather, scatter_add, index_select, index_add match the CPU and bad indices are errors") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(24);
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8}) {
    Tensor x = test::uniform({6, 7, 8}, dt, g, 0, 20);
    for (int64_t dim = 0; dim < 3; ++dim) {
      CAPTURE(dtype_name(dt));
      CAPTURE(dim);
      Shape is{4, 5, 6};
      Tensor idx = test::uniform(is, DType::Int64, g, 0, static_cast<double>(x.size(dim)));
      CHECK_GPU_CLOSE(ops::gather(to_gpu(x), dim, to_gpu(idx)), ops::gather(x, dim, idx), 0, 0);
      // a transposed index and input
      Tensor it = ops::transpose(test::uniform({6, 5, 4}, DType::Int64, g, 0, 6), 0, 2);  // (4, 5, 6), values < 6
      CHECK_GPU_CLOSE(ops::gather(to_gpu(x), dim, to_gpu(it)), ops::gather(x, dim, it), 0, 0);
      Tensor src = test::uniform(is, dt, g, 0, 5);
      Shape out{6, 7, 8};
      CHECK_GPU_CLOSE(ops::scatter_add(out, dim, to_gpu(idx), to_gpu(src)), ops::scatter_add(out, dim, idx, src), 1e-6,
                      1e-6);
      Tensor sel = test::uniform({9}, DType::Int64, g, 0, static_cast<double>(x.size(dim)));
      CHECK_GPU_CLOSE(ops::index_select(to_gpu(x), dim, to_gpu(sel)), ops::index_select(x, dim, sel), 0, 0);
    }
  }
  // many duplicates into few slots: float atomics in any order; judged against a float64 sum
  // (each slot adds ~33000 values of magnitude <= 2 in float32: ~1e-3 of rounding either way)
  Tensor src = test::uniform({100000}, DType::Float32, g);
  Tensor idx = test::uniform({100000}, DType::Int64, g, 0, 3);
  CHECK_GPU_CLOSE(ops::index_add({3}, 0, to_gpu(idx), to_gpu(src)),
                  ops::to_dtype(ops::index_add({3}, 0, idx, ops::to_dtype(src, DType::Float64)), DType::Float32), 0,
                  2e-2);
  Tensor bad = from_vector<int64_t>({0, 3, 9}, {3});
  CHECK_THROWS_WITH_AS(ops::gather(to_gpu(zeros({5})), 0, to_gpu(bad)), doctest::Contains("index 9 is out of range"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::scatter_add({5}, 0, to_gpu(bad), to_gpu(ones({3}))),
                       doctest::Contains("index 9 is out of range"), Error);
  Tensor neg = from_vector<int64_t>({-1}, {1});
  CHECK_THROWS_WITH_AS(ops::index_select(to_gpu(zeros({5})), 0, to_gpu(neg)), doctest::Contains("index -1"), Error);
}

TEST_CASE("matmul through cuBLAS and the hand-written GEMM: shapes, transposes, batches, float64") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(25);
  struct Case {
    Shape a, b;
    bool ta, tb;  // operands built transposed (a .t() view)
  };
  const std::vector<Case> cases = {
      {{1, 1}, {1, 1}, false, false},     {{7, 5}, {5, 3}, false, false},      {{129, 257}, {257, 65}, false, false},
      {{33, 17}, {17, 300}, true, false}, {{300, 17}, {17, 33}, false, true},  {{64, 64}, {64, 64}, true, true},
      {{5}, {5, 4}, false, false},        {{4, 5}, {5}, false, false},         {{5}, {5}, false, false},
      {{3, 7, 5}, {5, 6}, false, false},  {{2, 1, 7, 5}, {3, 5, 6}, false, false},
      {{4, 0}, {0, 3}, false, false},     {{0, 4}, {4, 3}, false, false},
      {{257, 129}, {129, 513}, false, false},  // several 128 x 128 tiles with ragged edges
      {{64, 20000}, {20000, 100}, false, false},  // few output tiles, long K: split-K
      {{3, 1280, 40}, {3, 40, 1280}, false, false}};  // 128-multiples, many tiles: the float4 kernel
  for (cuda::Backend be : test::all_backends()) {
    cuda::BackendGuard guard(cuda::OpFamily::Gemm, be);
    for (DType dt : {DType::Float32, DType::Float64}) {
      for (const Case& c : cases) {
        // transposed operands are made as the transpose of a contiguous tensor of the swapped shape
        auto make = [&](Shape s, bool t) {
          if (!t) return test::uniform(s, dt, g);
          std::swap(s[s.size() - 1], s[s.size() - 2]);
          return ops::transpose(test::uniform(s, dt, g), -1, -2);
        };
        Tensor a = make(c.a, c.ta), b = make(c.b, c.tb);
        const int64_t K = c.a.back();
        CAPTURE(cuda::to_string(be));
        CAPTURE(dtype_name(dt));
        CAPTURE(shape_str(c.a));
        CAPTURE(shape_str(c.b));
        // both sum K products of values in [-2, 2) in their own order: rounding grows with K
        const double eps = dt == DType::Float32 ? 1.2e-7 : 2.3e-16;
        const double k = static_cast<double>(std::max<int64_t>(K, 1));
        CHECK_GPU_CLOSE(ops::matmul(to_gpu(a), to_gpu(b)), ops::matmul(a, b), 4 * eps * std::sqrt(k), 4 * eps * k);
      }
    }
  }
  // a broadcast row operand (stride 0 rows) and a batch-broadcast operand
  Tensor row = test::uniform({1, 6}, DType::Float32, g), m = test::uniform({6, 4}, DType::Float32, g);
  Tensor rows = ops::expand(row, {5, 6});
  CHECK_GPU_CLOSE(ops::matmul(ops::expand(to_gpu(row), {5, 6}), to_gpu(m)), ops::matmul(ops::contiguous(rows), m), 1e-6,
                  1e-6);
  // TF32: tensor cores with a 10-bit mantissa, about 1e-3 relative
  {
    cuda::BackendGuard guard(cuda::OpFamily::Gemm, cuda::Backend::Library);
    const bool saved = cuda::allow_tf32();
    cuda::set_allow_tf32(true);
    Tensor a = test::uniform({256, 512}, DType::Float32, g), b = test::uniform({512, 128}, DType::Float32, g);
    CHECK_GPU_CLOSE(ops::matmul(to_gpu(a), to_gpu(b)), ops::matmul(a, b), 1e-2, 5e-2);
    cuda::set_allow_tf32(saved);
  }
}
