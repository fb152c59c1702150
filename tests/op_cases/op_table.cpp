// THE OP-CASE TABLE: one entry per op configuration feeds every op check (see op_case.h).
//
// ---- quick start: adding an op's tests ----------------------------------------------------------
// 1. Add an entry below, in its family's section (softplus stands for your op):
//        {.name = "softplus",
//         .call = [](const V& x) { return x[0].softplus(); },
//         .inputs = {in({3, 4}, -3, 3)}},
//    name: unique, [a-z0-9_]; it names the doctest case of every check and the PyTorch line.
//    call: the op through the public API (Tensor methods, autograd/functional.h), on x[0..n).
//    inputs: in(shape[, lo, hi]) floating leaf requiring grad; positive(shape) in [0.5, 2);
//            index(shape, n) int64 in [0, n); constant(shape, lo, hi) floating, no grad;
//            running(shape, lo, hi) a buffer the op writes in place (compared after the call).
//            Keep ranges away from kinks and poles the op has (the gradcheck skips exact kinks).
//    tolerances: .reference (float32 vs PyTorch) and .cuda (float32 GPU vs CPU) are Tol{rtol,
//            atol, "why"}; the defaults suit elementwise ops. Say why when you change one.
//    errors: {"what", [] { bad call; }, {"substring", ...}}: the dl::Error message must contain each.
//    opt-outs: .no_reference / .no_cuda / .no_strided / .no_broadcast = "the reason".
// 2. Add the PyTorch line to TORCH in tests/fixtures/make_op_cases.py, keyed by the same name:
//        "softplus": lambda x: F.softplus(x),
//    (the script fails naming any entry without a line, or a line without an entry).
// 3. Build and run: ctest -R '/softplus$' runs its gradcheck, reference, cuda and errors cases.
// That is all: the drivers add the strided and broadcast variants, the float32/float64 and GPU runs.
// -------------------------------------------------------------------------------------------------
#include <cmath>
#include <set>
#include <stdexcept>

#include "autograd/functional.h"
#include "op_case.h"

namespace dl::test::op_cases {

namespace {

Conv2dParams conv(std::array<int64_t, 2> stride, std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation = {1, 1},
                   int64_t groups = 1) {
  return {stride, padding, dilation, groups};
}
CrossEntropyOptions ce(Reduction r, double label_smoothing = 0.0, Tensor weight = Tensor()) {
  CrossEntropyOptions o;
  o.reduction = r;
  o.label_smoothing = label_smoothing;
  o.weight = std::move(weight);
  return o;
}

// The entry of `family` named `name` (for settings added after a family's list is written).
OpCase& named(std::vector<OpCase>& family, const std::string& name) {
  for (auto& c : family)
    if (c.name == name) return c;
  throw std::logic_error("op_table.cpp: no entry named '" + name + "' in this family");
}

// Tolerances shared by families, each with its reason.
constexpr Tol kMatmulRef{1e-5, 1e-5, "float32 sums of K products in another order"};
constexpr Tol kConvRef{1e-4, 1e-5, "weight gradients sum N*Ho*Wo products; PyTorch sums in another order"};
constexpr Tol kConvCuda{3e-4, 3e-4, "cuDNN may pick Winograd/FFT; weight gradients sum N*Ho*Wo products"};
constexpr Tol kBnRef{1e-4, 1e-5, "normalised values pass through 1/std and sums over the batch"};
constexpr Tol kBnCuda{1e-3, 1e-3, "cuDNN keeps its batch sums in float32"};
constexpr Tol kSumCuda{1e-5, 1e-5, "float32 sums over a dim in another order"};
constexpr Tol kMaxPoolRef{1e-6, 1e-7, "values are copies; a gradient sums at most 4 overlapping windows"};
constexpr Tol kPoolRef{1e-5, 1e-6, "averages of up to 9 values"};

std::vector<OpCase> build() {
  using C = std::vector<OpCase>;
  C t;
  auto add = [&t](C more) { t.insert(t.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end())); };

