// dl::onnx::load_from_bytes on models built here with ONNX's own protobuf types: parameter naming
// (state_dict keys are the ONNX names), results against the same computation written with the
// framework's ops, fine-tuning, the dynamic-batch flatten chain, TensorProto files, onnx_run, and
// hostile inputs (each refused with a dl::Error naming the problem).
#include <doctest/doctest.h>

#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "onnx/onnx.h"
#include "test_util.h"
#include "unit/alloc_guard.h"

namespace fs = std::filesystem;
using dl::Tensor;
using dl::test::check_throws_with;

namespace {

// A small graph builder on onnx::ModelProto.
struct Builder {
  ::onnx::ModelProto m;
  ::onnx::GraphProto* g;
  explicit Builder(int64_t opset = 13, const std::string& domain = "") {
    m.set_ir_version(opset >= 13 ? 7 : 4);
    m.set_producer_name("dl-test");
    auto* o = m.add_opset_import();
    o->set_domain(domain);
    o->set_version(opset);
    g = m.mutable_graph();
    g->set_name("test");
  }
  ::onnx::NodeProto* node(const std::string& op, std::vector<std::string> ins, std::vector<std::string> outs,
                          const std::string& name = "") {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(name.empty() ? op + "_" + std::to_string(g->node_size()) : name);
    for (auto& i : ins) n->add_input(i);
    for (auto& o : outs) n->add_output(o);
    return n;
  }
  void input(const std::string& name, std::vector<int64_t> dims, int32_t elem = ::onnx::TensorProto::FLOAT) {
    auto* v = g->add_input();
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(elem);
    for (int64_t d : dims) {
      auto* dim = t->mutable_shape()->add_dim();
      if (d < 0) dim->set_dim_param("batch");
      else dim->set_dim_value(d);
    }
  }
  void output(const std::string& name) {
    auto* v = g->add_output();
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(::onnx::TensorProto::FLOAT);
    t->mutable_shape();  // rank unknown; onnx::checker wants the field
  }
  ::onnx::TensorProto* init(const std::string& name, const Tensor& t) {
    auto* p = g->add_initializer();
    p->set_name(name);
    for (int64_t d : t.sizes()) p->add_dims(d);
    Tensor c = t.contiguous();
    p->set_data_type(c.dtype() == dl::DType::Int64 ? ::onnx::TensorProto::INT64 : ::onnx::TensorProto::FLOAT);
    p->set_raw_data(std::string(static_cast<const char*>(c.raw_data()), c.numel() * c.element_size()));
    return p;
  }
  std::string bytes() const { return m.SerializeAsString(); }
};

void attr_i(::onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::INT);
  a->set_i(v);
}
void attr_ints(::onnx::NodeProto* n, const std::string& name, std::vector<int64_t> v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

Tensor randn(const dl::Shape& s, uint64_t seed) {
  dl::Generator gen(seed);
  return dl::randn(s, {}, &gen);
}

// conv (features.0) -> batchnorm (bn) -> relu -> global average pool -> flatten -> gemm (fc), and
// a multiplier whose ONNX name is not a dotted identifier ("onnx::Mul_7").
struct SmallNet {
  Tensor cw = randn({4, 3, 3, 3}, 1) * 0.3, cb = randn({4}, 2) * 0.1;
  Tensor bw = randn({4}, 3) * 0.1 + 1.0, bb = randn({4}, 4) * 0.1;
  Tensor rm = randn({4}, 5) * 0.1, rv = randn({4}, 6).abs() + 0.5;
  Tensor fw = randn({5, 4}, 7) * 0.5, fb = randn({5}, 8) * 0.1;
  Tensor mul = dl::full({1}, 1.5);
  std::string bytes() const {
    Builder b;
    b.input("x", {-1, 3, 8, 8});
    b.init("features.0.weight", cw);
    b.init("features.0.bias", cb);
    b.init("bn.weight", bw);
    b.init("bn.bias", bb);
    b.init("bn.running_mean", rm);
    b.init("bn.running_var", rv);
    b.init("fc.weight", fw);
    b.init("fc.bias", fb);
    b.init("onnx::Mul_7", mul);
    auto* conv = b.node("Conv", {"x", "features.0.weight", "features.0.bias"}, {"c"}, "features.0");
    attr_ints(conv, "pads", {1, 1, 1, 1});
    attr_ints(conv, "kernel_shape", {3, 3});
    b.node("BatchNormalization", {"c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}, {"n"}, "bn");
    b.node("Relu", {"n"}, {"r"});
    b.node("Mul", {"r", "onnx::Mul_7"}, {"m"});
    b.node("GlobalAveragePool", {"m"}, {"p"});
    b.node("Flatten", {"p"}, {"f"});
    attr_i(b.node("Gemm", {"f", "fc.weight", "fc.bias"}, {"y"}, "fc"), "transB", 1);
    b.output("y");
    return b.bytes();
  }
  Tensor native(const Tensor& x) const {
    dl::Conv2dParams p;
    p.padding = {1, 1};
    Tensor h = dl::batch_norm(dl::conv2d(x, cw, cb, p), rm, rv, bw, bb, false).relu() * mul;
    return dl::linear(h.mean({2, 3}), fw, fb);
  }
};

fs::path temp_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("dl_onnx_test_" + std::to_string(::getpid()) + "_" + tag);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("onnx import: state_dict keys are the ONNX names, results match the same ops written natively") {
  SmallNet net;
  auto m = dl::onnx::load_from_bytes(net.bytes());
  std::vector<std::string> keys;
  for (const auto& [k, v] : m->state_dict()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  CHECK(keys == std::vector<std::string>{"bn.bias", "bn.running_mean", "bn.running_var", "bn.weight", "fc.bias",
                                         "fc.weight", "features.0.bias", "features.0.weight", "onnx__Mul_7"});
  std::vector<std::string> buffers;
  for (const auto& [k, v] : m->named_buffers()) buffers.push_back(k);
  CHECK(buffers == std::vector<std::string>{"bn.running_mean", "bn.running_var"});
  CHECK(m->num_parameters() == 4 * 27 + 4 + 4 + 4 + 20 + 5 + 1);
  CHECK(m->initializer("fc.weight").is_same(m->get_parameter("fc.weight")));
  CHECK(m->input_names() == std::vector<std::string>{"x"});
  CHECK(m->output_names() == std::vector<std::string>{"y"});
  CHECK(m->opset() == 13);
  CHECK(m->nodes().size() == 7);
  for (int64_t batch : {1, 4}) {
    Tensor x = randn({batch, 3, 8, 8}, 20 + batch);
    CHECK_CLOSE(m->forward(x), net.native(x), 1e-5, 1e-6);
  }
  // the state_dict loads back by name (what a native model with the same tree would do)
  CHECK(m->load_state_dict(m->state_dict()).ok());
}

TEST_CASE("onnx import: an imported model fine-tunes, batch-norm statistics stay buffers") {
  SmallNet net;
  auto m = dl::onnx::load_from_bytes(net.bytes());
  Tensor x = randn({3, 3, 8, 8}, 30);
  Tensor target = dl::from_vector<int64_t>({0, 2, 4}, {3});
  Tensor loss = dl::cross_entropy(m->forward(x), target);
  loss.backward();
  std::vector<Tensor> before;
  for (const auto& [name, p] : m->named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().abs().sum().item<double>() > 0);
    before.push_back(p.detach().clone());
  }
  const Tensor rm_before = m->get_buffer("bn.running_mean").clone();
  {
    dl::NoGradGuard ng;
    for (const auto& [name, p] : m->named_parameters()) Tensor(p).add_(p.grad(), -0.5);
  }
  size_t k = 0;
  for (const auto& [name, p] : m->named_parameters()) CHECK_FALSE(dl::allclose(p, before[k++], 0, 0));
  CHECK(dl::allclose(m->get_buffer("bn.running_mean"), rm_before, 0, 0));
  dl::NoGradGuard ng;
  CHECK(dl::cross_entropy(m->forward(x), target).item<double>() < loss.item<double>());
}

TEST_CASE("onnx import: the Shape/Gather/Unsqueeze/Concat/Reshape flatten of old exporters runs at any batch") {
  for (int64_t opset : {9, 13}) {
    Builder b(opset);
    b.input("x", {-1, 2, 3, 4});
    b.init("idx", dl::from_vector<int64_t>({0}, {}));
    b.init("minus1", dl::from_vector<int64_t>({-1}, {1}));
    b.node("Shape", {"x"}, {"s"});
    b.node("Gather", {"s", "idx"}, {"n"});
    if (opset >= 13) {
      b.init("axes", dl::from_vector<int64_t>({0}, {1}));
      b.node("Unsqueeze", {"n", "axes"}, {"n1"});
    } else {
      attr_ints(b.node("Unsqueeze", {"n"}, {"n1"}), "axes", {0});
    }
    attr_i(b.node("Concat", {"n1", "minus1"}, {"shape"}), "axis", 0);
    b.node("Reshape", {"x", "shape"}, {"y"});
    b.output("y");
    auto m = dl::onnx::load_from_bytes(b.bytes());
    for (int64_t batch : {1, 5}) {
      Tensor x = randn({batch, 2, 3, 4}, 40);
      Tensor y = m->forward(x);
      CHECK(y.sizes() == dl::Shape{batch, 24});
      CHECK(dl::allclose(y, x.reshape({batch, 24}), 0, 0));
    }
  }
}

TEST_CASE("onnx import: TensorProto files round-trip float, double, int64 and uint8, typed fields are read") {
  const fs::path dir = temp_dir("tp");
  std::vector<Tensor> ts = {randn({2, 3}, 1), randn({4}, 2).to(dl::DType::Float64),
                            dl::from_vector<int64_t>({-5, 1LL << 40, 7}, {3}),
                            dl::from_vector<uint8_t>({0, 200, 255, 1}, {2, 2}), dl::zeros({0, 3})};
  for (size_t i = 0; i < ts.size(); ++i) {
    const std::string p = (dir / ("t" + std::to_string(i) + ".pb")).string();
    dl::onnx::write_tensor_proto(p, ts[i], "t" + std::to_string(i));
    std::string name;
    Tensor back = dl::onnx::read_tensor_proto(p, &name);
    CHECK(name == "t" + std::to_string(i));
    CHECK(back.dtype() == ts[i].dtype());
    CHECK(back.sizes() == ts[i].sizes());
    CHECK(dl::allclose(back.to(dl::DType::Float64), ts[i].to(dl::DType::Float64), 0, 0));
  }
  ::onnx::TensorProto typed;
  typed.set_data_type(::onnx::TensorProto::FLOAT);
  typed.add_dims(3);
  for (float v : {1.5f, -2.0f, 3.25f}) typed.add_float_data(v);
  {
    std::ofstream f(dir / "typed.pb", std::ios::binary);
    typed.SerializeToOstream(&f);
  }
  CHECK(dl::onnx::read_tensor_proto((dir / "typed.pb").string()).to_vector<float>() ==
        std::vector<float>{1.5f, -2.0f, 3.25f});
  typed.add_float_data(9.0f);  // 4 values for dims [3]
  {
    std::ofstream f(dir / "typed.pb", std::ios::binary);
    typed.SerializeToOstream(&f);
  }
  check_throws_with([&] { dl::onnx::read_tensor_proto((dir / "typed.pb").string()); }, {"float_data holds 4 values"});
  fs::remove_all(dir);
}

TEST_CASE("onnx import: external data is read from the model's folder and refused outside it") {
  const fs::path dir = temp_dir("ext");
  const Tensor w = randn({3}, 9);
  {
    std::ofstream f(dir / "weights.bin", std::ios::binary);
    f.write("PAD!", 4);
    f.write(static_cast<const char*>(w.raw_data()), 12);
  }
  auto make = [&](const std::string& location) {
    Builder b;
    b.input("x", {-1, 3});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    t->set_data_type(::onnx::TensorProto::FLOAT);
    t->add_dims(3);
    t->set_data_location(::onnx::TensorProto::EXTERNAL);
    auto* kv = t->add_external_data();
    kv->set_key("location");
    kv->set_value(location);
    kv = t->add_external_data();
    kv->set_key("offset");
    kv->set_value("4");
    b.node("Mul", {"x", "w"}, {"y"});
    b.output("y");
    return b.bytes();
  };
  auto m = dl::onnx::load_from_bytes(make("weights.bin"), dir.string());
  CHECK(dl::allclose(m->get_parameter("w"), w, 0, 0));
  {  // the same through load(path): the folder is the file's
    std::ofstream f(dir / "m.onnx", std::ios::binary);
    f << make("weights.bin");
  }
  CHECK(dl::allclose(dl::onnx::load((dir / "m.onnx").string())->get_parameter("w"), w, 0, 0));
  check_throws_with([&] { dl::onnx::load_from_bytes(make("../../etc/passwd"), dir.string()); },
                    {"initializer 'w'", "../../etc/passwd", "leaves the model's folder"});
  check_throws_with([&] { dl::onnx::load_from_bytes(make("/etc/passwd"), dir.string()); }, {"absolute"});
  check_throws_with([&] { dl::onnx::load_from_bytes(make("weights.bin"), ""); }, {"not allowed"});
  check_throws_with([&] { dl::onnx::load_from_bytes(make("missing.bin"), dir.string()); }, {"does not exist"});
  fs::create_directories(dir / "sub");
  fs::create_symlink("/etc/passwd", dir / "sub" / "link");
  check_throws_with([&] { dl::onnx::load_from_bytes(make("sub/link"), dir.string()); }, {"outside the model's folder"});
  {  // too short for its dims
    std::ofstream f(dir / "short.bin", std::ios::binary);
    f.write("1234567", 7);
  }
  check_throws_with([&] { dl::onnx::load_from_bytes(make("short.bin"), dir.string()); }, {"the tensor needs 12"});
  fs::remove_all(dir);
}

TEST_CASE("onnx import: hostile and unsupported models are refused with a message naming the problem") {
  const std::string good = SmallNet().bytes();
  // not ONNX, truncated, empty
  check_throws_with([&] { dl::onnx::load_from_bytes(std::string("\xff\xff\xff\xff garbage", 12)); }, {"ONNX model"});
  check_throws_with([&] { dl::onnx::load_from_bytes(good.substr(0, good.size() / 2)); }, {"ONNX model"});
  check_throws_with([&] { dl::onnx::load_from_bytes(""); }, {"ONNX model"});
  check_throws_with([&] { dl::onnx::load("/nonexistent/model.onnx"); }, {"no such file"});

  auto with = [](auto&& edit, int64_t opset = 13) {
    Builder b(opset);
    b.input("x", {-1, 3});
    edit(b);
    return b.bytes();
  };
  auto relu_model = [&](Builder& b) {
    b.node("Relu", {"x"}, {"y"}, "act");
    b.output("y");
  };
  // huge dims with 4 bytes of data; negative dims
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          auto* t = b.init("big", dl::zeros({1}));
          t->clear_dims();
          t->add_dims(10000000000LL);  // 1e10 elements, 4 bytes of data
          relu_model(b);
        }));
      },
      {"initializer 'big'", "raw_data holds 4 bytes"});
  // the same with typed data: one float_data value for 1.6e10 elements (under the 2^34 cap) is
  // refused by its count, before any allocation of the 64 GB the dims claim (which would fail
  // with another message, or exhaust the machine)
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          auto* t = b.init("typed", dl::zeros({1}));
          t->clear_raw_data();
          t->clear_dims();
          t->add_dims(4);
          t->add_dims(4000000000LL);
          t->add_float_data(1.0f);
          relu_model(b);
        }));
      },
      {"initializer 'typed'", "float_data holds 1 values"});
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          auto* t = b.init("big", dl::zeros({1}));
          t->clear_dims();
          for (int i = 0; i < 4; ++i) t->add_dims(1000000);
          relu_model(b);
        }));
      },
      {"initializer 'big'", "more than"});
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          b.init("neg", dl::zeros({1}))->set_dims(0, -3);
          relu_model(b);
        }));
      },
      {"initializer 'neg'", "negative dim"});
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          b.init("h", dl::zeros({2}))->set_data_type(::onnx::TensorProto::COMPLEX64);
          relu_model(b);
        }));
      },
      {"initializer 'h'", "COMPLEX64"});
  // cycle
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          b.node("Add", {"x", "b"}, {"a"}, "first");
          b.node("Relu", {"a"}, {"b"}, "second");
          b.output("b");
        }));
      },
      {"cycle", "node 'first' (#0, Add)"});
  // unsupported op, named with the node and its index
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          b.node("Relu", {"x"}, {"r"}, "act");
          b.node("FooBar", {"r"}, {"y"}, "weird");
          b.output("y");
        }));
      },
      {"node 'weird' (#1, FooBar)", "op 'FooBar' is not supported"});
  // unknown attribute, wrong attribute type
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          attr_i(b.node("Relu", {"x"}, {"y"}, "act"), "bogus", 1);
          b.output("y");
        }));
      },
      {"node 'act' (#0, Relu)", "attribute 'bogus'"});
  // undefined value; duplicate definition; undefined output
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          b.node("Add", {"x", "ghost"}, {"y"}, "add");
          b.output("y");
        }));
      },
      {"node 'add'", "'ghost' is never defined"});
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          b.node("Relu", {"x"}, {"y"}, "one");
          b.node("Sigmoid", {"x"}, {"y"}, "two");
          b.output("y");
        }));
      },
      {"node 'two'", "'y' is already defined"});
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          b.node("Relu", {"x"}, {"y"}, "one");
          b.output("z");
        }));
      },
      {"graph output 'z' is never defined"});
  // opsets and domains
  check_throws_with([&] { dl::onnx::load_from_bytes(with(relu_model, 18)); }, {"opset 18"});
  check_throws_with([&] { dl::onnx::load_from_bytes(with(relu_model, 6)); }, {"opset 6"});
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          auto* o = b.m.add_opset_import();
          o->set_domain("com.microsoft");
          o->set_version(1);
          b.node("Gelu", {"x"}, {"y"}, "g")->set_domain("com.microsoft");
          b.output("y");
        }));
      },
      {"domain 'com.microsoft'"});
  // refused outputs and modes
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          attr_ints(b.node("MaxPool", {"x"}, {"y", "idx"}, "pool"), "kernel_shape", {2, 2});
          b.output("y");
        }));
      },
      {"node 'pool'", "Indices"});
  check_throws_with(
      [&] {
        dl::onnx::load_from_bytes(with([&](Builder& b) {
          b.init("pads", dl::from_vector<int64_t>({1, 1, 1, 1}, {4}));
          auto* n = b.node("Pad", {"x", "pads"}, {"y"}, "pad");
          auto* a = n->add_attribute();
          a->set_name("mode");
          a->set_type(::onnx::AttributeProto::STRING);
          a->set_s("reflect");
          b.output("y");
        }));
      },
      {"node 'pad'", "mode 'reflect'"});
  // folding is bounded: a constant chain that doubles 40 times is left to run time, not allocated
  {
    Builder b;
    b.input("x", {-1, 3});
    b.init("c0", dl::zeros({1024}, dl::DType::Int64));
    for (int i = 0; i < 40; ++i)
      attr_i(b.node("Concat", {"c" + std::to_string(i), "c" + std::to_string(i)}, {"c" + std::to_string(i + 1)}),
             "axis", 0);
    b.node("Relu", {"x"}, {"y"});
    b.output("y");
    b.output("c40");
    CHECK_NOTHROW(dl::onnx::load_from_bytes(b.bytes()));
  }
  // run-time checks: the input's dtype, rank and fixed dims
  auto m = dl::onnx::load_from_bytes(with(relu_model));
  check_throws_with([&] { m->forward(dl::zeros({2, 3}, dl::DType::Float64)); }, {"input 'x' must be float32"});
  check_throws_with([&] { m->forward(dl::zeros({2, 4})); }, {"input 'x' must have shape [?, 3]"});
  check_throws_with([&] { m->run({}); }, {"expects 1 input"});
}

