// Pump replacement (SPEC 2, 4: ExportTherapy/ImportTherapy) between two units, each an
// app::PumpService on its own synchronous core and state directory.
#include <gtest/gtest.h>

#include "app/therapy_document.hpp"
#include "tests/app/service_fixture.hpp"
#include "tests/support/therapy_envelope.hpp"

namespace thecal::test {
namespace {

using app::ErrorCode;

/// Unit `u` after a day of therapy with a patient bolus, suspended until Resume.
void therapy_then_suspend(Unit& u) {
  u.ready(bolus_yaml());
  u.run(hours(2), minutes(1));
  ASSERT_TRUE(u.call([&](auto d) { u.service->request_bolus(patient(), d); }).ok());
  u.run(hours(1), seconds(10));
  ASSERT_TRUE(u.call([&](auto d) { u.service->suspend(clinician(), Duration{0}, d); }).ok());
}

TEST(TherapyTransfer, ExportThenImportMovesPrescriptionLedgerLockoutAndLog) {
  Unit old_unit;
  therapy_then_suspend(old_unit);
  const Status old_status = old_unit.service->status();
  const auto exported = old_unit.call([&](auto d) { old_unit.service->export_therapy(clinician(77), d); });
  ASSERT_TRUE(exported.ok()) << exported.error->message;
  ASSERT_NE(exported.text.find("THECAL THERAPY EXPORT"), std::string::npos);
  EXPECT_EQ(old_unit.logged("therapy_exported"), 1U);

  Unit new_unit;
  const auto imported = new_unit.call([&](auto d) { new_unit.service->import_therapy(clinician(78), exported.text, d); });
  ASSERT_TRUE(imported.ok()) << imported.error->message;
  new_unit.run(seconds(2));
  const Status& s = new_unit.service->status();
  EXPECT_EQ(std::string(s.prescription_id.view()), std::string(old_status.prescription_id.view()));
  EXPECT_EQ(s.state, PumpState::idle);
  EXPECT_EQ(s.patient_boluses_24h, 1U);
  EXPECT_GE(to_mcg(s.delivered_24h), to_mcg(old_status.delivered_24h) - 1e-9);  // never less than the old unit's
  EXPECT_EQ(to_uL(s.reservoir), 0.0);  // empty until the first refill
  EXPECT_EQ(io::read_file(new_unit.dir.path + "/prescription.yaml"), bolus_yaml());
  // The old unit's log, marked, and the import itself.
  std::size_t marked = 0;
  for (const auto& e : new_unit.service->events(0, 100'000).value) {
    marked += e.detail.rfind("[replaced unit] ", 0) == 0 ? 1 : 0;
  }
  EXPECT_GE(marked, old_unit.events.size() - 1);
  EXPECT_EQ(new_unit.logged("therapy_imported"), 1U);
  // The lockout came along: a patient bolus now is refused on the new unit.
  ASSERT_TRUE(new_unit.call([&](auto d) { new_unit.service->refill(clinician(), uL(0), mL(20), "", d); }).ok());
  ASSERT_TRUE(new_unit.call([&](auto d) { new_unit.service->start(clinician(), d); }).ok());
  const auto bolus = new_unit.call([&](auto d) { new_unit.service->request_bolus(patient(), d); });
  ASSERT_FALSE(bolus.ok());
  EXPECT_EQ(bolus.error->code, ErrorCode::lockout_active);
  // And the import is durable: a restart of the new unit finds the therapy.
  app::JournalKeeper again(io::real_file_ops(), new_unit.dir.path, new_unit.loop.h.board, "/proc/sys/kernel/random/boot_id");
  const auto rec = again.recover();
  ASSERT_TRUE(rec.state.has_value());
  ASSERT_TRUE(rec.state->plan.has_value());
  EXPECT_EQ(std::string(rec.state->plan->id.view()), std::string(old_status.prescription_id.view()));
}

TEST(TherapyTransfer, ExportIsRefusedWhileThePumpCanDeliverByItself) {
  Unit u;
  u.ready(bolus_yaml());
  const auto r = u.call([&](auto d) { u.service->export_therapy(clinician(), d); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, ErrorCode::invalid_state);
}

TEST(TherapyTransfer, ACorruptDocumentIsRefusedWholeAndLogged) {
  Unit old_unit;
  therapy_then_suspend(old_unit);
  auto doc = old_unit.call([&](auto d) { old_unit.service->export_therapy(clinician(), d); }).text;
  ASSERT_FALSE(doc.empty());
  const auto at = doc.find("payload:\n") + 20;
  doc[at] = doc[at] == 'A' ? 'B' : 'A';
  Unit new_unit;
  const auto r = new_unit.call([&](auto d) { new_unit.service->import_therapy(clinician(5), doc, d); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, ErrorCode::invalid_document);
  EXPECT_EQ(new_unit.logged("command_refused"), 1U);
  EXPECT_FALSE(new_unit.service->status().has_prescription);
  EXPECT_FALSE(io::read_file(new_unit.dir.path + "/prescription.yaml").has_value());
}

// The codec (app/base64.hpp): a document whose payload is written in lines of another
// width (the envelope below writes 76 columns, as the first exports did) reads the same; a
// character that is not base64, under checksums that were recomputed to match, is refused
// by name; so is a payload cut short with its sums recomputed.
TEST(TherapyDocument, AnyLineWidthReadsTheSameAndBadBase64IsRefused) {
  Unit u;
  therapy_then_suspend(u);
  const auto doc = u.call([&](auto d) { u.service->export_therapy(clinician(), d); }).text;
  std::string err;
  const auto orig = app::decode_therapy_document(doc, &err);
  ASSERT_TRUE(orig) << err;
  const std::string payload = fuzz::payload_of(doc);
  ASSERT_GT(payload.size(), 100U);

  const std::string wide = fuzz::wrap_payload(payload);
  ASSERT_NE(wide, doc);
  const auto again = app::decode_therapy_document(wide, &err);
  ASSERT_TRUE(again) << err;
  EXPECT_EQ(encode_core_state(again->state), encode_core_state(orig->state));
  EXPECT_EQ(again->prescription, orig->prescription);
  EXPECT_EQ(again->events.size(), orig->events.size());

  std::string bad = wide;
  bad[bad.find("\npayload:\n") + 15] = '*';
  err.clear();
  EXPECT_FALSE(app::decode_therapy_document(fuzz::resum(bad), &err));
  EXPECT_EQ(err, "the payload is not valid base64");

  err.clear();
  EXPECT_FALSE(app::decode_therapy_document(fuzz::wrap_payload(payload.substr(0, payload.size() - 7)), &err));
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
}

TEST(TherapyTransfer, ImportIsRefusedOnAUnitWithADeliveryHistory) {
  Unit old_unit;
  therapy_then_suspend(old_unit);
  const auto doc = old_unit.call([&](auto d) { old_unit.service->export_therapy(clinician(), d); }).text;
  Unit used;
  used.ready(continuous_yaml(), false);
  const auto r = used.call([&](auto d) { used.service->import_therapy(clinician(), doc, d); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, ErrorCode::invalid_state);
  EXPECT_EQ(io::read_file(used.dir.path + "/prescription.yaml"), continuous_yaml());
}

}  // namespace
}  // namespace thecal::test
