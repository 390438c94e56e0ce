#ifndef HVSTACK_TESTS_BENCH_BENCH_STATS_H_
#define HVSTACK_TESTS_BENCH_BENCH_STATS_H_

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace hvbench {

// The p-th quantile (0..1) of `v` (nearest rank).
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size()));
  return v[std::min(v.size() - 1, i)];
}

// A "Key:   123 kB" field of a /proc file (status, smaps_rollup, meminfo),
// in KiB; -1 when absent.
inline int64_t ProcFileKib(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::vector<std::string> parts = absl::StrSplit(
        line.substr(key.size() + 1), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    int64_t value = 0;
    if (!parts.empty() && absl::SimpleAtoi(parts[0], &value)) return value;
  }
  return -1;
}

inline int64_t ProcKib(int pid, const std::string& file,
                       const std::string& key) {
  return ProcFileKib(absl::StrCat("/proc/", pid, "/", file), key);
}

// utime + stime of a process, in clock ticks (/proc/<pid>/stat fields 14, 15).
inline int64_t CpuTicks(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  std::getline(in, stat);
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
  // fields[0] is field 3 (state): utime is field 14 -> index 11.
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return -1;
  }
  return utime + stime;
}

}  // namespace hvbench

#endif  // HVSTACK_TESTS_BENCH_BENCH_STATS_H_