TEST_CASE("onnx_run: runs a model on TensorProto inputs and writes <output>.pb") {
  const std::string prog = dl::test::bin_dir() + "/onnx_run";
  if (!fs::exists(prog)) DL_SKIP(prog << " is not built (cmake --build build --target onnx_run)");
  const fs::path dir = temp_dir("run");
  SmallNet net;
  {
    std::ofstream f(dir / "m.onnx", std::ios::binary);
    f << net.bytes();
  }
  const Tensor x = randn({2, 3, 8, 8}, 50);
  dl::onnx::write_tensor_proto((dir / "x.pb").string(), x, "x");
  for (const std::string& arg : {std::string("x=") + (dir / "x.pb").string(), (dir / "x.pb").string(),
                                 std::string("positional")}) {
    fs::remove_all(dir / "out");
    std::vector<std::string> args{prog, (dir / "m.onnx").string(), "--input", arg, "--output-dir", (dir / "out").string()};
    if (arg == "positional") args = {prog, (dir / "m.onnx").string(), (dir / "x.pb").string(), "-o", (dir / "out").string()};
    const auto r = dl::test::run_program(args, (dir / "log.txt").string());
    INFO(r.output);
    REQUIRE(r.code == 0);
    CHECK_CLOSE(dl::onnx::read_tensor_proto((dir / "out" / "y.pb").string()), net.native(x), 1e-5, 1e-6);
  }
  auto r = dl::test::run_program({prog, (dir / "m.onnx").string(), "--output-dir", (dir / "out").string()},
                                 (dir / "log.txt").string());
  CHECK(r.code != 0);
  CHECK(r.output.find("input 'x' is missing") != std::string::npos);
  dl::onnx::write_tensor_proto((dir / "bad.pb").string(), dl::zeros({2, 3, 5, 8}), "x");
  r = dl::test::run_program(
      {prog, (dir / "m.onnx").string(), "--input", (dir / "bad.pb").string(), "--output-dir", (dir / "out").string()},
      (dir / "log.txt").string());
  CHECK(r.code != 0);
  CHECK(r.output.find("must have shape [?, 3, 8, 8]") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("onnx import: the fuzz seed models (fuzz/corpus/onnx) load and run at two batch sizes") {
  const fs::path dir = fs::path(dl::test::source_dir()) / "fuzz" / "corpus" / "onnx";
  REQUIRE(fs::is_directory(dir));
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    INFO(e.path().filename().string());
    auto m = dl::onnx::load(e.path().string());
    const std::string f = e.path().filename().string();
    const dl::Shape per_sample = f.rfind("cnn", 0) == 0                 ? dl::Shape{2, 6, 6}
                                 : f.rfind("flatten_chain", 0) == 0     ? dl::Shape{2, 3}
                                 : f.rfind("slice_pad_clip", 0) == 0    ? dl::Shape{3, 5}
                                                                        : dl::Shape{3};
    for (int64_t batch : {1, 3}) {
      dl::Shape s = per_sample;
      s.insert(s.begin(), batch);
      Tensor y = m->forward(randn(s, 60 + batch));
      CHECK(y.size(0) == batch);
      CHECK(std::isfinite(y.abs().sum().item<double>()));
    }
    ++n;
  }
  CHECK(n == 6);
}

TEST_CASE("onnx import: an unsorted graph is sorted by us, then refused by ONNX's checker with its message") {
  Builder b;
  b.input("x", {-1, 3});
  b.node("Sigmoid", {"r"}, {"y"}, "second");
  b.node("Relu", {"x"}, {"r"}, "first");
  b.output("y");
  check_throws_with([&] { dl::onnx::load_from_bytes(b.bytes()); }, {"onnx::checker", "topologically sorted"});
}

TEST_CASE("onnx import: randomly mutated seed models end in a clean load or a dl::Error") {
  // A cheap, deterministic stand-in for the fuzzer (fuzz/fuzz_onnx.cpp) in the normal test run:
  // byte flips, truncations and insertions of the seed models; anything but a dl::Error escaping
  // (or a crash) fails. DL_ONNX_MUTATIONS=N (default 300 per seed) runs longer; with
  // DL_ONNX_MUTATIONS_RUN=1 each model that loads is also run once on a small input.
  const char* env_n = std::getenv("DL_ONNX_MUTATIONS");
  const int per_seed = env_n ? std::max(1, std::atoi(env_n)) : 300;
  const bool run = std::getenv("DL_ONNX_MUTATIONS_RUN") != nullptr;
  const fs::path dir = fs::path(dl::test::source_dir()) / "fuzz" / "corpus" / "onnx";
  REQUIRE(fs::is_directory(dir));
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(state >> 33);
  };
  int loaded = 0, refused = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream f(e.path(), std::ios::binary);
    const std::string seed((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    REQUIRE(!seed.empty());
    for (int i = 0; i < per_seed; ++i) {
      std::string s = seed;
      const int edits = 1 + static_cast<int>(next() % 4);
      for (int k = 0; k < edits; ++k) {
        const size_t pos = next() % s.size();
        switch (next() % 4) {
          case 0: s[pos] = static_cast<char>(next()); break;
          case 1: s[pos] = static_cast<char>(s[pos] ^ (1 << (next() % 8))); break;
          case 2: s.insert(pos, 1, static_cast<char>(next())); break;
          default: s.resize(std::max<size_t>(pos, 1)); break;
        }
      }
      try {
        auto m = dl::onnx::load_from_bytes(s);
        ++loaded;
        if (run && m->input_names().size() == 1) {
          const std::string f = e.path().filename().string();
          const dl::Shape shape = f.rfind("cnn", 0) == 0             ? dl::Shape{2, 2, 6, 6}
                                  : f.rfind("flatten_chain", 0) == 0 ? dl::Shape{2, 2, 3}
                                  : f.rfind("slice_pad_clip", 0) == 0 ? dl::Shape{2, 3, 5}
                                                                      : dl::Shape{2, 3};
          try {
            (void)m->forward(dl::zeros(shape));
          } catch (const dl::Error&) {
          }
        }
      } catch (const dl::Error&) {
        ++refused;
      }
    }
  }
  MESSAGE(loaded << " mutated models loaded, " << refused << " refused with a dl::Error");
  CHECK(loaded + refused == 6 * per_seed);
}

namespace {
void attr_s(::onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::STRING);
  a->set_s(v);
}
}  // namespace

