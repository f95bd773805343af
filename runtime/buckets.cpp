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
    // An open bucket ("4097+", max_tokens 2^30) holds every larger count too: a forward of
    // up to 2^31-1 tokens must find one.
    if (tokens >= buckets[i].min_tokens && (tokens <= buckets[i].max_tokens || buckets[i].max_tokens >= (1 << 30)))
      return int(i);
  return -1;
}

}  // namespace ffnjit