  // ---- unary ------------------------------------------------------------------------------------
  add({
      {.name = "neg", .call = [](const V& x) { return x[0].neg(); }, .inputs = {in({3, 4})}},
      {.name = "exp", .call = [](const V& x) { return x[0].exp(); }, .inputs = {in({3, 4})}},
      {.name = "log", .call = [](const V& x) { return x[0].log(); }, .inputs = {positive({3, 4})}},
      {.name = "sqrt", .call = [](const V& x) { return x[0].sqrt(); }, .inputs = {positive({3, 4})}},
      {.name = "abs", .call = [](const V& x) { return x[0].abs(); }, .inputs = {in({3, 4})}},
      {.name = "relu", .call = [](const V& x) { return x[0].relu(); }, .inputs = {in({3, 4})}},
      {.name = "sigmoid", .call = [](const V& x) { return x[0].sigmoid(); }, .inputs = {in({3, 4}, -4, 4)}},
      {.name = "tanh", .call = [](const V& x) { return x[0].tanh(); }, .inputs = {in({3, 4}, -2, 2)}},
      {.name = "leaky_relu", .call = [](const V& x) { return x[0].leaky_relu(0.2); }, .inputs = {in({3, 4})},
       .errors = {{"integer input", [] { zeros({2}, DType::Int64).leaky_relu(); }, {"leaky_relu", "floating"}}}},
      {.name = "gelu", .call = [](const V& x) { return x[0].gelu(); }, .inputs = {in({3, 4}, -4, 4)},
       .errors = {{"unknown form", [] { zeros({2}).gelu("fast"); }, {"gelu", "approximate", "fast"}},
                  {"integer input", [] { zeros({2}, DType::Int64).gelu(); }, {"gelu", "floating"}}}},
      {.name = "gelu_tanh", .call = [](const V& x) { return x[0].gelu("tanh"); }, .inputs = {in({3, 4}, -4, 4)}},
      {.name = "hardswish", .call = [](const V& x) { return x[0].hardswish(); }, .inputs = {in({3, 4}, -5, 5)},
       .errors = {{"integer input", [] { zeros({2}, DType::Int64).hardswish(); }, {"hardswish", "floating"}}}},
      {.name = "clamp", .call = [](const V& x) { return x[0].clamp(-0.5, 0.5); }, .inputs = {in({3, 4}, -2, 2)},
       .errors = {{"NaN bound", [] { zeros({2}).clamp(std::nan(""), 1.0); }, {"clamp", "min and max"}}}},
      {.name = "silu", .call = [](const V& x) { return x[0].silu(); }, .inputs = {in({3, 4}, -6, 6)},
       .errors = {{"integer input", [] { zeros({2}, DType::Int64).silu(); }, {"silu", "floating"}}}},
      {.name = "pow3", .call = [](const V& x) { return x[0].pow(3.0); }, .inputs = {in({3, 4})}},
      {.name = "pow2_5", .call = [](const V& x) { return x[0].pow(2.5); }, .inputs = {positive({3, 4})}},
      {.name = "pow_neg1_5", .call = [](const V& x) { return x[0].pow(-1.5); }, .inputs = {positive({5})}},
  });

  // ---- binary, broadcasting; scalars --------------------------------------------------------------
  add({
      {.name = "add", .call = [](const V& x) { return x[0] + x[1]; }, .inputs = {in({2, 3, 4}), in({3, 1})}},
      {.name = "sub", .call = [](const V& x) { return x[0] - x[1]; }, .inputs = {in({2, 3, 4}), in({4})}},
      {.name = "mul", .call = [](const V& x) { return x[0] * x[1]; }, .inputs = {in({2, 1, 4}), in({3, 1})}},
      {.name = "div", .call = [](const V& x) { return x[0] / x[1]; }, .inputs = {in({3, 4}), positive({4})}},
      {.name = "maximum", .call = [](const V& x) { return maximum(x[0], x[1]); }, .inputs = {in({3, 4}), in({4})}},
      {.name = "where",
       .call = [](const V& x) { return where(x[0].gt(0.0), x[0] * 2.0, x[1]); },
       .inputs = {in({3, 4}), in({1, 4})}},
      {.name = "scalar_arith", .call = [](const V& x) { return ((x[0] + 1.5) * 2.0 - 0.5) / 3.0; }, .inputs = {in({4})}},
      {.name = "scalar_rdiv", .call = [](const V& x) { return 2.0 / x[0] - x[0]; }, .inputs = {positive({4})}},
  });