TEST_CASE("onnx import: Conv and MaxPool auto_pad SAME_UPPER / SAME_LOWER and asymmetric pads") {
  // 8x8 input, kernel 3, stride 2: 4x4 output, one row/column of padding in total, at the end
  // (SAME_UPPER) or at the start (SAME_LOWER). Expected: the stride-1, pad-1 result subsampled at
  // odd (window starts 0, 2, 4, 6) or even (starts -1, 1, 3, 5) positions.
  const Tensor x = randn({2, 3, 8, 8}, 70);
  const Tensor w = randn({4, 3, 3, 3}, 71), bias = randn({4}, 72);
  dl::Conv2dParams p1;
  p1.padding = {1, 1};
  const Tensor conv_full = dl::conv2d(x, w, bias, p1);
  dl::Pool2dParams q1;
  q1.kernel = {3, 3};
  q1.stride = {1, 1};
  q1.padding = {1, 1};
  const Tensor pool_full = dl::max_pool2d(x, q1);
  for (const std::string mode : {"SAME_UPPER", "SAME_LOWER", "PADS"}) {
    INFO(mode);
    const int64_t start = mode == "SAME_LOWER" ? 0 : 1;
    Builder b;
    b.input("x", {-1, 3, 8, 8});
    b.init("w", w);
    b.init("b", bias);
    auto* conv = b.node("Conv", {"x", "w", "b"}, {"c"});
    auto* pool = b.node("MaxPool", {"x"}, {"p"});
    attr_ints(pool, "kernel_shape", {3, 3});
    for (auto* n : {conv, pool}) {
      attr_ints(n, "strides", {2, 2});
      if (mode == "PADS") attr_ints(n, "pads", {0, 0, 1, 1});  // = SAME_UPPER, written out
      else attr_s(n, "auto_pad", mode);
    }
    b.output("c");
    b.output("p");
    auto m = dl::onnx::load_from_bytes(b.bytes());
    const auto ys = m->run({x});
    CHECK_CLOSE(ys[0], conv_full.slice(2, start, 8, 2).slice(3, start, 8, 2), 1e-5, 1e-5);
    CHECK_CLOSE(ys[1], pool_full.slice(2, start, 8, 2).slice(3, start, 8, 2), 0, 0);
  }
}

