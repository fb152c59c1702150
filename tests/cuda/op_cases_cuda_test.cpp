// Every entry of the op-case table (tests/op_cases/op_table.cpp) on the GPU against the CPU:
// the same call on CPU tensors and on their GPU copies, in float32 and float64, on each variant
// (plain, strided, broadcast), under both GPU backends (library and hand-written): the output, each
// input gradient (one backward with the same upstream gradient) and each input written in place
// must agree. Then a float64 gradcheck of the call running on the GPU (inputs moved with the
// differentiable Tensor::to), so the GPU backward kernels are checked against central differences
// of the GPU forward ones. One doctest case per entry; skipped without a GPU.
#include "cuda_test_util.h"
#include "op_cases/op_driver.h"

using namespace dl;
using namespace dl::test::op_cases;

namespace {

constexpr uint64_t kForwardSeed = 77;  // re-seeded before each forward: random ops (dropout) draw the same mask

V to_gpu_leaves(const OpCase& c, const V& cpu) {
  V out;
  for (const Tensor& t : cpu) out.push_back(dl::test::to_gpu(t.detach()));
  set_requires_grad(c, out);
  return out;
}

void compare(const OpCase& c, Variant v, DType dt) {
  const Tol tol = dt == DType::Float32 ? c.cuda : kCuda64;
  INFO(std::string(dtype_name(dt)), ", variant ", std::string(variant_name(v)), ", tolerance rtol ", tol.rtol, " atol ",
       tol.atol, " (", std::string(tol.why), ")");
  const V lc = variant_leaves(c, v, make_inputs(c, dt));
  const V lg = to_gpu_leaves(c, lc);
  manual_seed(kForwardSeed);
  Tensor yc = c.call(variant_inputs(c, v, lc));
  manual_seed(kForwardSeed);
  Tensor yg = c.call(variant_inputs(c, v, lg));
  {
    INFO("output");
    CHECK_GPU_CLOSE(yg, yc, tol.rtol, tol.atol);
  }
  Generator g(5);
  Tensor go = dl::test::uniform(yc.sizes(), yc.dtype(), g);
  yc.backward(go);
  yg.backward(dl::test::to_gpu(go));
  for (size_t i = 0; i < lc.size(); ++i) {
    if (lc[i].requires_grad()) {
      INFO("gradient of input ", i);
      REQUIRE(lg[i].grad().defined());
      CHECK_GPU_CLOSE(lg[i].grad(), lc[i].grad(), tol.rtol, tol.atol);
    }
    if (c.inputs[i].mutated) {
      INFO("input ", i, " after the call (written in place)");
      CHECK_GPU_CLOSE(lg[i], lc[i], tol.rtol, tol.atol);
    }
  }
}

GradcheckFn on_gpu(const Call& f) {
  return [f](const V& in) {
    V moved;
    for (const Tensor& t : in) moved.push_back(t.to(dl::test::gpu()));
    return f(moved).to(kCPU);
  };
}

void run(const OpCase& c) {
  DL_SKIP_WITHOUT_CUDA();
  INFO("op case '", c.name, "' (tests/op_cases/op_table.cpp)");
  for (cuda::Backend be : dl::test::all_backends()) {
    dl::test::AllBackends guard(be);
    INFO("backend: ", std::string(cuda::to_string(be)));
    for (DType dt : {DType::Float32, DType::Float64})
      for (Variant v : variants(c)) compare(c, v, dt);
    INFO("float64 gradcheck on the GPU");
    CHECK_GRADCHECK(on_gpu(c.call), make_inputs(c, DType::Float64), c.gradcheck);
  }
}

bool applies(const OpCase& c) { return !*c.no_cuda; }

}  // namespace

OP_CASES_REGISTER(run, applies);