  // ---- reductions -------------------------------------------------------------------------------
  const std::vector<ErrorCase> sum_errors = {
      {"dim out of range", [] { ones({2}).sum({1}); }, {"out of range"}}};
  add({
      {.name = "sum_all", .call = [](const V& x) { return x[0].sum(); }, .inputs = {in({2, 3})}},
      {.name = "sum", .call = [](const V& x) { return x[0].sum({0, 2}); }, .inputs = {in({2, 3, 4})}, .cuda = kSumCuda,
       .errors = sum_errors},
      {.name = "sum_keepdim", .call = [](const V& x) { return x[0].sum({1}, true); }, .inputs = {in({2, 3, 4})}, .cuda = kSumCuda},
      {.name = "sum_transposed_keepdim",
       .call = [](const V& x) { return x[0].transpose(0, 2).sum({1}, true); },
       .inputs = {in({2, 3, 4})}, .cuda = kSumCuda},
      {.name = "mean", .call = [](const V& x) { return x[0].mean({-1}); }, .inputs = {in({3, 5})}, .cuda = kSumCuda},
      {.name = "mean_all", .call = [](const V& x) { return x[0].mean(); }, .inputs = {in({3, 5})}, .cuda = kSumCuda},
      {.name = "max_all", .call = [](const V& x) { return x[0].max(); }, .inputs = {in({3, 5})}},
      {.name = "max", .call = [](const V& x) { return x[0].max(1); }, .inputs = {in({3, 5})}},
      {.name = "max_keepdim0", .call = [](const V& x) { return x[0].max(0, true); }, .inputs = {in({3, 5})}},
      {.name = "var", .call = [](const V& x) { return x[0].var({1}); }, .inputs = {in({3, 5})}, .cuda = kSumCuda},
      {.name = "var_biased_keepdim",
       .call = [](const V& x) { return x[0].var({0, 2}, false, true); },
       .inputs = {in({2, 3, 4})}, .cuda = kSumCuda},
  });

  // ---- matmul -----------------------------------------------------------------------------------
  add({
      {.name = "matmul", .call = [](const V& x) { return x[0].matmul(x[1]); }, .inputs = {in({7, 5}), in({5, 6})},
       .reference = kMatmulRef, .cuda = kSumCuda},
      {.name = "matmul_t", .call = [](const V& x) { return x[0].t().matmul(x[1].t()); }, .inputs = {in({5, 7}), in({6, 5})},
       .reference = kMatmulRef, .cuda = kSumCuda},
      {.name = "matmul_batched", .call = [](const V& x) { return x[0].matmul(x[1]); },
       .inputs = {in({3, 7, 5}), in({5, 6})}, .reference = kMatmulRef, .cuda = kSumCuda},
      {.name = "matmul_vec_batched", .call = [](const V& x) { return x[0].matmul(x[1]); },
       .inputs = {in({4}), in({2, 4, 3})}, .reference = kMatmulRef, .cuda = kSumCuda},
      {.name = "matmul_mat_vec", .call = [](const V& x) { return x[0].matmul(x[1]); }, .inputs = {in({3, 4}), in({4})},
       .reference = kMatmulRef, .cuda = kSumCuda},
  });

  // ---- softmax ----------------------------------------------------------------------------------
  add({
      {.name = "softmax", .call = [](const V& x) { return x[0].softmax(1); }, .inputs = {in({4, 6})}},
      {.name = "softmax_dim0", .call = [](const V& x) { return x[0].softmax(0); }, .inputs = {in({3, 2, 4})}},
      {.name = "log_softmax", .call = [](const V& x) { return x[0].log_softmax(-1); }, .inputs = {in({3, 5})}},
      {.name = "log_softmax_dim0", .call = [](const V& x) { return x[0].log_softmax(0); }, .inputs = {in({4, 6})}},
  });

