// SPDX-License-Identifier: Apache-2.0
// tidal: long-context Llama decoding with TidalDecode sparse attention.
//   tidal generate [--model DIR] --prompt TEXT ...   stream a continuation
//   tidal info (--model DIR | --preset NAME)         config, parameters, memory plan
//   tidal tokenize (--model DIR | --tokenizer FILE) (--text T | --file F) [--no-bos] [--decode]
//   tidal bench [--preset P,..] [--context 10K,..] [--policy ..] ...  latency vs the floor
//   tidal niah | ppl | calibrate [--model DIR] ...   accuracy of the attention policies
//   tidal serve [--model DIR] [--listen HOST:PORT] ...  the gRPC coordinator
//   tidal client [--server HOST:PORT] [--prompt ... | --chat] ...  stream from a server
// Every failure, a command-line parse error included, ends with one line `tidal: error: ...` on
// stderr and exit code 1 (under mpirun, from rank 0 only, and mpirun exits 1; a command line
// bad on a rank that may have been given its own, from that rank); --help and --version exit 0.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "launch/accuracy.h"
#include "launch/cli.h"
#include "runtime/device.h"
#include "tidal_version.h"

#ifndef TIDAL_DEFAULT_MODEL_DIR
#define TIDAL_DEFAULT_MODEL_DIR ""
#endif
#ifndef TIDAL_DEFAULT_TEXT_DIR
#define TIDAL_DEFAULT_TEXT_DIR ""
#endif