TEST_CASE("onnx import: Softmax/LogSoftmax coerce to 2-D at axis before opset 13, use one axis from 13") {
  const Tensor x = randn({2, 3, 4}, 80);
  for (int64_t opset : {11, 13}) {
    Builder b(opset);
    b.input("x", {-1, 3, 4});
    attr_i(b.node("Softmax", {"x"}, {"s"}), "axis", 1);
    attr_i(b.node("LogSoftmax", {"x"}, {"l"}), "axis", 1);
    b.output("s");
    b.output("l");
    const auto ys = dl::onnx::load_from_bytes(b.bytes())->run({x});
    if (opset < 13) {
      CHECK_CLOSE(ys[0], x.reshape({2, 12}).softmax(1).reshape({2, 3, 4}), 1e-6, 1e-7);
      CHECK_CLOSE(ys[1], x.reshape({2, 12}).log_softmax(1).reshape({2, 3, 4}), 1e-6, 1e-6);
    } else {
      CHECK_CLOSE(ys[0], x.softmax(1), 1e-6, 1e-7);
      CHECK_CLOSE(ys[1], x.log_softmax(1), 1e-6, 1e-6);
    }
  }
}

TEST_CASE("onnx import: a file of a newer IR version (written by a newer ONNX) with opset <= 17 loads") {
  Builder b;
  b.m.set_ir_version(9);
  b.input("x", {-1, 3});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  auto m = dl::onnx::load_from_bytes(b.bytes());
  CHECK(dl::allclose(m->forward(dl::full({2, 3}, -1.0)), dl::zeros({2, 3}), 0, 0));
}

