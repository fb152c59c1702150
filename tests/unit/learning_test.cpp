// End-to-end learning on the CPU: the study's scratch-CNN shape (four conv3x3-BN-ReLU blocks,
// max pooling after the first three, global average pooling after the fourth, a dropout + linear
// head; about 1.5M parameters) memorises a small fixed batch of random 1x28x28 images with Adam.
// Everything the nn layer does takes part: layers, init, autograd through them, BN bookkeeping,
// dropout from the seeded default generator, the optimizer.
#include <memory>

#include "nn/nn.h"
#include "test_util.h"

using namespace dl;
using namespace dl::nn;

namespace {

std::shared_ptr<Sequential> conv_block(int64_t in, int64_t out, bool maxpool) {
  auto s = std::make_shared<Sequential>(
      std::make_shared<Conv2d>(Conv2dConfig{.in_channels = in, .out_channels = out, .kernel_size = 3, .padding = 1}),
      std::make_shared<BatchNorm2d>(out), std::make_shared<ReLU>());
  if (maxpool) s->push_back(std::make_shared<MaxPool2d>(2));
  return s;
}

// 1x28x28 -> 48x14x14 -> 96x7x7 -> 256x3x3 -> 512x3x3 -> 512 -> 10
std::shared_ptr<Sequential> scratch_cnn() {
  return std::make_shared<Sequential>(conv_block(1, 48, true), conv_block(48, 96, true), conv_block(96, 256, true),
                                      conv_block(256, 512, false), std::make_shared<AdaptiveAvgPool2d>(1),
                                      std::make_shared<Flatten>(), std::make_shared<Dropout>(0.3),
                                      std::make_shared<Linear>(512, 10));
}

}  // namespace

TEST_CASE("the scratch CNN (about 1.5M parameters) fits a small fixed batch to near-zero loss with Adam") {
  manual_seed(2024);
  auto model = scratch_cnn();
  const int64_t n_params = model->num_parameters();
  MESSAGE("scratch CNN parameters: ", n_params);
  // 48*9+48 + 2*48 + 48*96*9+96 + 2*96 + 96*256*9+256 + 2*256 + 256*512*9+512 + 2*512 + 512*10+10
  CHECK(n_params == 1450602);

  // 16 random images (fixed by their own generator) with balanced labels
  constexpr int64_t kBatch = 16;
  Generator data_gen(7);
  Tensor x = randn({kBatch, 1, 28, 28}, {}, &data_gen);
  std::vector<int64_t> labels(kBatch);
  for (int64_t i = 0; i < kBatch; ++i) labels[static_cast<size_t>(i)] = i % 10;
  Tensor y = from_vector<int64_t>(labels, {kBatch});

  optim::Adam opt(model->parameters(), {.lr = 2e-3});
  CrossEntropyLoss criterion;
  double first = 0, last = 0;
  int steps = 0;
  constexpr int kMaxSteps = 40;
  // Stop once the (dropout, batch-statistics) training loss is well below the bar.
  for (; steps < kMaxSteps; ++steps) {
    opt.zero_grad();
    Tensor loss = criterion(model->forward(x), y);
    loss.backward();
    opt.step();
    last = loss.item<double>();
    if (steps == 0) first = last;
    if (last < 0.01) break;
  }
  MESSAGE("loss ", first, " -> ", last, " after ", steps + 1, " Adam steps");
  CHECK(first > 2.0);  // it started at chance (ln 10 = 2.3)
  CHECK(last < 0.05);

  // Memorised in eval mode too (running statistics, no dropout): every image classified right.
  model->eval();
  NoGradGuard no_grad;
  Tensor logits = model->forward(x);
  double eval_loss = cross_entropy(logits, y).item<double>();
  double accuracy = logits.argmax(1).eq(y).to(DType::Float64).mean().item<double>();
  MESSAGE("eval mode: loss ", eval_loss, ", accuracy ", accuracy);
  CHECK(accuracy == 1.0);
}
