#include "io/recording.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "io/journal.hpp"

namespace thecal::io {

namespace {

constexpr std::string_view kMagic = "THECALRC";

class Out {
 public:
  std::string s;
  void u8(std::uint8_t v) { s.push_back(static_cast<char>(v)); }
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void b(bool v) { u8(v ? 1 : 0); }
  void bytes(const std::vector<std::uint8_t>& v) {
    u32(static_cast<std::uint32_t>(v.size()));
    s.append(reinterpret_cast<const char*>(v.data()), v.size());
  }
};

class In {
 public:
  explicit In(std::string_view d) : d_(d) {}
  bool ok = true;
  std::string why;
  bool need(std::size_t n) {
    if (ok && d_.size() - pos_ < n) {
      ok = false;
      why = "record shorter than its fields";
    }
    return ok;
  }
  std::uint8_t u8() { return need(1) ? static_cast<std::uint8_t>(d_[pos_++]) : 0; }
  std::uint32_t u32() {
    if (!need(4)) return 0;
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(d_[pos_++])) << (8 * i);
    return v;
  }
  std::uint64_t u64() {
    if (!need(8)) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(d_[pos_++])) << (8 * i);
    return v;
  }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  double f64() { return std::bit_cast<double>(u64()); }
  bool b() { return u8() != 0; }
  std::string_view bytes() {
    const std::uint32_t n = u32();
    if (!need(n)) return {};
    const auto v = d_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  [[nodiscard]] bool at_end() const { return pos_ == d_.size(); }

 private:
  std::string_view d_;
  std::size_t pos_ = 0;
};

std::string frame(const Out& o) {
  Out f;
  f.u32(static_cast<std::uint32_t>(o.s.size()));
  f.u32(crc32c(o.s));
  return f.s + o.s;
}

struct Fnv {
  std::uint64_t h = 1469598103934665603ULL;
  void add(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xFF;
      h *= 1099511628211ULL;
    }
  }
  void f(double v) { add(std::bit_cast<std::uint64_t>(v)); }
};

void put_now(Out& o, Now n) {
  o.i64(to_usec(n.mono));
  o.i64(to_usec(n.wall));
}
Now get_now(In& r) {
  const std::int64_t m = r.i64();
  return {mono_us(m), wall_us(r.i64())};
}

void put_board(Out& o, const BoardParams& board) {
  o.f64((board.volume_per_step).canonical_value());
  o.u32(board.max_steps_per_second);
  o.u32(board.steps_per_encoder_pulse);
  o.u32(board.stall_pulses);
  o.f64(board.prime_rate.canonical_value());
  o.i64(board.loop_period.count());
  o.f64(board.battery.capacity_mAs);
  o.f64(board.battery.use_per_step_mAs);
  o.f64(board.battery.use_per_hour_mAs);
  o.f64(board.battery.eri_percent);
  o.f64(board.battery.eos_percent);
}
BoardParams get_board(In& r) {
  BoardParams b;
  b.volume_per_step = Volume::canonical(r.f64());
  b.max_steps_per_second = r.u32();
  b.steps_per_encoder_pulse = r.u32();
  b.stall_pulses = r.u32();
  b.prime_rate = VolumeRate::canonical(r.f64());
  b.loop_period = Duration{r.i64()};
  b.battery.capacity_mAs = r.f64();
  b.battery.use_per_step_mAs = r.f64();
  b.battery.use_per_hour_mAs = r.f64();
  b.battery.eri_percent = r.f64();
  b.battery.eos_percent = r.f64();
  return b;
}
std::uint8_t sensor_bits(const SensorInputs& s) {
  return static_cast<std::uint8_t>((s.occlusion ? 1 : 0) | (s.disconnect ? 2 : 0) | (s.driver_fault ? 4 : 0) |
                                   (s.low_battery ? 8 : 0) | (s.bolus_button ? 16 : 0) | (s.hardware_ok ? 32 : 0));
}
void set_sensor_bits(SensorInputs& in, std::uint8_t bits) {
  in.occlusion = (bits & 1) != 0;
  in.disconnect = (bits & 2) != 0;
  in.driver_fault = (bits & 4) != 0;
  in.low_battery = (bits & 8) != 0;
  in.bolus_button = (bits & 16) != 0;
  in.hardware_ok = (bits & 32) != 0;
}

}  // namespace