TEST_CASE("onnx import: ReduceSum/ReduceMax/ReduceMin and variadic Max/Min (broadcast, differentiable)") {
  const Tensor x = randn({2, 3, 4}, 90), y = randn({3, 1}, 91);
  for (int64_t opset : {11, 13}) {
    INFO("opset " << opset);
    Builder b(opset);
    b.input("x", {-1, 3, 4});
    b.input("y", {3, 1});
    if (opset >= 13) {
      b.init("axes", dl::from_vector<int64_t>({-1, 1}, {2}));
      attr_i(b.node("ReduceSum", {"x", "axes"}, {"s"}), "keepdims", 0);
    } else {
      auto* n = b.node("ReduceSum", {"x"}, {"s"});
      attr_ints(n, "axes", {-1, 1});
      attr_i(n, "keepdims", 0);
    }
    attr_ints(b.node("ReduceMax", {"x"}, {"mx"}), "axes", {2});
    b.node("ReduceMin", {"x"}, {"mn"});
    b.node("Max", {"x", "y"}, {"m2"});
    b.node("Min", {"x", "y", "x"}, {"m3"});
    for (const char* o : {"s", "mx", "mn", "m2", "m3"}) b.output(o);
    auto m = dl::onnx::load_from_bytes(b.bytes());
    Tensor xg = x.clone().requires_grad_(true);
    const auto r = m->run({xg, y});
    CHECK_CLOSE(r[0], x.sum({1, 2}), 1e-6, 1e-6);
    CHECK_CLOSE(r[1], x.max(2, true), 0, 0);
    CHECK_CLOSE(r[2], x.neg().max().neg().reshape({1, 1, 1}), 0, 0);
    CHECK_CLOSE(r[3], dl::maximum(x, y), 0, 0);
    CHECK_CLOSE(r[4], dl::maximum(x.neg(), y.neg()).neg(), 0, 0);
    r[3].sum().backward();
    REQUIRE(xg.grad().defined());
    CHECK_CLOSE(xg.grad(), x.gt(y.expand({2, 3, 4})).to(dl::DType::Float32), 0, 0);
  }
}

