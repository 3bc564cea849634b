// Writes the seeds of therapy_document_fuzzer into a directory: a real export of a real core
// (the flex example loaded, filled, primed, infusing for two hours with a patient bolus,
// then suspended), as the fuzzer reads it in each of its two modes (see the fuzzer).
//   therapy_document_seed SOURCE_DIR OUT_DIR
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "app/event_log.hpp"
#include "app/therapy_document.hpp"
#include "config/drug_library.hpp"
#include "config/prescription.hpp"
#include "control/core_state.hpp"
#include "control/pump_core.hpp"
#include "tests/support/therapy_envelope.hpp"

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool write(const std::string& path, char mode, const std::string& body) {
  std::ofstream f(path, std::ios::binary);
  f << mode << body;
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace thecal;
  if (argc != 3) {
    std::cerr << "usage: therapy_document_seed SOURCE_DIR OUT_DIR\n";
    return 2;
  }
  const std::string src = argv[1];
  const std::string out = argv[2];
  auto lib = config::load_drug_library(src + "/config/drugs.yaml");
  if (!lib.library) return 1;
  const std::string rx = slurp(src + "/examples/prescription-flex.yaml");
  config::PrescriptionContext ctx;
  ctx.drugs = &*lib.library;
  const Now t0{mono_us(1'000'000), wall_us(1'795'608'000'000'000LL)};  // 2026-11-25T12:00Z
  ctx.now = t0.wall;
  auto loaded = config::parse_prescription(rx, "prescription-flex.yaml", ctx);
  if (!loaded.plan) {
    for (const auto& p : loaded.problems) std::cerr << p.format() << "\n";
    return 1;
  }
  PumpCore core(ctx.board, t0);
  Now now = t0;
  std::uint64_t id = 0;
  auto cmd = [&](Command c) {
    c.id = ++id;
    c.caller = {1000, true};
    return core.apply(c, now);
  };
  SensorInputs in;
  Actuation act;
  std::uint64_t steps = 0;
  auto run = [&](Duration d) {  // ticks at 10 ms with an ideal encoder: enough for a seed
    for (Duration t{0}; t < d; t += msec(10)) {
      now.mono += msec(10);
      now.wall += msec(10);
      core.tick(now, in, act);
      steps += act.steps;
      in.encoder_pulses = steps / 8;
    }
  };
  bool ok = cmd({.kind = CommandKind::load_prescription, .plan = &*loaded.plan}).ok();
  ok = ok && cmd({.kind = CommandKind::refill, .volume = mL(20)}).ok();
  ok = ok && cmd({.kind = CommandKind::grant_budget, .steps = Steps{1'000'000}}).ok();
  ok = ok && cmd({.kind = CommandKind::prime, .volume = uL(220)}).ok();
  run(hours(1));
  ok = ok && cmd({.kind = CommandKind::start}).ok();
  run(minutes(5));
  ok = ok && cmd({.kind = CommandKind::patient_bolus}).ok();
  run(hours(2));
  ok = ok && cmd({.kind = CommandKind::suspend}).ok();
  if (!ok) {
    std::cerr << "therapy_document_seed: the core refused a step of the scenario\n";
    return 1;
  }
  std::vector<app::LoggedEvent> events;
  core.drain_events([&](const Event& e) {
    const app::DescribedEvent d = app::describe(e);
    events.push_back({to_usec(e.when), d.type, "uid=" + std::to_string(e.uid), d.detail});
  });
  CoreState st;
  core.export_state(st, now);
  const std::string doc = app::encode_therapy_document(st, rx, events);
  std::string err;
  if (!app::decode_therapy_document(doc, &err)) {
    std::cerr << "therapy_document_seed: own export does not decode: " << err << "\n";
    return 1;
  }
  const std::string payload = fuzz::payload_of(doc);  // mode 1 carries the payload alone
  if (!write(out + "/seed-document", '\0', doc) || !write(out + "/seed-payload", '\1', payload)) return 1;
  std::printf("therapy_document_seed: %zu-byte document, %zu-byte payload, %zu events\n", doc.size(), payload.size(),
              events.size());
  return 0;
}