std::uint64_t status_digest(const Status& s) {
  Fnv f;
  f.add(static_cast<std::uint64_t>(s.state));
  f.add(s.steps_issued);
  f.add(s.steps_dropped);
  f.f(to_uL(s.total_pumped_volume));
  f.f(to_mcg(s.total_delivered_mass));
  f.f(to_uL(s.reservoir));
  f.f(to_uL(s.programmed_volume));
  f.f(to_uL(s.dropped_volume));
  f.add(s.has_prescription ? 1 : 0);
  f.add(s.daily_limit_hold ? 1 : 0);
  for (const auto& a : s.alarms) f.add((a.active ? 1U : 0U) | (a.acknowledged ? 2U : 0U));
  for (const auto& b : s.boluses) {
    f.add(b.active ? 1 : 0);
    f.f(to_mcg(b.dose));
  }
  return f.h;
}

std::uint64_t event_digest(const Event& e) {
  Fnv f;
  f.add(static_cast<std::uint64_t>(to_usec(e.when)));
  f.add(static_cast<std::uint64_t>(to_usec(e.mono)));
  f.add(static_cast<std::uint64_t>(e.type));
  f.add(e.uid);
  f.add(static_cast<std::uint64_t>(e.old_state));
  f.add(static_cast<std::uint64_t>(e.new_state));
  f.add(static_cast<std::uint64_t>(e.alarm));
  f.add(static_cast<std::uint64_t>(e.source));
  f.f(to_mcg(e.mass));
  f.f(to_uL(e.volume));
  f.f(to_uL(e.volume2));
  f.add(static_cast<std::uint64_t>(e.duration.count()));
  f.add(static_cast<std::uint64_t>(e.command));
  f.add(static_cast<std::uint64_t>(e.refusal));
  f.add(e.index);
  f.f(e.percent);
  f.f(to_uL(e.estimate));
  f.f(to_uL(e.pumped));
  f.f(to_uL(e.tolerance));
  f.add(e.flagged ? 1 : 0);
  return f.h;
}

std::string recording_header() {
  Out o;
  o.s.append(kMagic);
  o.u32(kRecordingFormat);
  o.u32(crc32c(o.s));
  return o.s;
}

std::string encode_input(const LoopInput& in) {
  Out o;
  o.u8(static_cast<std::uint8_t>(in.kind));
  o.u64(in.cycle);
  o.u64(in.digest);
  switch (in.kind) {
    case RecKind::clock:
      put_now(o, in.now);
      o.i64(in.period.count());
      break;
    case RecKind::command: {
      const Command& c = in.cmd;
      o.u8(static_cast<std::uint8_t>(c.kind));
      o.u64(c.id);
      o.u32(c.caller.uid);
      o.b(c.caller.clinician);
      o.f64((c.volume).canonical_value());
      o.f64((c.withdrawn).canonical_value());
      o.f64((c.dose).canonical_value());
      o.i64(c.duration.count());
      o.u8(static_cast<std::uint8_t>(c.alarm));
      o.i64(c.steps.count);
      o.b(c.plan != nullptr);
      if (c.plan != nullptr) o.bytes(encode_therapy_plan(*c.plan));
      o.b(c.state_in != nullptr);
      if (c.state_in != nullptr) o.bytes(encode_core_state(*c.state_in));
      o.b(c.state_out != nullptr);
      o.u8(static_cast<std::uint8_t>(in.reply.refusal));
      o.f64((in.reply.dose).canonical_value());
      o.i64(to_usec(in.reply.ends));
      break;
    }
    case RecKind::sensors: {
      const SensorInputs& s = in.in;
      o.u8(sensor_bits(s));
      o.u64(s.encoder_pulses);
      break;
    }
    default: break;
  }
  return frame(o);
}

std::string encode_start(const BoardParams& board, Now now, std::int64_t budget, const CoreState& state,
                         std::uint64_t events_before) {
  Out o;
  o.u8(static_cast<std::uint8_t>(RecKind::start));
  o.u64(0);
  o.u64(0);
  put_now(o, now);
  put_board(o, board);
  o.i64(budget);
  o.u64(events_before);
  o.bytes(encode_core_state(state));
  return frame(o);
}

std::string encode_event(const Event& e) {
  Out o;
  o.u8(static_cast<std::uint8_t>(RecKind::event));
  o.u64(0);
  o.u64(event_digest(e));
  put_now(o, Now{e.mono, e.when});
  o.u8(static_cast<std::uint8_t>(e.type));
  return frame(o);
}

std::string encode_snapshot(const BoardParams& board, const LoopInput& in) {
  Out o;
  o.u8(static_cast<std::uint8_t>(RecKind::snapshot));
  o.u64(in.cycle);
  o.u64(in.digest);
  put_now(o, in.now);
  o.i64(in.period.count());
  put_board(o, board);
  o.u8(sensor_bits(in.in));
  o.u64(in.in.encoder_pulses);
  o.u64(in.plant_steps);
  o.bytes(in.image != nullptr ? encode_core_image(*in.image) : std::vector<std::uint8_t>{});
  return frame(o);
}