TEST_CASE("onnx import: run-time shape errors are dl::Errors naming the node") {
  // Each model loads (the problem shows only with the input's shape) and its forward must throw a
  // dl::Error that names the node, never crash.
  struct Case {
    const char* what;
    std::function<void(Builder&)> build;
  };
  const std::vector<Case> cases = {
      {"conv group", [](Builder& b) {
         b.init("w", dl::zeros({4, 1, 1, 1}));
         attr_i(b.node("Conv", {"x", "w"}, {"y"}, "bad"), "group", 5);
       }},
      {"maxpool pad beyond half the kernel", [](Builder& b) {
         auto* n = b.node("MaxPool", {"x"}, {"y"}, "bad");
         attr_ints(n, "kernel_shape", {2, 2});
         attr_ints(n, "pads", {3, 3, 3, 3});
       }},
      {"gemm inner dims", [](Builder& b) {
         b.init("w", dl::zeros({5, 7}));
         b.init("f", dl::from_vector<int64_t>({2, -1}, {2}));
         b.node("Reshape", {"x", "f"}, {"r"});
         b.node("Gemm", {"r", "w"}, {"y"}, "bad");
       }},
      {"reshape numel", [](Builder& b) {
         b.init("s", dl::from_vector<int64_t>({7, 7}, {2}));
         b.node("Reshape", {"x", "s"}, {"y"}, "bad");
       }},
      {"gather index", [](Builder& b) {
         b.init("i", dl::from_vector<int64_t>({9}, {1}));
         attr_i(b.node("Gather", {"x", "i"}, {"y"}, "bad"), "axis", 1);
       }},
      {"slice step 0", [](Builder& b) {
         b.init("st", dl::from_vector<int64_t>({0}, {1}));
         b.init("en", dl::from_vector<int64_t>({2}, {1}));
         b.init("ax", dl::from_vector<int64_t>({1}, {1}));
         b.init("sp", dl::from_vector<int64_t>({0}, {1}));
         b.node("Slice", {"x", "st", "en", "ax", "sp"}, {"y"}, "bad");
       }},
      {"squeeze a dim of 3", [](Builder& b) {
         b.init("ax", dl::from_vector<int64_t>({1}, {1}));
         b.node("Squeeze", {"x", "ax"}, {"y"}, "bad");
       }},
      {"transpose perm", [](Builder& b) { attr_ints(b.node("Transpose", {"x"}, {"y"}, "bad"), "perm", {0, 0, 1, 2}); }},
      {"concat shapes", [](Builder& b) {
         b.init("c", dl::zeros({1, 2, 4, 4}));
         attr_i(b.node("Concat", {"x", "c"}, {"y"}, "bad"), "axis", 0);
       }},
      {"pad length", [](Builder& b) {
         b.init("p", dl::from_vector<int64_t>({1, 1}, {2}));
         b.node("Pad", {"x", "p"}, {"y"}, "bad");
       }},
      {"huge pad", [](Builder& b) {
         b.init("p", dl::from_vector<int64_t>({0, 0, 0, 1LL << 30, 0, 0, 0, 1LL << 30}, {8}));
         b.node("Pad", {"x", "p"}, {"y"}, "bad");
       }},
      {"broadcast", [](Builder& b) {
         b.init("c", dl::zeros({5}));
         b.node("Add", {"x", "c"}, {"y"}, "bad");
       }},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    Builder b;
    b.input("x", {-1, 3, 4, 4});
    c.build(b);
    b.output("y");
    auto m = dl::onnx::load_from_bytes(b.bytes());
    const dl::test::Outcome o = dl::test::run_guarded([&] { (void)m->forward(randn({2, 3, 4, 4}, 100)); });
    INFO(o.message);
    CHECK(o.dl_error);
    CHECK(o.message.find("node 'bad'") != std::string::npos);
    CHECK(o.huge_requests == 0);
  }
}

