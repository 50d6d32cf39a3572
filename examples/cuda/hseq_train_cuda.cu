// SPDX-License-Identifier: MIT
// hseq-train-cuda: examples/hseq_train.cpp on the GPU. The same source, flags and checkpoints; the
// models run with Backend = hseq::cuda (fp32; see docs/cuda.md).
#define HSEQ_EXAMPLE_BACKEND hseq::cuda
#include "hseq/cuda.hpp"
#include "../hseq_train.cpp"
