// SPDX-License-Identifier: Apache-2.0
#include "benchmarks/common/table.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "runtime/check.h"
#include "tidal_version.h"  // launch/version.cmake, rewritten on every build

#ifndef TIDAL_BENCH_BUILD_TYPE
#define TIDAL_BENCH_BUILD_TYPE "unknown"
#endif

namespace tidal::bench {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    const size_t begin = line.find_first_not_of(" \t", colon + 1);
    return begin == std::string::npos ? "unknown" : line.substr(begin);
  }
  return "unknown";
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

// Header values may hold spaces ("Intel(R) Xeon(R) ..."); quote them so the line stays parseable.
std::string kv(const std::string& key, const std::string& value) {
  const bool quote = value.find(' ') != std::string::npos;
  return key + "=" + (quote ? "\"" + value + "\"" : value);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string plain_number(double v, int precision) {
  if (std::isnan(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", precision, v);
  return buf;
}

}  // namespace

BenchInfo collect_bench_info(const std::string& bench) {
  BenchInfo info;
  info.bench = bench;
  info.device = cpu_model() + ", " + std::to_string(std::thread::hardware_concurrency()) + " cpus";
  info.compiler = compiler();
  info.build_type = TIDAL_BENCH_BUILD_TYPE;
  info.commit = TIDAL_COMMIT;
  return info;
}

Table::Table(BenchInfo info, std::vector<Column> columns)
    : info_(std::move(info)), columns_(std::move(columns)) {}

void Table::print_header(const std::vector<std::string>& notes) const {
  std::string line = "# " + info_.bench + "  " + kv("device", info_.device) + "  " +
                     kv("compiler", info_.compiler) + "  " + kv("build", info_.build_type) + "  " +
                     kv("commit", info_.commit);
  std::printf("%s\n", line.c_str());
  if (!info_.extra.empty()) {
    line = "#";
    for (const auto& [key, value] : info_.extra)
      line += (line.size() > 1 ? "  " : " ") + kv(key, value);
    std::printf("%s\n", line.c_str());
  }
  for (const std::string& n : notes) std::printf("# %s\n", n.c_str());
  line.clear();
  for (size_t i = 0; i < columns_.size(); ++i) {
    const Column& c = columns_[i];
    char buf[128];
    std::snprintf(buf, sizeof(buf), c.numeric ? "%*s" : "%-*s", c.width, c.name.c_str());
    line += (i == 0 ? "# " : " ") + std::string(buf);
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

std::string Table::format_cell(size_t col, const Cell& c) const {
  const Column& column = columns_[col];
  char buf[256];
  if (!column.numeric) {
    std::snprintf(buf, sizeof(buf), "%-*s", column.width, c.text.c_str());
  } else if (std::isnan(c.number)) {
    std::snprintf(buf, sizeof(buf), "%*s", column.width, "-");
  } else {
    std::snprintf(buf, sizeof(buf), "%*.*f", column.width, column.precision, c.number);
  }
  return buf;
}

void Table::add_row(std::vector<Cell> row) {
  TIDAL_CHECK(row.size() == columns_.size(), "Table::add_row: one cell per column");
  std::string line = "  ";  // under the "# " that opens the column-name line
  for (size_t i = 0; i < row.size(); ++i) {
    TIDAL_CHECK(row[i].numeric == columns_[i].numeric,
                "Table::add_row: cell kind differs from column " + columns_[i].name);
    line += (i == 0 ? "" : " ") + format_cell(i, row[i]);
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  rows_.push_back(std::move(row));
}

int64_t Table::failed_rows() const {
  int64_t failed = 0;
  for (size_t i = 0; i < columns_.size(); ++i) {
    if (columns_[i].name != "#wrong") continue;
    for (const auto& row : rows_) failed += row[i].number != 0.0 ? 1 : 0;
  }
  return failed;
}

Status Table::write_json(const std::string& path) const {
  if (path.empty()) return ok_status();
  nlohmann::ordered_json header = {{"bench", info_.bench},
                                   {"device", info_.device},
                                   {"compiler", info_.compiler},
                                   {"build_type", info_.build_type},
                                   {"commit", info_.commit}};
  for (const auto& [key, value] : info_.extra) header[key] = value;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& row : rows_) {
    nlohmann::ordered_json r = nlohmann::ordered_json::object();
    for (size_t i = 0; i < columns_.size(); ++i) {
      const Cell& c = row[i];
      if (!c.numeric) {
        r[columns_[i].name] = c.text;
      } else if (std::isnan(c.number)) {
        r[columns_[i].name] = nullptr;
      } else if (columns_[i].precision == 0) {
        r[columns_[i].name] = int64_t(std::llround(c.number));  // counts stay integers
      } else {
        r[columns_[i].name] = c.number;
      }
    }
    rows.push_back(std::move(r));
  }
  std::ofstream out(path);
  if (!out) return not_found(path + ": cannot open for writing");
  out << nlohmann::ordered_json{{"header", header}, {"rows", rows}}.dump(2) << "\n";
  return out ? ok_status() : internal_error(path + ": write failed");
}

// Plain CSV (header row, then data) so any reader takes it; the machine and build live in JSON.
Status Table::write_csv(const std::string& path) const {
  if (path.empty()) return ok_status();
  std::ostringstream s;
  for (size_t i = 0; i < columns_.size(); ++i) s << (i ? "," : "") << csv_field(columns_[i].name);
  s << "\n";
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) {
      const Cell& c = row[i];
      s << (i ? "," : "")
        << (c.numeric
                ? plain_number(c.number,
                               columns_[i].precision == 0 ? 0 : std::max(columns_[i].precision, 3))
                : csv_field(c.text));
    }
    s << "\n";
  }
  std::ofstream out(path);
  if (!out) return not_found(path + ": cannot open for writing");
  out << s.str();
  return out ? ok_status() : internal_error(path + ": write failed");
}

Status Table::write_files(const std::string& json_path, const std::string& csv_path) const {
  TIDAL_RETURN_IF_ERROR(write_json(json_path));
  return write_csv(csv_path);
}

}  // namespace tidal::bench