TEST_CASE("onnx import: Expand broadcasts both ways and passes gradients back summed") {
  Builder b;
  b.input("x", {-1, 1, 4});
  b.init("s", dl::from_vector<int64_t>({3, 1}, {2}));  // (N, 1, 4) with (3, 1) -> (N, 3, 4)
  b.node("Expand", {"x", "s"}, {"y"});
  b.output("y");
  auto m = dl::onnx::load_from_bytes(b.bytes());
  Tensor x = randn({2, 1, 4}, 110).requires_grad_(true);
  Tensor y = m->forward(x);
  CHECK(y.sizes() == dl::Shape{2, 3, 4});
  CHECK(dl::allclose(y, x.detach().expand({2, 3, 4}), 0, 0));
  y.sum().backward();
  CHECK(dl::allclose(x.grad(), dl::full({2, 1, 4}, 3.0), 0, 0));
}

TEST_CASE("onnx import: Dropout is the identity in every opset form, BatchNormalization's legacy and training attributes") {
  const Tensor x = randn({2, 3, 4, 4}, 120);
  {  // opset 7: ratio attribute, mask output
    Builder b(7);
    b.input("x", {-1, 3, 4, 4});
    auto* n = b.node("Dropout", {"x"}, {"y", "mask"});
    auto* a = n->add_attribute();
    a->set_name("ratio");
    a->set_type(::onnx::AttributeProto::FLOAT);
    a->set_f(0.5f);
    b.output("y");
    CHECK(dl::allclose(dl::onnx::load_from_bytes(b.bytes())->forward(x), x, 0, 0));
  }
  for (bool training : {false, true}) {  // opset 13: ratio and training_mode inputs
    Builder b(13);
    b.input("x", {-1, 3, 4, 4});
    b.init("ratio", dl::full({}, 0.3));
    auto* t = b.g->add_initializer();
    t->set_name("training");
    t->set_data_type(::onnx::TensorProto::BOOL);
    t->set_raw_data(std::string(1, training ? '\1' : '\0'));
    b.node("Dropout", {"x", "ratio", "training"}, {"y"}, "drop");
    b.output("y");
    auto m = dl::onnx::load_from_bytes(b.bytes());
    CHECK(m->named_parameters().empty());  // ratio is read as a number: a constant
    if (training) check_throws_with([&] { m->forward(x); }, {"node 'drop'", "training_mode=true"});
    else CHECK(dl::allclose(m->forward(x), x, 0, 0));
  }
  auto bn = [&](int64_t opset, const char* attr, int64_t value) {
    Builder b(opset);
    b.input("x", {-1, 3, 4, 4});
    for (const char* n : {"s", "b", "m"}) b.init(n, dl::zeros({3}));
    b.init("v", dl::ones({3}));
    attr_i(b.node("BatchNormalization", {"x", "s", "b", "m", "v"}, {"y"}, "bn"), attr, value);
    b.output("y");
    return b.bytes();
  };
  CHECK_NOTHROW(dl::onnx::load_from_bytes(bn(7, "spatial", 1)));
  check_throws_with([&] { dl::onnx::load_from_bytes(bn(7, "spatial", 0)); }, {"node 'bn'", "spatial=0"});
  check_throws_with([&] { dl::onnx::load_from_bytes(bn(15, "training_mode", 1)); }, {"node 'bn'", "training_mode=1"});
  check_throws_with([&] { dl::onnx::load_from_bytes(bn(15, "spatial", 1)); }, {"node 'bn'", "attribute 'spatial'"});
}

