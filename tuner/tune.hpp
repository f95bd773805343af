// `ffnjit tune`: pre-tunes every FFN layer of a checkpoint for the engine's batch
// buckets and stores compiled kernels and winners in the cache (docs/tuner.md).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "codegen/kernel_spec.hpp"
#include "support/status.hpp"
#include "tuner/measure.hpp"

namespace ffnjit {

struct TuneOptions {
  std::string checkpoint;
  std::string profile;     // optional sparsity profile (JSON)
  // Captured FFN inputs (safetensors, layers.N.input as written by `ffnjit
  // demo-checkpoint` or an engine): candidates are timed on real activations.
  // Empty: <checkpoint>/inputs.safetensors when present, else Gaussian inputs.
  std::string inputs;
  std::string cache_path;  // resolved cache database
  std::vector<BatchBucket> buckets;
  double budget_s = 0;     // stop starting new entries after this long (0: no limit)
  int shard = 0, shards = 1;
  int tensor_parallel = 1;  // > 1: tune each layer's shards as a TP engine registers them
  bool compile_only = false;  // no GPU: compile and store every default config, untimed
  Arch compile_arch = Arch::kSm90a;  // target for --compile-only (with a GPU: the GPU's)
  int device = 0;
  int compile_threads = 0;  // 0: all host cores
  MeasureOptions measure;
  const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT): finish the entry, then stop
};

struct TuneRow {
  std::string signature;  // the layer id the record is stored under
  std::string layers;     // "layer 3" / "layer 3 tp2.1"
  std::string shape;      // the shape signature
  std::string bucket, winner;
  double winner_us = 0, dense_us = 0;
  double default_us = 0;  // the untuned default on the same held-out inputs (0: not timed)
  bool untimed = false, resumed = false;
  int candidates = 0, rejected = 0;
  double speedup() const { return winner_us > 0 ? dense_us / winner_us : 0; }
};

struct TuneResult {
  std::vector<TuneRow> rows;
  int entries_planned = 0;
  int entries_left = 0;  // not started: the budget ran out or the run was stopped
  bool interrupted = false;
  int compiles = 0;
  std::string skipped_records;  // cache records for another toolchain, if any
  std::string input_source;     // what the candidates were timed on
  std::string fingerprint;      // the checkpoint's (for profiles written by engines)
  int shape_records = 0;        // (shape, bucket) records written for engines without layer ids
};

struct TuneProgress {
  int done = 0, total = 0;
  std::string current;  // "ffn:2048x5632:gated 257-1024"
  double elapsed_s = 0;
};

Expected<TuneResult> run_tune(const TuneOptions& opts, const std::function<void(const TuneProgress&)>& progress);

}  // namespace ffnjit
