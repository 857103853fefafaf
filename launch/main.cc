// SPDX-License-Identifier: Apache-2.0
// tidal: long-context Llama decoding with TidalDecode sparse attention.
//   tidal generate [--model DIR] --prompt TEXT ...   stream a continuation
//   tidal info (--model DIR | --preset NAME)         config, parameters, memory plan
//   tidal tokenize (--model DIR | --tokenizer FILE) (--text T | --file F) [--no-bos] [--decode]
//   tidal bench [--preset P,..] [--context 10K,..] [--policy ..] ...  latency vs the floor
#include <cstdio>
#include <cstdlib>

#include <string>

#include "launch/cli.h"
#include "runtime/device.h"

#ifndef TIDAL_DEFAULT_MODEL_DIR
#define TIDAL_DEFAULT_MODEL_DIR ""
#endif

int main(int argc, char** argv) {
  using namespace tidal::launch;
  CLI::App app{"tidal: long-context Llama decoding with TidalDecode sparse attention"};
  app.require_subcommand(1);
  GenerateOptions gen;
  InfoOptions info;
  TokenizeOptions tok;
  BenchOptions bench;
  add_generate_command(app, &gen);
  add_info_command(app, &info);
  add_tokenize_command(app, &tok);
  add_bench_command(app, &bench);
  CLI11_PARSE(app, argc, argv);

  // TIDAL_SYNC_AFTER_LAUNCH=1: synchronize after every kernel launch, so a GPU fault names its
  // kernel (STYLE.md rule 19). Read once, here.
  const char* sync = std::getenv("TIDAL_SYNC_AFTER_LAUNCH");
  tidal::set_sync_after_launch(sync != nullptr && std::string(sync) == "1");

  // TIDAL_DEFAULT_MODEL overrides the build's embedded model directory.
  DefaultModel defaults;
  const char* env = std::getenv("TIDAL_DEFAULT_MODEL");
  defaults.dir = env != nullptr ? env : TIDAL_DEFAULT_MODEL_DIR;

  tidal::Status st;
  if (app.got_subcommand("generate")) {
    st = run_generate(gen, defaults);
  } else if (app.got_subcommand("info")) {
    st = run_info(info);
  } else if (app.got_subcommand("tokenize")) {
    st = run_tokenize(tok);
  } else if (app.got_subcommand("bench")) {
    st = bench.parallel.requested() ? run_bench_parallel(bench) : run_bench(bench);
  }
  if (!st.ok()) {
    // An empty message: another rank of an mpirun job (rank 0) reports the failure.
    if (!st.message().empty()) std::fprintf(stderr, "tidal: error: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