TEST_CASE("onnx import: a loaded model is in eval mode, train() makes BatchNormalization use batch statistics") {
  SmallNet net;
  auto m = dl::onnx::load_from_bytes(net.bytes());
  CHECK_FALSE(m->is_training());
  const Tensor x = randn({4, 3, 8, 8}, 130);
  const Tensor eval_out = m->forward(x).detach();
  CHECK_CLOSE(eval_out, net.native(x), 1e-5, 1e-6);
  m->train();
  CHECK(m->is_training());
  // the native computation in training mode, on copies of the running statistics
  Tensor rm = net.rm.clone(), rv = net.rv.clone();
  dl::Conv2dParams p;
  p.padding = {1, 1};
  Tensor h = dl::batch_norm(dl::conv2d(x, net.cw, net.cb, p), rm, rv, net.bw, net.bb, true, 0.1, 1e-5).relu() * net.mul;
  const Tensor want = dl::linear(h.mean({2, 3}), net.fw, net.fb);
  Tensor got = m->forward(x);
  CHECK_CLOSE(got, want, 1e-5, 1e-6);
  CHECK_FALSE(dl::allclose(got, eval_out, 1e-3, 1e-3));
  // the running statistics moved with ONNX's default momentum 0.9 (PyTorch's 0.1), in place
  CHECK_CLOSE(m->get_buffer("bn.running_mean"), rm, 1e-5, 1e-6);
  CHECK_CLOSE(m->get_buffer("bn.running_var"), rv, 1e-5, 1e-6);
  CHECK_FALSE(dl::allclose(m->get_buffer("bn.running_mean"), net.rm, 1e-4, 1e-5));
  got.sum().backward();
  CHECK(m->get_parameter("bn.weight").grad().defined());
  m->eval();
  CHECK_FALSE(m->is_training());
}
