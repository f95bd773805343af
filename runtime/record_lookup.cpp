// Tuning records -> choices for runtime::Layer (see record_lookup.hpp).
#include "runtime/record_lookup.hpp"

namespace ffnjit {

ChoiceLookup record_lookup(RecordLookupState& st) {
  return [&st](const LayerShape& shape, const std::string& sig, const BatchBucket& b)
             -> Expected<std::optional<Choice>> {
    std::lock_guard<std::mutex> lock(*st.mu);
    auto found =
        st.cache->find_tuning(st.identity, sig, b.max_tokens >= (1 << 30) ? b.min_tokens : b.max_tokens);
    FFNJIT_TRY(found);
    if (found->skipped.total()) st.skipped = found->skipped.message();
    if (!found->record || found->record->bucket_min > b.min_tokens || found->record->bucket_max < b.max_tokens)
      return std::optional<Choice>();
    // The record's own bucket rebuilds the specs exactly as `ffnjit tune` compiled them.
    auto c = choice_from_json(found->record->winner, shape, st.arch,
                              BatchBucket{int(found->record->bucket_min), int(found->record->bucket_max)});
    FFNJIT_TRY(c);
    return std::optional<Choice>(*c);
  };
}

}  // namespace ffnjit
