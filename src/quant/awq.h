// AWQ (Lin et al. 2023; AutoAWQ's defaults, ../shared/docs/research/peers.md)
// and SmoothQuant (Xiao et al. 2022) as block stages (quant/layerwise.h).
//
// AWQ, per scaling group of a block (Llama: attn_norm -> q/k/v, v -> o when
// their shapes match, ffn_norm -> gate/up, up -> down; GPT-2: ln_1 -> qkv,
// ln_2 -> fc (up), fc -> proj (down) through GELU is not linear, so not that one):
//   s = mean|x|^alpha (optionally divided by max|w|^(1-alpha), duo scaling),
//   normalised by sqrt(max(s) * min(s)), alpha on a 20-point grid in [0, 1);
//   the loss is the group's output error ||W X - Q(W diag(s)) diag(s)^-1 X||^2
//   on the captured inputs; the best s is folded: the previous norm (or
//   linear's rows) divided by s, the group's weight columns multiplied by s.
//   Then a clipping search per output row group (max|w| shrunk over a grid)
//   on q/k/v/gate/up/down... minimising the same output error. All in f32.
// SmoothQuant (for W8A8): s_j = max|X_j|^alpha / max|W_j|^(1-alpha) per
//   input channel of each norm-fed group, alpha default 0.5, folded into the
//   preceding norm; the weights' columns are multiplied by s.
#pragma once

#include <memory>

#include "quant/layerwise.h"

namespace lowbit {

struct AwqOptions {
  int grid = 20;             // alpha in {0, 1/grid, ..., (grid-1)/grid}
  bool duo_scaling = false;  // s = mean|x|^a / max|w|^(1-a)
  bool clip_search = true;   // AutoAWQ's apply_clip
  int max_tokens = 4096;     // calibration rows used by the searches (evenly spaced subsample)
};

struct SmoothQuantOptions {
  double alpha = 0.5;
};

std::unique_ptr<BlockStage> MakeAwqStage(const AwqOptions& options);
std::unique_ptr<BlockStage> MakeSmoothQuantStage(const SmoothQuantOptions& options);

}  // namespace lowbit
