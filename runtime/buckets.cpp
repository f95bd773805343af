// Batch buckets: the token-count ranges kernels are selected (and tuned) for.
#include "runtime/buckets.hpp"

namespace ffnjit {

const std::vector<BatchBucket>& default_buckets() {
  static const std::vector<BatchBucket> b = {{1, 1},     {2, 4},       {5, 16},       {17, 64},
                                             {65, 256},  {257, 1024},  {1025, 4096},  {4097, 1 << 30}};
  return b;
}

int bucket_index(const std::vector<BatchBucket>& buckets, long long tokens) {
  for (size_t i = 0; i < buckets.size(); ++i)
    if (tokens >= buckets[i].min_tokens && tokens <= buckets[i].max_tokens) return int(i);
  return -1;
}

}  // namespace ffnjit
