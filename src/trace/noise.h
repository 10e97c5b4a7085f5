// The corruption of a causal trace: noise added to (or replacing) the
// subject's token embeddings, drawn exactly as ROME draws it so results
// compare number for number (numpy RandomState, reseeded for every fact).
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "trace/noise_spec.h"

namespace kt {

class Model;

// Unbiased standard deviation of every embedding value of every subject,
// each tokenized alone as ROME's make_inputs does (special tokens included).
double subject_embedding_std(const Model& model, const std::vector<std::string>& subjects);

// Noise for rows [samples] x tokens [n] x hidden [d], float64 as numpy
// draws it (C order, RandomState(seed) fresh), already scaled by level.
// draw = k: the k-th such draw from the same RandomState (0 = the first;
// ROME's trace_with_repatch corrupts its second pass with draw 1).
at::Tensor draw_noise(const NoiseSpec& spec, int64_t samples, int64_t n, int64_t d, int64_t draw = 0);

}  // namespace kt