std::string encode_gap(std::uint64_t cycle) {
  Out o;
  o.u8(static_cast<std::uint8_t>(RecKind::gap));
  o.u64(cycle);
  o.u64(0);
  return frame(o);
}

std::string encode_end(std::uint64_t count) {
  Out o;
  o.u8(static_cast<std::uint8_t>(RecKind::end));
  o.u64(0);
  o.u64(0);
  o.u64(count);
  return frame(o);
}

namespace {

bool decode_payload(std::string_view p, Recorded& rec, std::string& why) {
  In r(p);
  const std::uint8_t kind = r.u8();
  if (kind < 1 || kind > 8) {
    why = "unknown record kind " + std::to_string(kind);
    return false;
  }
  rec.kind = static_cast<RecKind>(kind);
  rec.cycle = r.u64();
  rec.digest = r.u64();
  switch (rec.kind) {
    case RecKind::clock:
      rec.now = get_now(r);
      rec.period = Duration{r.i64()};
      break;
    case RecKind::start: {
      rec.now = get_now(r);
      rec.board = get_board(r);
      rec.budget = r.i64();
      rec.events_before = r.u64();
      const auto bytes = r.bytes();
      if (!r.ok) break;
      std::string err;
      auto st = decode_core_state(bytes, &err);
      if (!st) {
        why = "start record: " + err;
        return false;
      }
      rec.state = std::make_shared<const CoreState>(std::move(*st));
      break;
    }
    case RecKind::command: {
      Command& c = rec.cmd;
      const std::uint8_t k = r.u8();
      if (k > static_cast<std::uint8_t>(CommandKind::test_alarm)) {
        why = "unknown command kind";
        return false;
      }
      c.kind = static_cast<CommandKind>(k);
      c.id = r.u64();
      c.caller.uid = r.u32();
      c.caller.clinician = r.b();
      c.volume = Volume::canonical(r.f64());
      c.withdrawn = Volume::canonical(r.f64());
      c.dose = Mass::canonical(r.f64());
      c.duration = Duration{r.i64()};
      const std::uint8_t a = r.u8();
      if (a >= kAlarmCount) {
        why = "unknown alarm code";
        return false;
      }
      c.alarm = static_cast<AlarmCode>(a);
      c.steps = Steps{r.i64()};
      std::string err;
      if (r.b()) {
        const auto bytes = r.bytes();
        if (!r.ok) break;
        auto plan = decode_therapy_plan(bytes, &err);
        if (!plan) {
          why = "command plan: " + err;
          return false;
        }
        rec.plan = std::make_shared<const TherapyPlan>(std::move(*plan));
      }
      if (r.b()) {
        const auto bytes = r.bytes();
        if (!r.ok) break;
        auto st = decode_core_state(bytes, &err);
        if (!st) {
          why = "command state: " + err;
          return false;
        }
        rec.state = std::make_shared<const CoreState>(std::move(*st));
      }
      rec.state_out = r.b();
      const std::uint8_t ref = r.u8();
      if (ref > static_cast<std::uint8_t>(Refusal::access_denied)) {
        why = "unknown refusal";
        return false;
      }
      rec.reply.refusal = static_cast<Refusal>(ref);
      rec.reply.dose = Mass::canonical(r.f64());
      rec.reply.ends = wall_us(r.i64());
      break;
    }
    case RecKind::sensors: {
      set_sensor_bits(rec.in, r.u8());
      rec.in.encoder_pulses = r.u64();
      break;
    }
    case RecKind::snapshot: {
      rec.now = get_now(r);
      rec.period = Duration{r.i64()};
      rec.board = get_board(r);
      set_sensor_bits(rec.in, r.u8());
      rec.in.encoder_pulses = r.u64();
      rec.plant_steps = r.u64();
      const auto bytes = r.bytes();
      if (!r.ok) break;
      std::string err;
      auto im = decode_core_image(bytes, &err);
      if (!im) {
        why = "snapshot record: " + err;
        return false;
      }
      rec.image = std::make_shared<const CoreImage>(std::move(*im));
      break;
    }
    case RecKind::event: {
      rec.now = get_now(r);
      const std::uint8_t t = r.u8();
      if (t > static_cast<std::uint8_t>(kLastEventType)) {
        why = "unknown event type";
        return false;
      }
      rec.event_type = static_cast<EventType>(t);
      break;
    }
    case RecKind::end: rec.count = r.u64(); break;
    case RecKind::gap: break;
  }
  if (!r.ok) {
    why = r.why;
    return false;
  }
  if (!r.at_end()) {
    why = "trailing bytes in a record";
    return false;
  }
  return true;
}

}  // namespace

