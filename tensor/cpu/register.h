#pragma once
// Internal to tensor/: each CPU kernel file fills its own fields of the dispatch table
// (tensor/dispatch.h) with a register_*_kernels function at its end; this is the one list of them.
// The table calls register_kernels the first time it is used (tensor/ops.cpp kernels()), so no
// static initialiser has to survive the linker.
#include "tensor/dispatch.h"

namespace dl::cpu {

void register_elementwise_kernels(KernelTable& t);  // elementwise.cpp: unary, binary, where, copy, fill, relu_backward
void register_reduce_kernels(KernelTable& t);       // reduce.cpp: reductions, softmax, gather/scatter, bmm
void register_conv_kernels(KernelTable& t);         // conv.cpp
void register_pool_kernels(KernelTable& t);         // pool.cpp
void register_batch_norm_kernels(KernelTable& t);   // batch_norm.cpp
void register_loss_kernels(KernelTable& t);         // loss.cpp

inline void register_kernels(KernelTable& t) {
  register_elementwise_kernels(t);
  register_reduce_kernels(t);
  register_conv_kernels(t);
  register_pool_kernels(t);
  register_batch_norm_kernels(t);
  register_loss_kernels(t);
}

}  // namespace dl::cpu