namespace {

// Prints nothing for an empty message: rank 0 of the mpirun job reports the failure (main).
int fail(const std::string& message) {
  if (!message.empty()) std::fprintf(stderr, "tidal: error: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tidal::launch;
  // A closed pipe on stdout must end in an error line and exit 1 (below), not a silent SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);

  // Under mpirun, a failure every rank meets alike is rank 0's to report: one line, and exit 1,
  // which mpirun returns. The other ranks (an empty message) exit 0: mpirun ends the job when a
  // rank exits non-zero, and would kill rank 0 before its line is out (rank 0 prints after MPI is
  // finalized, or may start last). A bad command line fails alike only where every rank was given
  // the same one; otherwise rank 0 may be waiting in MPI_Init for this rank, which must end the
  // job by exiting 1. Unless the launcher says it started one program (OpenMPI's does), this
  // rank's line may be the only bad one (`mpirun -np 1 A : -np 1 B`, under OpenMPI or Hydra), and
  // no rank can agree with it before MPI: it says why itself, naming itself ('tidal: error: rank
  // 1: ...'). Where the launcher does not say, every rank may have been given the same bad line,
  // and each then prints it (rank 0 plainly, the others naming themselves): lines to spare, where
  // staying quiet would leave a line bad on this rank alone unexplained.
  const LauncherRanks launcher = launcher_ranks();
  auto fail_on_rank0 = [&](const std::string& message, bool rank0_fails_too) {
    if (launcher.rank == 0 || !message.empty()) return fail(message);
    return rank0_fails_too ? 0 : 1;
  };
  auto command_line_error = [&](const std::string& message) {
    if (launcher.rank != 0 && !launcher.one_command) {
      return fail("rank " + std::to_string(launcher.rank) + ": " + message);
    }
    return fail_on_rank0(launcher.rank == 0 ? message : "", launcher.one_command);
  };
  CLI::App app{"tidal: long-context Llama decoding with TidalDecode sparse attention"};
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       std::string("tidal ") + TIDAL_VERSION + " (commit " + TIDAL_COMMIT + ")");
  GenerateOptions gen;
  InfoOptions info;
  TokenizeOptions tok;
  BenchOptions bench;
  NiahOptions niah;
  PplOptions ppl;
  CalibrateOptions calibrate;
  add_generate_command(app, &gen);
  add_info_command(app, &info);
  add_tokenize_command(app, &tok);
  add_bench_command(app, &bench);
  add_niah_command(app, &niah);
  add_ppl_command(app, &ppl);
  add_calibrate_command(app, &calibrate);
#if TIDAL_WITH_RPC
  ServeOptions serve;
  ClientOptions client;
  add_serve_command(app, &serve);
  add_client_command(app, &client);
  serve.version = std::string(TIDAL_VERSION) + " (commit " + TIDAL_COMMIT + ")";
#endif
  // CLI11 reports an unknown subcommand as a missing one; say what it was.
  if (argc > 1 && argv[1][0] != '-') {
    try {
      app.get_subcommand(argv[1]);
    } catch (const CLI::OptionNotFound&) {
      return command_line_error(
          std::string("unknown subcommand '") + argv[1] +
          "' (generate, info, tokenize, bench, niah, ppl, calibrate, serve or client; "
          "see tidal --help)");
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    for (char& c : what) c = c == '\n' ? ' ' : c;
    return command_line_error(what + " (see tidal --help)");
  }
  // Under mpirun with more than one rank, only a job (--tp/--pp) may run.
  const ParallelFlags* layout = app.got_subcommand("generate") ? &gen.parallel
                                : app.got_subcommand("bench")  ? &bench.parallel
                                                               : nullptr;
#if TIDAL_WITH_RPC
  if (app.got_subcommand("serve")) layout = &serve.parallel;
#endif
  const tidal::Status alone =
      check_launcher(launcher, app.get_subcommands().front()->get_name(), layout);
  if (!alone.ok()) return command_line_error(alone.message());

  // TIDAL_SYNC_AFTER_LAUNCH=1: synchronize after every kernel launch, so a GPU fault names its
  // kernel (STYLE.md rule 19). Read once, here.
  const char* sync = std::getenv("TIDAL_SYNC_AFTER_LAUNCH");
  tidal::set_sync_after_launch(sync != nullptr && std::string(sync) == "1");

  // TIDAL_DEFAULT_MODEL overrides the build's embedded model directory.
  DefaultModel defaults;
  const char* env = std::getenv("TIDAL_DEFAULT_MODEL");
  defaults.dir = env != nullptr ? env : TIDAL_DEFAULT_MODEL_DIR;
  // TIDAL_TEXT_DIR overrides where the accuracy commands find their texts (../shared/text).
  AccuracyDefaults texts;
  texts.model_dir = defaults.dir;
  const char* text_env = std::getenv("TIDAL_TEXT_DIR");
  texts.text_dir = text_env != nullptr ? text_env : TIDAL_DEFAULT_TEXT_DIR;

  tidal::Status st;
  if (app.got_subcommand("generate")) {
    st = run_generate(gen, defaults);
  } else if (app.got_subcommand("info")) {
    st = run_info(info);
  } else if (app.got_subcommand("tokenize")) {
    st = run_tokenize(tok);
  } else if (app.got_subcommand("bench")) {
    st = bench.parallel.requested() ? run_bench_parallel(bench) : run_bench(bench);
  } else if (app.got_subcommand("niah")) {
    st = run_niah(niah, texts);
  } else if (app.got_subcommand("ppl")) {
    st = run_ppl(ppl, texts);
  } else if (app.got_subcommand("calibrate")) {
    st = run_calibrate(calibrate, texts);
  }
#if TIDAL_WITH_RPC
  else if (app.got_subcommand("serve")) {
    st = run_serve(serve, defaults);
  } else if (app.got_subcommand("client")) {
    st = run_client(client);
  }
#endif
  // Output that never arrived is a failure too (a full disk, a closed pipe).
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    const std::string why = errno != 0 ? std::strerror(errno) : "write error";
    if (st.ok()) return fail("cannot write to stdout: " + why);
  }
  if (!st.ok()) return fail_on_rank0(st.message(), /*rank0_fails_too=*/true);
  return 0;
}
