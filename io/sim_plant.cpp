#include "io/sim_plant.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace thecal::io {

namespace {
constexpr std::array<std::string_view, static_cast<std::size_t>(SimFault::count_)> kNames{
    "occlusion", "disconnect", "motor_stall", "driver_fault", "encoder_failure", "low_battery", "bolus_button"};

constexpr std::uint32_t bit(SimFault f) { return 1u << static_cast<unsigned>(f); }
}  // namespace

std::optional<SimFault> sim_fault_from_string(std::string_view s) {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == s) return static_cast<SimFault>(i);
  }
  return std::nullopt;
}

void SimPlant::inject(SimFault f, bool active) noexcept {
  if (active) faults_.fetch_or(bit(f), std::memory_order_relaxed);
  else faults_.fetch_and(~bit(f), std::memory_order_relaxed);
}

bool SimPlant::fault(SimFault f) const noexcept { return (faults_.load(std::memory_order_relaxed) & bit(f)) != 0; }

SensorInputs SimPlant::read(MonoTime /*now*/) noexcept {
  SensorInputs in;
  in.occlusion = fault(SimFault::occlusion);
  in.disconnect = fault(SimFault::disconnect);
  in.driver_fault = fault(SimFault::driver_fault);
  in.low_battery = fault(SimFault::low_battery);
  in.bolus_button = fault(SimFault::bolus_button);
  in.encoder_pulses = encoder_steps_ / (board_.steps_per_encoder_pulse == 0 ? 1 : board_.steps_per_encoder_pulse);
  return in;
}

void SimPlant::write(const Actuation& out, MonoTime /*now*/) noexcept {
  enabled_.store(out.motor_enable, std::memory_order_relaxed);
  if (!out.motor_enable || out.steps == 0) return;
  // A driver in fault or a stalled motor does not move; a failed encoder misses pulses.
  if (fault(SimFault::driver_fault) || fault(SimFault::motor_stall)) return;
  steps_.fetch_add(out.steps, std::memory_order_relaxed);
  const double per_step = to_uL(board_.volume_per_step) * (1.0 + drift_.load(std::memory_order_relaxed) / 100.0);
  true_ul_.store(true_ul_.load(std::memory_order_relaxed) + per_step * out.steps, std::memory_order_relaxed);
  if (truth_steps_ != nullptr) *truth_steps_ = *truth_steps_ + out.steps;
  if (!fault(SimFault::encoder_failure)) encoder_steps_ += out.steps;
}

namespace {
constexpr std::size_t kTruthSize = 24;
constexpr char kTruthMagic[8] = {'T', 'H', 'E', 'C', 'A', 'L', 'T', 'R'};
}  // namespace

SimPlant::~SimPlant() {
  if (truth_map_ != nullptr) ::munmap(truth_map_, kTruthSize);
}

std::optional<std::string> SimPlant::open_truth_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return "cannot open " + path + ": " + std::strerror(errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || (st.st_size != 0 && st.st_size != static_cast<off_t>(kTruthSize)) ||
      (st.st_size == 0 && ::ftruncate(fd, kTruthSize) != 0)) {
    ::close(fd);
    return path + " is not a plant truth file";
  }
  void* m = ::mmap(nullptr, kTruthSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return "cannot map " + path + ": " + std::strerror(errno);
  auto* bytes = static_cast<char*>(m);
  if (st.st_size == 0) {
    std::memcpy(bytes, kTruthMagic, 8);
    const double vps = to_uL(board_.volume_per_step);
    std::memcpy(bytes + 16, &vps, 8);
  } else if (std::memcmp(bytes, kTruthMagic, 8) != 0) {
    ::munmap(m, kTruthSize);
    return path + " is not a plant truth file";
  }
  truth_map_ = m;
  truth_steps_ = reinterpret_cast<volatile std::uint64_t*>(bytes + 8);
  return std::nullopt;
}

std::optional<std::uint64_t> SimPlant::read_truth_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[kTruthSize];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n != static_cast<ssize_t>(kTruthSize) || std::memcmp(buf, kTruthMagic, 8) != 0) return std::nullopt;
  std::uint64_t v = 0;
  std::memcpy(&v, buf + 8, 8);
  return v;
}

void SimPlant::safe_state() noexcept { enabled_.store(false, std::memory_order_relaxed); }

}  // namespace thecal::io
