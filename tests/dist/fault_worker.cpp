// Helper for tests/dist/rank_failure.sh (not a doctest suite): a small DDP training loop in which
// rank 0 checkpoints after every step, and rank 1, at step 5, either dies (SIGKILL) or hangs.
//
//   fault_worker kill|hang DIR   under mpirun -np 2: must end with an error, not hang
//   fault_worker check DIR       one process: DIR/last.ckpt must load and hold the model's weights
#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include "dist/ddp.h"
#include "models/checkpoint.h"
#include "nn/layers.h"
#include "nn/optim/sgd.h"

using namespace dl;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: fault_worker kill|hang|check DIR\n";
    return 2;
  }
  const std::string mode = argv[1], dir = argv[2];
  try {
    manual_seed(1);
    auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(16, 32), std::make_shared<nn::ReLU>(),
                                                  std::make_shared<nn::Linear>(32, 4));
    if (mode == "check") {
      Checkpoint c = load_checkpoint(dir + "/last.ckpt");
      model->load_state_dict(c.model, true);
      std::cout << "last.ckpt intact: step " << c.meta.at("step") << "\n";
      return 0;
    }
    if (mode != "kill" && mode != "hang") throw std::runtime_error("unknown mode " + mode);
    auto& pg = dist::ProcessGroup::init();
    dist::DistributedDataParallel ddp(model, pg);
    optim::SGD opt(model->parameters(), {.lr = 0.01});
    for (int step = 1; step <= 1000; ++step) {
      if (step == 5 && pg.rank() == 1) {
        std::cerr << "rank 1: " << (mode == "kill" ? "killing itself" : "hanging") << " at step 5" << std::endl;
        if (mode == "kill") std::raise(SIGKILL);
        std::this_thread::sleep_for(std::chrono::hours(1));
      }
      Tensor x = randn({8, 16});
      opt.zero_grad();
      ddp(x).pow(2.0).mean().backward();
      opt.step();
      if (pg.rank() == 0) save_checkpoint(dir + "/last.ckpt", {model->state_dict(), {}, {{"step", step}}});
    }
    std::cerr << "rank " << pg.rank() << ": the run went on after a peer failed\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "fault_worker: error: " << e.what() << "\n";
    return 1;
  }
}
