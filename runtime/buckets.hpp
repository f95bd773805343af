// Batch buckets: the token-count ranges kernels are selected (and tuned) for.
#pragma once

#include <vector>

#include "codegen/kernel_spec.hpp"

namespace ffnjit {

// Decode through prefill: 1, 2-4, 5-16, 17-64, 65-256, 257-1024, 1025-4096, 4097+.
const std::vector<BatchBucket>& default_buckets();

// Index of the bucket holding `tokens` (>= 1) in `buckets` (sorted, covering 1..max).
int bucket_index(const std::vector<BatchBucket>& buckets, long long tokens);

}  // namespace ffnjit
