// SPDX-License-Identifier: MIT
/// @file
/// @brief The CPU umbrella header: everything in hseq that needs no CUDA compiler.
#pragma once

#include "hseq/core/config.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/memory_space.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/shape.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"

#include "hseq/backend/backend.hpp"
#include "hseq/backend/cpu.hpp"

#include "hseq/ops/adamw.hpp"
#include "hseq/ops/attention.hpp"
#include "hseq/ops/attention_mask.hpp"
#include "hseq/ops/cross_entropy.hpp"
#include "hseq/ops/dropout.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/embedding.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/init.hpp"
#include "hseq/ops/layer_norm.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/ops/position.hpp"
#include "hseq/ops/rnn_cell.hpp"
#include "hseq/ops/softmax.hpp"

#include "hseq/nn/attention.hpp"
#include "hseq/nn/embedding.hpp"
#include "hseq/nn/gru.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/lstm.hpp"
#include "hseq/nn/mlp.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/nn/position_embedding.hpp"
#include "hseq/nn/transformer_block.hpp"

#include "hseq/io/checkpoint.hpp"
#include "hseq/io/csv_log.hpp"
#include "hseq/io/progress.hpp"
#include "hseq/io/safetensors.hpp"
#include "hseq/io/text_dataset.hpp"

#include "hseq/models/generate.hpp"
#include "hseq/models/sampler.hpp"
#include "hseq/models/transformer_lm.hpp"

#include "hseq/train/adamw.hpp"
#include "hseq/train/clip.hpp"
#include "hseq/train/schedule.hpp"
#include "hseq/train/trainer.hpp"