Scan scan_recording(std::string_view bytes) {
  Scan s;
  const std::string header = recording_header();
  if (bytes.size() < header.size() || bytes.substr(0, 8) != kMagic) {
    s.problem = "not a thecal recording (no THECALRC header)";
    return s;
  }
  In h(bytes.substr(8, 8));
  const std::uint32_t version = h.u32();
  const std::uint32_t crc = h.u32();
  if (crc != crc32c(bytes.substr(0, 12))) {
    s.problem = "the header's checksum does not match";
    return s;
  }
  if (version != kRecordingFormat && version != 1) {
    s.problem = "recording format " + std::to_string(version) + " is not " + std::to_string(kRecordingFormat) +
                (version > kRecordingFormat ? " (written by a newer thecald)" : "");
    return s;
  }
  std::size_t pos = header.size();
  s.valid_bytes = pos;
  while (pos < bytes.size()) {
    if (bytes.size() - pos < 8) {
      s.problem = "torn record at byte " + std::to_string(pos) + " (incomplete frame header)";
      return s;
    }
    In f(bytes.substr(pos, 8));
    const std::uint32_t n = f.u32();
    const std::uint32_t c = f.u32();
    if (n == 0 || n > kMaxRecordPayload) {
      s.problem = "bad record length " + std::to_string(n) + " at byte " + std::to_string(pos);
      return s;
    }
    if (bytes.size() - pos - 8 < n) {
      s.problem = "torn record at byte " + std::to_string(pos) + " (" + std::to_string(n) + " bytes announced, " +
                  std::to_string(bytes.size() - pos - 8) + " present)";
      return s;
    }
    const auto payload = bytes.substr(pos + 8, n);
    if (crc32c(payload) != c) {
      s.problem = "bad checksum in record " + std::to_string(s.records.size()) + " at byte " + std::to_string(pos);
      return s;
    }
    Recorded rec;
    std::string why;
    if (!decode_payload(payload, rec, why)) {
      s.problem = "record " + std::to_string(s.records.size()) + " at byte " + std::to_string(pos) + ": " + why;
      return s;
    }
    if (rec.kind == RecKind::end) {
      s.has_end = rec.count == s.records.size();
      if (!s.has_end) s.problem = "the end record counts " + std::to_string(rec.count) + " records, not " +
                                  std::to_string(s.records.size());
      pos += 8 + n;
      s.valid_bytes = pos;
      if (pos != bytes.size() && s.problem.empty()) s.problem = "bytes after the end record";
      return s;
    }
    s.offsets.push_back(pos);
    s.records.push_back(std::move(rec));
    pos += 8 + n;
    s.valid_bytes = pos;
  }
  return s;
}

std::vector<WallTime> record_walls(const std::vector<Recorded>& records) {
  std::vector<WallTime> out;
  out.reserve(records.size());
  WallTime base{};
  std::uint64_t base_cycle = 0;
  Duration period{0};
  WallTime last{};
  for (const auto& r : records) {
    WallTime w = last;
    switch (r.kind) {
      case RecKind::start:
        base = r.now.wall;
        base_cycle = 0;
        period = Duration{0};
        w = r.now.wall;
        break;
      case RecKind::clock:
      case RecKind::snapshot:
        base = r.now.wall;
        base_cycle = r.cycle;
        period = r.period;
        w = base;
        break;
      case RecKind::command:
      case RecKind::sensors:
      case RecKind::gap:
        w = base + period * static_cast<std::int64_t>(r.cycle - base_cycle);
        break;
      case RecKind::event: w = std::max(last, r.now.wall); break;
      case RecKind::end: break;
    }
    last = w;
    out.push_back(w);
  }
  return out;
}

// ---- the store ----

RecordingStore::~RecordingStore() {
  (void)flush();
  if (fd_ >= 0) ::close(fd_);
  if (prev_fd_ >= 0) ::close(prev_fd_);
}

std::vector<std::string> RecordingStore::segments() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 8 && name.rfind("seg-", 0) == 0 && name.ends_with(".rec")) out.push_back(dir_ + "/" + name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

std::optional<std::string> slurp(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string data;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return data;
}

}  // namespace

