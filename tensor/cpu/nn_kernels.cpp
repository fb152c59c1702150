// Registers the CPU neural-network kernels (conv, pooling, batch norm, loss) into the table.
#include "tensor/dispatch.h"

namespace dl::cpu {

void register_conv_kernels(KernelTable& t);        // conv.cpp
void register_pool_kernels(KernelTable& t);        // pool.cpp
void register_batch_norm_kernels(KernelTable& t);  // batch_norm.cpp
void register_loss_kernels(KernelTable& t);        // loss.cpp

void register_nn_kernels(KernelTable& t) {
  register_conv_kernels(t);
  register_pool_kernels(t);
  register_batch_norm_kernels(t);
  register_loss_kernels(t);
}

}  // namespace dl::cpu