  // ---- indexing, joining, views -------------------------------------------------------------------
  const char* view_needs_strides = "view() needs strides compatible with the new shape; reshape is checked strided";
  add({
      {.name = "gather", .call = [](const V& x) { return x[0].gather(1, x[1]); }, .inputs = {in({3, 4}), index({3, 2}, 4)}},
      {.name = "index_select", .call = [](const V& x) { return x[0].index_select(1, x[1]); },
       .inputs = {in({2, 3, 2}), index({3}, 3)}},
      {.name = "cat", .call = [](const V& x) { return cat({x[0], x[1]}, 1); }, .inputs = {in({2, 3}), in({2, 4})}},
      {.name = "cat_dim0_transposed", .call = [](const V& x) { return cat({x[0], x[1].t()}, 0); },
       .inputs = {in({2, 3}), in({3, 4})}},
      {.name = "stack", .call = [](const V& x) { return stack({x[0], x[1]}, 1); }, .inputs = {in({2, 3}), in({2, 3})}},
      {.name = "view_reshape",
       .call = [](const V& x) { return x[0].view({4, 3}) * x[0].reshape({3, 4}).t(); },
       .inputs = {in({2, 6})}, .no_strided = view_needs_strides, .no_broadcast = view_needs_strides,
       .errors = {{"a size that does not match", [] { ones({2, 3}).view({4, 2}); }, {"invalid for input of size 6"}}}},
      {.name = "permute", .call = [](const V& x) { return x[0].permute({2, 0, 1}).contiguous() * 2.0; },
       .inputs = {in({2, 3, 4})}},
      {.name = "expand", .call = [](const V& x) { return x[0].expand({4, 3, 5}) * 1.0; }, .inputs = {in({3, 1})}},
      {.name = "narrow_slice", .call = [](const V& x) { return x[0].narrow(1, 1, 2).slice(0, 0, 3, 2); },
       .inputs = {in({4, 4})}},
      {.name = "select_expand", .call = [](const V& x) { return x[0].select(1, 2).unsqueeze(0).expand({3, -1}); },
       .inputs = {in({2, 4})}},
      {.name = "squeeze_flatten", .call = [](const V& x) { return x[0].unsqueeze(1).squeeze(1).flatten(); },
       .inputs = {in({2, 3})}},
      {.name = "transpose_reshape", .call = [](const V& x) { return x[0].transpose(0, 1).reshape({-1}); },
       .inputs = {in({2, 3})}},
      {.name = "clone_dtype_round_trip",
       .call = [](const V& x) { return x[0].clone().to(DType::Float32).to(DType::Float64); },
       .inputs = {in({3})}, .gradcheck = GradcheckOptions{1e-3, 1e-4},
       .gradcheck_why = "the float32 round trip rounds at 6e-8: a larger step and tolerance"},
  });

  // ---- a composite: two-layer net with cross-entropy written by hand ------------------------------
  add({
      {.name = "composite_mlp",
       .call = [](const V& x) {
         auto h = (x[0].matmul(x[1]) + x[2]).relu();
         return h.matmul(x[3]).log_softmax(1).gather(1, x[4]).mean().neg();
       },
       .inputs = {in({4, 5}), in({5, 6}), in({6}), in({6, 3}), index({4, 1}, 3)},
       .reference = kMatmulRef, .cuda = kSumCuda},
  });

