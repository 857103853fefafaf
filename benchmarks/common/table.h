// SPDX-License-Identifier: Apache-2.0
// Fixed-column result tables in the nccl-tests mould: '#' header lines naming the machine,
// build and commit, then one row per case printed as it finishes; the same rows can be written
// as JSON (--json) and CSV (--csv). Every row carries its parameters and a `#wrong` column.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/status.h"

namespace tidal::bench {

// One column. Text columns are left-aligned, numeric ones right-aligned with `precision`
// decimals (0 for counts). NaN prints as "-" (not applicable) and becomes null in JSON.
struct Column {
  std::string name;
  int width = 10;  // characters, not counting the separating space
  bool numeric = true;
  int precision = 1;
};

struct Cell {
  Cell(const char* s) : text(s), numeric(false) {}             // NOLINT: implicit on purpose
  Cell(std::string s) : text(std::move(s)), numeric(false) {}  // NOLINT
  Cell(double v) : number(v) {}                                // NOLINT
  Cell(int64_t v) : number(double(v)) {}                       // NOLINT
  Cell(int v) : number(double(v)) {}                           // NOLINT
  std::string text;
  double number = 0.0;
  bool numeric = true;
};

// What the header records. collect_bench_info() fills the machine and build fields.
struct BenchInfo {
  std::string bench;   // binary name, e.g. "kernel_bench"
  std::string device;  // CPU model (the CUDA issue adds the GPU name and driver)
  std::string compiler;
  std::string build_type;
  std::string commit;  // the tree the binary was built from (as `tidal --version`), or "unknown"
  std::vector<std::pair<std::string, std::string>> extra;  // backend, reps, notes, ...
};

BenchInfo collect_bench_info(const std::string& bench);

class Table {
 public:
  Table(BenchInfo info, std::vector<Column> columns);

  // Prints the '#' header lines, `notes` (one '#' line each) and the column names to stdout.
  void print_header(const std::vector<std::string>& notes = {}) const;
  // Prints the row at once (so a slow case shows progress) and keeps it for JSON/CSV.
  // Requires: one cell per column, numeric where the column is numeric.
  void add_row(std::vector<Cell> row);
  // Rows whose `#wrong` column is not zero.
  int64_t failed_rows() const;

  // An empty path writes nothing.
  Status write_json(const std::string& path) const;
  Status write_csv(const std::string& path) const;
  // Both, as the --json / --csv flags ask.
  Status write_files(const std::string& json_path, const std::string& csv_path) const;

 private:
  std::string format_cell(size_t col, const Cell& c) const;

  BenchInfo info_;
  std::vector<Column> columns_;
  std::vector<std::vector<Cell>> rows_;
};

}  // namespace tidal::bench