std::optional<std::string> RecordingStore::begin(WallTime now, const std::string& start_record) {
  if (::mkdir(dir_.c_str(), 0750) != 0 && errno != EEXIST) {
    return "cannot create " + dir_ + ": " + strerrordesc_np(errno);
  }
  const auto segs = segments();
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const auto data = slurp(segs[i]);
    if (!data) continue;
    const Scan s = scan_recording(*data);
    if (s.valid_bytes < data->size() && s.valid_bytes >= recording_header().size()) {
      // A torn or corrupt tail (crash, power loss): cut it off, never trust it.
      (void)::truncate(segs[i].c_str(), static_cast<off_t>(s.valid_bytes));
    }
    const auto walls = record_walls(s.records);
    const WallTime last = walls.empty() ? WallTime{} : walls.back();
    if (last + keep_ < now) (void)::unlink(segs[i].c_str());
  }
  return open_segment(now, start_record);
}

std::optional<std::string> RecordingStore::open_segment(WallTime now, const std::string& first_record) {
  // A new file, never appended to an old one (a name taken already: the next µs).
  for (std::int64_t us = to_usec(now);; ++us) {
    char name[64];
    (void)std::snprintf(name, sizeof name, "/seg-%020lld.rec", static_cast<long long>(us));
    const std::string path = dir_ + name;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0) return "cannot create " + path + ": " + strerrordesc_np(errno);
    fd_ = fd;
    path_ = path;
    break;
  }
  buffer_ = recording_header() + first_record;
  return flush();
}

std::optional<std::string> RecordingStore::rotate(WallTime now, const std::string& snapshot_record) {
  if (fd_ < 0) return std::string("no open segment");
  if (auto e = flush()) return e;
  if (prev_fd_ >= 0) ::close(prev_fd_);  // synced with the journal already, or a rotation too soon
  prev_fd_ = fd_;
  fd_ = -1;
  if (auto e = open_segment(now, snapshot_record)) {
    fd_ = prev_fd_;  // go on in the old segment
    prev_fd_ = -1;
    return e;
  }
  (void)prune(now);
  return std::nullopt;
}

std::size_t RecordingStore::prune(WallTime now) {
  const auto segs = segments();
  auto start_of = [](const std::string& path) {
    const auto slash = path.rfind('/');
    return wall_us(std::strtoll(path.c_str() + slash + 5, nullptr, 10));  // after "/seg-"
  };
  std::size_t removed = 0;
  for (std::size_t i = 0; i + 1 < segs.size(); ++i) {
    if (segs[i] == path_) continue;
    if (start_of(segs[i + 1]) + keep_ < now && ::unlink(segs[i].c_str()) == 0) ++removed;
  }
  return removed;
}

void RecordingStore::append(const std::string& framed) {
  if (fd_ >= 0) buffer_ += framed;
}

std::optional<std::string> RecordingStore::flush() {
  if (fd_ < 0 || buffer_.empty()) return std::nullopt;
  std::size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      buffer_.erase(0, done);
      return std::string("cannot append to the recording: ") + strerrordesc_np(errno);
    }
    done += static_cast<std::size_t>(n);
  }
  bytes_ += done;
  buffer_.clear();
  return std::nullopt;
}

std::optional<std::string> RecordingStore::sync() {
  if (auto e = flush()) return e;
  if (prev_fd_ >= 0) {
    // The segment before a rotation, synced now with the journal (no sync of its own).
    ++syncs_;
    const int r = ::fdatasync(prev_fd_);
    ::close(prev_fd_);
    prev_fd_ = -1;
    if (r != 0) return std::string("cannot sync the recording: ") + strerrordesc_np(errno);
  }
  if (fd_ < 0) return std::nullopt;
  ++syncs_;
  if (::fdatasync(fd_) != 0) return std::string("cannot sync the recording: ") + strerrordesc_np(errno);
  return std::nullopt;
}

std::string RecordingStore::window(WallTime from, WallTime to) {
  (void)flush();
  std::string out = recording_header();
  std::uint64_t count = 0;
  for (const auto& path : segments()) {
    const auto data = slurp(path);
    if (!data) continue;
    const Scan s = scan_recording(*data);
    if (s.records.empty() || (s.records.front().kind != RecKind::start && s.records.front().kind != RecKind::snapshot)) {
      continue;
    }
    const auto walls = record_walls(s.records);
    if (walls.front() > to || walls.back() < from) continue;
    std::size_t n = 0;
    while (n < s.records.size() && walls[n] <= to) ++n;
    const std::size_t end = n < s.records.size() ? s.offsets[n] : s.valid_bytes;
    out.append(*data, s.offsets.front(), end - s.offsets.front());
    count += n;
  }
  return out + encode_end(count);
}

}  // namespace thecal::io
