// thecal-replay FILE [--plot OUT.svg] [--quiet]: replays a flight recording (thecalctl
// recording FROM TO FILE) through the dosing core and says whether it matches.  Exit codes:
// replay/replay.hpp (ExitCode) and docs/recorder.md.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <iostream>
#include <sstream>
#include <string>

#include "replay/replay.hpp"

using namespace thecal;

namespace {

std::string iso(WallTime w) {
  const std::time_t s = static_cast<std::time_t>(to_usec(w) / 1'000'000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  (void)std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int usage() {
  std::cerr << "Usage: thecal-replay FILE|DIR [--plot OUT.svg] [--list] [--quiet]\n"
               "FILE: a recording (thecalctl recording); DIR: a recorder directory (<state>/recorder)\n"
               "Replays a flight recording through the dosing core and checks it.\n"
               "  --plot OUT.svg  a timeline: state, tip mass rate, rolling 24 h against the limit,\n"
               "                  reservoir, alarms\n"
               "  --list          every record, one a line, before the replay\n"
               "Exit: 0 match, 1 divergence, 2 safety rule broken, 3 usage or unreadable file,\n"
               "      4 not a valid recording, 5 matches but incomplete (cut, torn or with a gap)\n";
  return replay::kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::string file;
  std::string plot;
  bool quiet = false;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--plot" && i + 1 < argc) {
      plot = argv[++i];
    } else if (a == "--list") {
      list = true;
    } else if (a == "--quiet" || a == "-q") {
      quiet = true;
    } else if (a == "--help" || a == "-h") {
      (void)usage();
      return 0;
    } else if (!a.empty() && a[0] != '-' && file.empty()) {
      file = a;
    } else {
      return usage();
    }
  }
  if (file.empty()) return usage();
  auto read = [](const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::stringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return true;
  };
  const auto t0 = std::chrono::steady_clock::now();
  io::Scan scan;
  if (std::filesystem::is_directory(file)) {
    // A recorder directory (<state>/recorder): every segment, oldest first.  Segments have
    // no end record; the directory is whole when every segment reads to its end.
    io::RecordingStore store(file, days(36500));
    const auto segs = store.segments();
    for (std::size_t i = 0; i < segs.size(); ++i) {
      std::string bytes;
      if (!read(segs[i], bytes)) {
        std::cerr << "thecal-replay: cannot read " << segs[i] << "\n";
        return replay::kUsage;
      }
      io::Scan s = io::scan_recording(bytes);
      if (!s.problem.empty() && scan.problem.empty()) scan.problem = segs[i] + ": " + s.problem;
      scan.records.insert(scan.records.end(), std::make_move_iterator(s.records.begin()),
                          std::make_move_iterator(s.records.end()));
    }
    scan.has_end = scan.problem.empty() && !segs.empty();
  } else {
    std::string bytes;
    if (!read(file, bytes)) {
      std::cerr << "thecal-replay: cannot read " << file << ": " << strerrordesc_np(errno) << "\n";
      return replay::kUsage;
    }
    scan = io::scan_recording(bytes);
  }
  if (scan.records.empty() && !scan.problem.empty()) {
    std::cerr << "thecal-replay: " << file << ": " << scan.problem << "\n";
    return replay::kUnreadable;
  }
  if (list) std::cout << replay::list_records(scan);
  replay::Options opt;
  opt.timeline = !plot.empty();
  const replay::Result r = replay::replay(scan, opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (!quiet) {
    std::printf("%s: %zu run(s), %s to %s, %zu inputs, %llu cycles (%llu computed, the rest jumped), %llu steps, "
                "%zu events checked, %.3f s\n",
                file.c_str(), r.runs, iso(r.first).c_str(), iso(r.last).c_str(), r.inputs,
                static_cast<unsigned long long>(r.cycles), static_cast<unsigned long long>(r.computed_cycles),
                static_cast<unsigned long long>(r.steps), r.events_checked, secs);
  }
  if (!plot.empty()) {
    std::ofstream out(plot);
    out << replay::plot_svg(r);
    if (!out) {
      std::cerr << "thecal-replay: cannot write " << plot << "\n";
      return replay::kUsage;
    }
  }
  if (r.runs == 0) {
    std::printf("EMPTY: no run of the pump in this recording%s%s\n", scan.problem.empty() ? "" : ": ",
                scan.problem.c_str());
    return replay::kUnreadable;
  }
  if (r.divergence) {
    const auto& d = *r.divergence;
    std::printf("DIVERGED at %s (%s): %s\n  %s\n", d.input.c_str(), iso(d.wall).c_str(), d.what.c_str(),
                "everything before this input matched");
    return replay::kDiverged;
  }
  for (const auto& v : r.violations) std::printf("VIOLATION %s at %s: %s\n", v.rule.c_str(), iso(v.wall).c_str(), v.what.c_str());
  if (!r.violations.empty()) return replay::kViolation;
  if (!scan.problem.empty() || !r.problem.empty() || !r.complete) {
    std::printf("INCOMPLETE: %s\n",
                !scan.problem.empty() ? scan.problem.c_str()
                : !r.problem.empty() ? r.problem.c_str()
                                     : "no end record (not a whole GetRecording: a store segment or a cut copy)");
    return r.runs == 0 ? replay::kUnreadable : replay::kIncomplete;
  }
  std::printf("MATCH: identical outputs; S1 to S6 and S8 hold (as checked: docs/recorder.md)\n");
  return replay::kMatch;
}
