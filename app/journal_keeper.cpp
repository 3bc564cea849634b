#include "app/journal_keeper.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "io/clock.hpp"
#include "io/atomic_file.hpp"

namespace thecal::app {

namespace {

void put_u32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void put_u64(std::string& s, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void put_str(std::string& s, std::string_view v) {
  put_u32(s, static_cast<std::uint32_t>(v.size()));
  s.append(v);
}

class In {
 public:
  explicit In(std::string_view s) : s_(s) {}
  bool ok = true;
  std::uint64_t u(int bytes) {
    if (!ok || s_.size() - pos_ < static_cast<std::size_t>(bytes)) {
      ok = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(s_[pos_++])) << (8 * i);
    return v;
  }
  std::string str(std::size_t max) {
    const auto n = static_cast<std::size_t>(u(4));
    if (!ok || n > max || s_.size() - pos_ < n) {
      ok = false;
      return {};
    }
    std::string v(s_.substr(pos_, n));
    pos_ += n;
    return v;
  }
  std::string_view rest() {
    auto r = s_.substr(pos_);
    pos_ = s_.size();
    return r;
  }
  [[nodiscard]] bool at_end() const { return pos_ == s_.size(); }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

}  // namespace

std::string read_boot_id(const std::string& path) {
  std::ifstream f(path);
  std::string id;
  std::getline(f, id);
  return id;
}

Duration assumed_elapsed(const ClockRef& then, const ClockRef& now) {
  if (then.boot_id.empty() || then.boot_id != now.boot_id) return Duration{0};
  return Duration{std::max<std::int64_t>(0, now.real_mono_us - then.real_mono_us)};
}

std::string encode_state_payload(const ClockRef& clock, const CoreState& s) {
  std::string p;
  put_str(p, clock.boot_id);
  put_u64(p, static_cast<std::uint64_t>(clock.real_mono_us));
  put_u64(p, static_cast<std::uint64_t>(clock.real_wall_us));
  const auto core = encode_core_state(s);
  p.append(reinterpret_cast<const char*>(core.data()), core.size());
  return p;
}

std::optional<std::pair<ClockRef, CoreState>> decode_state_payload(std::string_view p, std::string* err) {
  In in(p);
  ClockRef c;
  c.boot_id = in.str(64);
  c.real_mono_us = static_cast<std::int64_t>(in.u(8));
  c.real_wall_us = static_cast<std::int64_t>(in.u(8));
  if (!in.ok) {
    if (err != nullptr) *err = "state record: clock reference cut short";
    return std::nullopt;
  }
  auto s = decode_core_state(in.rest(), err);
  if (!s) return std::nullopt;
  return std::pair<ClockRef, CoreState>{std::move(c), std::move(*s)};
}

std::string encode_reserve_payload(const ReserveRecord& r) {
  std::string p;
  put_u64(p, r.reserved);
  put_u64(p, r.size);
  put_u64(p, r.issued_at_capture);
  return p;
}

std::optional<ReserveRecord> decode_reserve_payload(std::string_view p) {
  In in(p);
  ReserveRecord r;
  r.reserved = in.u(8);
  r.size = in.u(8);
  r.issued_at_capture = in.u(8);
  if (!in.ok || !in.at_end() || r.issued_at_capture > r.reserved) return std::nullopt;
  return r;
}

std::string encode_event_payload(const LoggedEvent& e) {
  std::string p;
  put_u64(p, static_cast<std::uint64_t>(e.wall_us));
  put_str(p, e.type);
  put_str(p, e.who);
  put_str(p, e.detail);
  return p;
}

std::optional<LoggedEvent> decode_event_payload(std::string_view p) {
  In in(p);
  LoggedEvent e;
  e.wall_us = static_cast<std::int64_t>(in.u(8));
  e.type = in.str(256);
  e.who = in.str(256);
  e.detail = in.str(64 * 1024);
  if (!in.ok || !in.at_end()) return std::nullopt;
  return e;
}

Recovery interpret(const std::optional<io::JournalScan>& scan, bool marker) {
  Recovery rec;
  if (!scan) {
    if (!marker) return rec;  // a new unit
    rec.kind = Recovery::Kind::lost;
    rec.problem = io::JournalProblem::missing;
    rec.explanation =
        "the journal is missing although this unit has run before (unit marker present): "
        "the delivery history, lockout and reservoir are unknown";
    return rec;
  }
  const io::JournalScan& sc = *scan;
  rec.problem = sc.problem;
  std::string bad;
  std::size_t used = 0;
  for (const auto& r : sc.records) {
    if (r.type == io::RecordType::state) {
      std::string err;
      auto st = decode_state_payload(r.payload, &err);
      if (!st) {
        bad = "state record " + std::to_string(r.seq) + " does not decode: " + err;
        break;
      }
      rec.clock = std::move(st->first);
      rec.state = std::move(st->second);
    } else if (r.type == io::RecordType::reserve) {
      const auto rr = decode_reserve_payload(r.payload);
      if (!rr) {
        bad = "reserve record " + std::to_string(r.seq) + " does not decode";
        break;
      }
      rec.reserved = std::max(rec.reserved, rr->reserved);
    } else {
      auto e = decode_event_payload(r.payload);
      if (!e) {
        bad = "event record " + std::to_string(r.seq) + " does not decode";
        break;
      }
      rec.events.push_back(std::move(*e));
    }
    ++used;
  }
  rec.records = used;
  if (!bad.empty() && rec.problem == io::JournalProblem::none) rec.problem = io::JournalProblem::bad_record;
  // S7 past damage in the middle of the file: intact records after it are not trusted as
  // state, but the pump may have stepped up to the highest reservation (or state) among
  // them, so that much counts as delivered.
  std::uint64_t beyond = 0;
  for (const auto& r : sc.salvaged) {
    if (r.type == io::RecordType::reserve) {
      if (const auto rr = decode_reserve_payload(r.payload)) beyond = std::max(beyond, rr->reserved);
    } else if (r.type == io::RecordType::state) {
      if (const auto st = decode_state_payload(r.payload, nullptr)) beyond = std::max(beyond, st->second.steps_issued);
    }
  }
  const bool salvaged_more = beyond > rec.reserved;
  rec.reserved = std::max(rec.reserved, beyond);
  if (rec.state) {
    const auto issued = rec.state->steps_issued;
    rec.unconfirmed = rec.reserved > issued ? static_cast<std::int64_t>(rec.reserved - issued) : 0;
    rec.reserved = std::max(rec.reserved, issued);
  }
  if (rec.problem == io::JournalProblem::none && rec.state) {
    rec.kind = Recovery::Kind::restored;
    return rec;
  }
  rec.kind = Recovery::Kind::lost;
  if (rec.problem == io::JournalProblem::none) rec.problem = io::JournalProblem::bad_record;
  rec.explanation = "journal " + std::string(io::to_string(rec.problem)) + ": " + (bad.empty() ? sc.message : bad);
  if (rec.state) {
    rec.explanation += "; restored the last intact state (" + std::to_string(used) +
                       " records), its whole reservation counted as delivered; later records discarded";
    if (salvaged_more) {
      rec.explanation += " (their highest reservation, " + std::to_string(rec.reserved) +
                         " steps, found intact past the damage, counted as delivered too)";
    }
  } else {
    rec.explanation += "; no intact state record: the delivery history, lockout and reservoir are unknown";
  }
  return rec;
}

JournalKeeper::JournalKeeper(io::FileOps& ops, std::string state_dir, const BoardParams& board, std::string boot_id_path)
    : ops_(ops),
      dir_(std::move(state_dir)),
      journal_path_(dir_ + "/journal"),
      marker_path_(dir_ + "/unit"),
      board_(board),
      boot_id_(read_boot_id(boot_id_path)),
      writer_(ops, journal_path_) {}

ClockRef JournalKeeper::clock_now() const { return {boot_id_, io::real_monotonic_us(), io::real_wall_us()}; }

Recovery JournalKeeper::recover() {
  (void)::unlink((journal_path_ + ".tmp").c_str());  // an unfinished rewrite: never renamed
  const bool marker = exists(marker_path_);
  std::optional<io::JournalScan> scan;
  if (exists(journal_path_)) {
    std::string err;
    const auto bytes = io::read_file(journal_path_, &err);
    if (!bytes) {
      scan = io::JournalScan{};
      scan->problem = io::JournalProblem::bad_header;
      scan->message = "cannot read the journal: " + err;
    } else {
      scan = io::scan_journal(*bytes);
    }
  }
  Recovery rec = interpret(scan, marker);
  if (scan && rec.kind == Recovery::Kind::lost) {
    // Keep the evidence: the next rewrite must not destroy it.
    for (int n = 1; n < 1000; ++n) {
      const std::string aside = journal_path_ + ".damaged-" + std::to_string(n);
      if (exists(aside)) continue;
      if (ops_.rename(journal_path_, aside) == 0) {
        rec.explanation += " (kept as " + aside + ")";
        (void)ops_.fsync_dir(dir_);
      }
      break;
    }
  }
  if (rec.kind != Recovery::Kind::fresh) reserved_ = rec.reserved;
  return rec;
}

std::optional<std::string> JournalKeeper::rewrite(const CoreState& s, std::uint64_t reserve_to,
                                                  const std::vector<LoggedEvent>& events) {
  std::vector<io::JournalWriter::Item> items;
  const std::size_t first = events.size() > kSnapshotEvents ? events.size() - kSnapshotEvents : 0;
  items.reserve(events.size() - first + 2);
  for (std::size_t i = first; i < events.size(); ++i) items.push_back({io::RecordType::event, encode_event_payload(events[i])});
  reserve_to = std::max({reserve_to, s.steps_issued, reserved_});
  const ReserveRecord rr{reserve_to, reserve_to - s.steps_issued, s.steps_issued};
  items.push_back({io::RecordType::state, encode_state_payload(clock_now(), s)});
  items.push_back({io::RecordType::reserve, encode_reserve_payload(rr)});
  if (auto e = writer_.rewrite(items)) return e;
  reserved_ = reserve_to;
  last_size_ = rr.size;
  pending_events_.clear();
  if (!exists(marker_path_)) {
    if (auto e = io::write_atomic(marker_path_, "thecal unit: a journal exists for this pump (docs/journal.md)\n")) return e;
  }
  return std::nullopt;
}

std::optional<std::string> JournalKeeper::close_clean(const CoreState& s, const std::vector<LoggedEvent>& events) {
  reserved_ = s.steps_issued;
  return rewrite(s, s.steps_issued, events);
}

std::optional<std::string> JournalKeeper::checkpoint(const CoreState& s, std::uint64_t reserve_to) {
  std::vector<io::JournalWriter::Item> items = pending_events_;
  items.push_back({io::RecordType::state, encode_state_payload(clock_now(), s)});
  const bool reserve = reserve_to > reserved_;
  ReserveRecord rr{reserve_to, reserve_to - std::min(reserve_to, s.steps_issued), s.steps_issued};
  if (reserve) items.push_back({io::RecordType::reserve, encode_reserve_payload(rr)});
  if (auto e = writer_.append(items, true)) return e;
  pending_events_.clear();
  if (reserve) {
    reserved_ = reserve_to;
    last_size_ = rr.size;
  }
  return std::nullopt;
}

void JournalKeeper::add_event(const LoggedEvent& e) {
  if (pending_events_.size() >= 10'000) pending_events_.erase(pending_events_.begin());  // bounded
  pending_events_.push_back({io::RecordType::event, encode_event_payload(e)});
}

std::optional<std::string> JournalKeeper::flush_events() {
  if (pending_events_.empty()) return std::nullopt;
  if (auto e = writer_.append(pending_events_, false)) return e;
  pending_events_.clear();
  return std::nullopt;
}

std::uint64_t JournalKeeper::reservation_steps(VolumeRate pump_rate) const {
  const double v = pump_rate.is_finite() && pump_rate > VolumeRate{} ? to_uL(pump_rate * kReservationHorizon) : 0.0;
  const double steps = std::ceil(v / to_uL(board_.volume_per_step));
  if (!(steps > static_cast<double>(kMinReservationSteps))) return kMinReservationSteps;
  if (steps > static_cast<double>(kMaxReservationSteps)) return kMaxReservationSteps;
  return static_cast<std::uint64_t>(steps);
}

std::uint64_t JournalKeeper::reservation_steps(VolumeRate pump_rate, Volume prime_left) const {
  const std::uint64_t size = reservation_steps(pump_rate);
  if (!(prime_left > Volume{})) return size;
  const double need = std::ceil(to_uL(prime_left) / to_uL(board_.volume_per_step));
  const auto steps = need > static_cast<double>(kMaxReservationSteps) ? kMaxReservationSteps : static_cast<std::uint64_t>(need);
  return std::max(kMinReservationSteps, std::min(size, steps));
}

}  // namespace thecal::app