  // ---- conv2d -----------------------------------------------------------------------------------
  const std::vector<ErrorCase> conv_errors = {
      {"channels", [] { conv2d(zeros({2, 3, 8, 8}), zeros({8, 1, 3, 3})); },
       {"conv2d: input has 3 channels but weight expects 1 (weight shape [8, 1, 3, 3])"}},
      {"channels with groups",
       [] { conv2d(zeros({2, 4, 8, 8}), zeros({6, 3, 3, 3}), Tensor(), conv({1, 1}, {0, 0}, {1, 1}, 2)); },
       {"input has 4 channels but weight expects 6 (weight shape [6, 3, 3, 3], groups=2)"}},
      {"outputs not divisible by groups",
       [] { conv2d(zeros({2, 4, 8, 8}), zeros({5, 2, 3, 3}), Tensor(), conv({1, 1}, {0, 0}, {1, 1}, 2)); },
       {"5 output channels"}},
      {"kernel larger than the input", [] { conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 5, 5})); },
       {"kernel size 5x5 (with dilation 5x5) is larger than the padded input 4x4"}},
      {"dilated kernel larger than the input",
       [] { conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 3, 3}), Tensor(), conv({1, 1}, {0, 0}, {2, 2})); },
       {"(with dilation 5x5) is larger than the padded input 4x4"}},
      {"bias size", [] { conv2d(zeros({2, 3, 8, 8}), zeros({8, 3, 3, 3}), zeros({4})); },
       {"bias has shape [4] but the weight has 8 output channels"}},
      {"5-D input", [] { conv2d(zeros({3, 8, 8, 1, 1}), zeros({8, 3, 3, 3})); }, {"expected a 4-D input"}},
      {"3-D weight", [] { conv2d(zeros({2, 3, 8, 8}), zeros({8, 3, 3})); }, {"expected a 4-D weight"}},
      {"dtype mismatch", [] { conv2d(zeros({2, 3, 8, 8}), zeros({8, 3, 3, 3}, DType::Float64)); },
       {"weight is float64 but the input is float32"}},
      {"zero stride", [] { conv2d(zeros({2, 3, 8, 8}), zeros({8, 3, 3, 3}), Tensor(), {{0, 1}}); },
       {"stride must be positive"}},
      {"negative padding", [] { conv2d(zeros({2, 3, 8, 8}), zeros({8, 3, 3, 3}), Tensor(), {{1, 1}, {-1, 0}}); },
       {"padding must be non-negative"}},
      {"integer dtype", [] { conv2d(zeros({1, 3, 4, 4}, DType::Int64), zeros({1, 3, 3, 3}, DType::Int64)); },
       {"must be float32 or float64"}},
  };
  auto conv_case = [](std::string name, Conv2dParams o, std::vector<In> inputs) {
    const bool bias = inputs.size() == 3;
    return OpCase{.name = std::move(name),
                  .call = [o, bias](const V& x) { return conv2d(x[0], x[1], bias ? x[2] : Tensor(), o); },
                  .inputs = std::move(inputs), .reference = kConvRef, .cuda = kConvCuda};
  };
  {
    C convs = {
        conv_case("conv_basic", conv({1, 1}, {1, 1}), {in({2, 3, 7, 6}), in({4, 3, 3, 3}), in({4})}),
        conv_case("conv_single_image", {}, {in({1, 3, 10, 9}), in({5, 3, 3, 3}), in({5})}),
        conv_case("conv_no_bias", {}, {in({1, 3, 5, 5}), in({2, 3, 2, 2})}),
        conv_case("conv_stride_pad_dilation", conv({2, 1}, {1, 2}, {2, 1}), {in({3, 4, 9, 8}), in({6, 4, 3, 2}), in({6})}),
        conv_case("conv_stride3_dilation_w", conv({3, 2}, {0, 1}, {1, 2}), {in({2, 1, 8, 7}), in({2, 1, 2, 3}), in({2})}),
        conv_case("conv_groups", conv({2, 2}, {0, 0}, {1, 1}, 3), {in({2, 6, 8, 8}), in({9, 2, 3, 3})}),
        conv_case("conv_groups2_rect", conv({1, 1}, {1, 0}, {1, 1}, 2), {in({2, 4, 4, 5}), in({6, 2, 3, 2})}),
        conv_case("conv_depthwise", conv({1, 1}, {1, 1}, {1, 1}, 4), {in({2, 4, 7, 7}), in({4, 1, 3, 3}), in({4})}),
        conv_case("conv_depthwise_stride2", conv({2, 2}, {1, 1}, {1, 1}, 3), {in({3, 3, 5, 5}), in({3, 1, 3, 3}), in({3})}),
        conv_case("conv_1x1", {}, {in({3, 5, 6, 6}), in({7, 5, 1, 1}), in({7})}),
        conv_case("conv_1x1_stride2", conv({2, 2}, {0, 0}), {in({2, 8, 7, 7}), in({4, 8, 1, 1})}),
        conv_case("conv_7x7_stride2", conv({2, 2}, {3, 3}), {in({2, 3, 20, 20}), in({8, 3, 7, 7})}),
        conv_case("conv_cnn_block", conv({1, 1}, {1, 1}), {in({4, 16, 14, 14}), in({32, 16, 3, 3}, -0.1, 0.1), in({32})}),
        conv_case("conv_unbatched", conv({1, 2}, {1, 1}), {in({2, 4, 5}), in({3, 2, 2, 3}), in({3})}),
    };
    named(convs, "conv_basic").errors = conv_errors;
    named(convs, "conv_7x7_stride2").reference = {1e-4, 2e-5, "147-term sums per output; weight gradients sum N*Ho*Wo = 200 products"};
    named(convs, "conv_cnn_block").reference = {1e-4, 5e-5, "144-term sums per output; weight gradients sum N*Ho*Wo = 784 products"};
    // float64 finite differences of a 3.6M-MAC forward: check a sample of 60 elements per input
    named(convs, "conv_cnn_block").gradcheck.max_elements = 60;
    named(convs, "conv_cnn_block").gradcheck_why = "a sample of 60 elements per input keeps the float64 forward count small";
    add(std::move(convs));
  }

  // ---- linear -----------------------------------------------------------------------------------
  auto linear_call = [](const V& x) { return linear(x[0], x[1], x.size() > 2 ? x[2] : Tensor()); };
  add({
      {.name = "linear", .call = linear_call, .inputs = {in({5, 7}), in({3, 7}), in({3})}, .reference = kMatmulRef,
       .cuda = kSumCuda,
       .errors = {{"feature mismatch", [] { linear(zeros({4, 5}), zeros({3, 4})); },
                   {"linear: input has 5 features (shape [4, 5]) but weight expects 4 (weight shape [3, 4])"}},
                  {"bias size", [] { linear(zeros({4, 4}), zeros({3, 4}), zeros({4})); }, {"bias has shape [4]"}},
                  {"1-D weight", [] { linear(zeros({4, 4}), zeros({4})); }, {"expected a 2-D weight"}}}},
      {.name = "linear_no_bias", .call = linear_call, .inputs = {in({4, 6}), in({5, 6})}, .reference = kMatmulRef,
       .cuda = kSumCuda},
      {.name = "linear_3d", .call = linear_call, .inputs = {in({2, 4, 7}), in({3, 7}), in({3})}, .reference = kMatmulRef,
       .cuda = kSumCuda},
      {.name = "linear_1d", .call = linear_call, .inputs = {in({4}), in({3, 4}), in({3})}, .reference = kMatmulRef,
       .cuda = kSumCuda},
  });

  // ---- batch norm: x, weight, bias, running_mean, running_var --------------------------------------
  const char* bn_rows_identical =
      "identical rows have zero batch variance: the output is constant and its gradient is rounding noise times "
      "1/sqrt(eps)";
  auto bn = [](std::string name, bool affine, bool stats, bool training, double momentum, double eps, In x) {
    const int64_t C = x.shape[1];
    std::vector<In> inputs{std::move(x)};
    if (affine) inputs.insert(inputs.end(), {in({C}, 0.5, 1.5), in({C})});
    if (stats) inputs.insert(inputs.end(), {running({C}, -0.3, 0.3), running({C}, 0.5, 1.5)});
    return OpCase{.name = std::move(name),
                  .call = [=](const V& v) {
                    const size_t s = affine ? 3 : 1;
                    return batch_norm(v[0], stats ? v[s] : Tensor(), stats ? v[s + 1] : Tensor(),
                                      affine ? v[1] : Tensor(), affine ? v[2] : Tensor(), training, momentum, eps);
                  },
                  .inputs = std::move(inputs), .reference = kBnRef, .cuda = kBnCuda};
  };
  {
    C bns = {
        bn("bn_train_4d", true, true, true, 0.1, 1e-5, in({4, 3, 5, 5}, -1, 3)),
        bn("bn_train_2d", true, true, true, 0.25, 1e-5, in({8, 5}, -4, -2)),
        bn("bn_train_2d_no_stats", true, false, true, 0.1, 1e-5, in({6, 4})),
        bn("bn_train_no_affine", false, true, true, 0.3, 1e-3, in({3, 4, 3, 2})),
        bn("bn_train_no_affine_no_stats", false, false, true, 0.1, 1e-3, in({2, 3, 2, 2})),
        bn("bn_eval_4d", true, true, false, 0.1, 1e-5, in({3, 4, 3, 3})),
        bn("bn_eval_2d", true, true, false, 0.1, 1e-5, in({6, 3})),
    };
    named(bns, "bn_train_2d").no_broadcast = bn_rows_identical;
    named(bns, "bn_train_2d_no_stats").no_broadcast = bn_rows_identical;
    named(bns, "bn_train_4d").errors = {
        {"one value per channel in training",
         [] { batch_norm(zeros({1, 3}), zeros({3}), ones({3}), Tensor(), Tensor(), true); },
         {"batch_norm: expected more than 1 value per channel when training, got input shape [1, 3]"}},
        {"eval without running statistics", [] { batch_norm(zeros({4, 3}), Tensor(), Tensor(), Tensor(), Tensor(), false); },
         {"eval mode (training=false)"}},
        {"weight size", [] { batch_norm(zeros({4, 3, 2, 2}), Tensor(), Tensor(), ones({4}), Tensor(), true); },
         {"weight has shape [4] but the input has 3 channels"}},
        {"running_mean dtype",
         [] {
           batch_norm(zeros({4, 3}), zeros({3}, DType::Float64), ones({3}, DType::Float64), Tensor(), Tensor(), true);
         },
         {"running_mean is float64 but the input is float32"}},
        {"1-D input", [] { batch_norm(zeros({4}), Tensor(), Tensor(), Tensor(), Tensor(), true); },
         {"expected an input of shape (N, C)"}},
        {"running statistics that require grad",
         [] { batch_norm(zeros({4, 3}), zeros({3}).requires_grad_(), ones({3}), Tensor(), Tensor(), true); },
         {"must not require grad"}},
    };
    add(std::move(bns));
  }

  // ---- pooling (random inputs: ties inside a window are improbable) -------------------------------
  auto pool = [](std::string name, Tensor (*fn)(const Tensor&, const Pool2dParams&), Pool2dParams o, Shape s, Tol ref) {
    return OpCase{.name = std::move(name), .call = [fn, o](const V& x) { return fn(x[0], o); }, .inputs = {in(std::move(s))},
                  .reference = ref};
  };
  auto adaptive = [](std::string name, std::array<int64_t, 2> size, Shape s) {
    return OpCase{.name = std::move(name), .call = [size](const V& x) { return adaptive_avg_pool2d(x[0], size); },
                  .inputs = {in(std::move(s))}, .reference = kPoolRef};
  };
  {
    C pools = {
        pool("maxpool_2x2", max_pool2d, {{2, 2}}, {2, 3, 8, 8}, kMaxPoolRef),
        pool("maxpool_resnet", max_pool2d, {{3, 3}, {2, 2}, {1, 1}}, {2, 3, 11, 11}, kMaxPoolRef),
        pool("maxpool_ceil", max_pool2d, {{3, 3}, {2, 2}, {0, 0}, true}, {1, 2, 8, 8}, kMaxPoolRef),
        pool("maxpool_ceil_last_window", max_pool2d, {{2, 2}, {2, 2}, {1, 1}, true}, {1, 2, 5, 5}, kMaxPoolRef),
        pool("maxpool_rect", max_pool2d, {{3, 2}, {2, 1}, {1, 0}}, {2, 2, 7, 6}, kMaxPoolRef),
        pool("maxpool_rect_ceil", max_pool2d, {{3, 2}, {2, 1}, {1, 0}, true}, {2, 1, 6, 5}, kMaxPoolRef),
        pool("avgpool_2x2", avg_pool2d, {{2, 2}}, {2, 3, 8, 6}, kPoolRef),
        pool("avgpool_pad_include", avg_pool2d, {{3, 3}, {2, 2}, {1, 1}}, {2, 2, 7, 7}, kPoolRef),
        pool("avgpool_pad_exclude", avg_pool2d, {{3, 3}, {2, 2}, {1, 1}, false, false}, {2, 2, 7, 7}, kPoolRef),
        pool("avgpool_ceil_include", avg_pool2d, {{3, 3}, {2, 2}, {0, 0}, true}, {1, 2, 6, 6}, kPoolRef),
        pool("avgpool_ceil_pad_include", avg_pool2d, {{3, 3}, {2, 2}, {1, 1}, true}, {1, 2, 6, 6}, kPoolRef),
        pool("avgpool_ceil_pad_exclude", avg_pool2d, {{3, 3}, {2, 2}, {1, 1}, true, false}, {1, 2, 6, 6}, kPoolRef),
        pool("avgpool_rect_ceil_exclude", avg_pool2d, {{3, 2}, {2, 2}, {1, 1}, true, false}, {1, 2, 6, 5}, kPoolRef),
        adaptive("adaptive_3x2", {3, 2}, {2, 3, 7, 5}),
        adaptive("adaptive_4x4_of_10", {4, 4}, {1, 2, 10, 10}),
        adaptive("adaptive_4x4_of_10x6", {4, 4}, {1, 2, 10, 6}),
        adaptive("adaptive_global", {1, 1}, {2, 4, 7, 7}),
        adaptive("adaptive_upsample", {5, 4}, {1, 2, 3, 3}),
    };
    named(pools, "maxpool_2x2").errors = {
        {"padding above half the kernel", [] { max_pool2d(zeros({1, 1, 4, 4}), {{3, 3}, {1, 1}, {2, 2}}); },
         {"max_pool2d: padding [2, 2] must be at most half of the kernel size [3, 3]"}},
        {"kernel larger than the input", [] { max_pool2d(zeros({1, 1, 2, 2}), {{3, 3}}); },
         {"kernel [3, 3] is larger than the padded input 2x2"}},
        {"integer dtype", [] { max_pool2d(zeros({1, 1, 4, 4}, DType::Int64), {{2, 2}}); }, {"must be float32 or float64"}},
    };
    named(pools, "avgpool_2x2").errors = {
        {"zero kernel", [] { avg_pool2d(zeros({1, 1, 4, 4}), {{0, 2}}); }, {"kernel size must be positive"}},
        {"2-D input", [] { avg_pool2d(zeros({4, 4}), {{2, 2}}); }, {"expected a 4-D input"}},
    };
    named(pools, "adaptive_3x2").errors = {{"negative output size", [] { adaptive_avg_pool2d(zeros({1, 1, 4, 4}), {-1, 2}); },
                         {"output size must be non-negative"}}};
    add(std::move(pools));
  }

  // ---- dropout (the gradcheck and the GPU check re-seed the default generator before each forward) --
  const char* dropout_mask = "the mask comes from our generator; PyTorch's draws differ";
  add({
      {.name = "dropout", .call = [](const V& x) { return dropout(x[0], 0.3, true); }, .inputs = {in({4, 5})},
       .no_reference = dropout_mask,
       .errors = {{"p above 1", [] { dropout(ones({3}), 1.5, true); },
                   {"dropout: probability has to be between 0 and 1, got 1.5"}},
                  {"p below 0", [] { dropout(ones({3}), -0.1, false); }, {"between 0 and 1"}}}},
      {.name = "dropout_plus_input", .call = [](const V& x) { return dropout(x[0] * 2.0, 0.6, true) + x[0]; },
       .inputs = {in({3, 7})}, .no_reference = dropout_mask},
      {.name = "dropout_eval", .call = [](const V& x) { return dropout(x[0], 0.5, false); }, .inputs = {in({3, 3})}},
  });

  // ---- cross entropy: logits (N, C), target, [class weights] ---------------------------------------
  auto ce_case = [](std::string name, Reduction r, double ls, bool weighted) {
    std::vector<In> inputs{in({6, 5}, -2, 2), index({6}, 5)};
    if (weighted) inputs.push_back(constant({5}, 0.2, 1.2));
    return OpCase{.name = std::move(name),
                  .call = [=](const V& x) { return cross_entropy(x[0], x[1], ce(r, ls, weighted ? x[2] : Tensor())); },
                  .inputs = std::move(inputs), .cuda = kSumCuda};
  };
  {
    C ces = {
        ce_case("ce_mean", Reduction::Mean, 0.0, false),
        ce_case("ce_sum", Reduction::Sum, 0.0, false),
        ce_case("ce_none", Reduction::None, 0.0, false),
        ce_case("ce_mean_weight", Reduction::Mean, 0.0, true),
        ce_case("ce_sum_weight", Reduction::Sum, 0.0, true),
        ce_case("ce_none_weight", Reduction::None, 0.0, true),
        ce_case("ce_mean_smooth", Reduction::Mean, 0.1, false),
        ce_case("ce_sum_smooth", Reduction::Sum, 0.2, false),
        ce_case("ce_none_smooth", Reduction::None, 0.2, false),
        ce_case("ce_mean_smooth_weight", Reduction::Mean, 0.2, true),
        ce_case("ce_sum_smooth_weight", Reduction::Sum, 0.3, true),
        ce_case("ce_none_smooth_weight", Reduction::None, 0.15, true),
        {.name = "ce_unbatched", .call = [](const V& x) { return cross_entropy(x[0], x[1]); },
         .inputs = {in({4}), index({}, 4)}},
    };
    const Tensor logits = zeros({4, 5});
    named(ces, "ce_mean").errors = {
        {"target above the classes", [logits] { cross_entropy(logits, from_vector<int64_t>({0, 1, 7, 2}, {4})); },
         {"cross_entropy: target 7 (sample 2) is out of range for 5 classes; expected values in [0, 5)"}},
        {"negative target", [logits] { cross_entropy(logits, from_vector<int64_t>({0, -1, 1, 2}, {4})); },
         {"target -1 (sample 1) is out of range for 5 classes"}},
        {"float target", [logits] { cross_entropy(logits, zeros({4})); },
         {"target must hold int64 class indices, got float32"}},
        {"target size", [logits] { cross_entropy(logits, from_vector<int64_t>({0, 1, 2}, {3})); },
         {"target has shape [3] but the logits have shape [4, 5]"}},
        {"label smoothing above 1",
         [logits] { cross_entropy(logits, from_vector<int64_t>({0, 1, 2, 3}, {4}), ce(Reduction::Mean, 1.5)); },
         {"label_smoothing must be between 0.0 and 1.0"}},
        {"class weight size",
         [logits] { cross_entropy(logits, from_vector<int64_t>({0, 1, 2, 3}, {4}), ce(Reduction::Mean, 0.0, ones({4}))); },
         {"weight has shape [4] but there are 5 classes"}},
        {"3-D logits", [] { cross_entropy(zeros({2, 3, 4}), from_vector<int64_t>({0, 1}, {2})); },
         {"expected logits of shape (N, C)"}},
    };
    add(std::move(ces));
  }

  std::set<std::string> names;
  for (const auto& c : t)
    if (!names.insert(c.name).second) throw std::logic_error("op_table.cpp: two entries named '" + c.name + "'");
  return t;
}

}  // namespace

const std::vector<OpCase>& all() {
  static const std::vector<OpCase> table = build();
  return table;
}

}  // namespace dl::test::op_cases
