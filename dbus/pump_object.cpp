#include "dbus/pump_object.hpp"

#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

#include "dbus/roles.hpp"

namespace thecal::dbus {

namespace {

using Histogram = HistogramBins;

constexpr std::int64_t kFastPropertyIntervalUs = 1'000'000;  // "at most once a second"
constexpr std::uint64_t kIdlePollUs = 20'000;
constexpr std::uint64_t kFastPollUs = 1'000;
constexpr auto kEmits = SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE;

PumpObject& self(void* userdata) { return *static_cast<PumpObject*>(userdata); }
app::PumpService& svc(void* userdata) { return self(userdata).service(); }

std::int64_t monotonic_us() {
  timespec ts{};
  (void)clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

std::uint64_t wall_or_zero(WallTime t) {
  const auto us = to_usec(t);
  return us > 0 ? static_cast<std::uint64_t>(us) : 0;
}

const char* error_name(app::ErrorCode c) {
  switch (c) {
    case app::ErrorCode::invalid_prescription: return kErrInvalidPrescription;
    case app::ErrorCode::invalid_state: return kErrInvalidState;
    case app::ErrorCode::lockout_active: return kErrLockoutActive;
    case app::ErrorCode::bolus_limit_reached: return kErrBolusLimitReached;
    case app::ErrorCode::daily_limit_reached: return kErrDailyLimitReached;
    case app::ErrorCode::reservoir_low: return kErrReservoirLow;
    case app::ErrorCode::out_of_range: return kErrOutOfRange;
    case app::ErrorCode::access_denied: return kErrAccessDenied;
    case app::ErrorCode::invalid_document: return kErrInvalidDocument;
  }
  return kErrInvalidState;
}

int set_error(sd_bus_error* err, const app::Error& e) {
  return sd_bus_error_setf(err, error_name(e.code), "%s", e.message.c_str());
}

// ---------------------------------------------------------------------------------------
// Roles (SPEC 6): the caller and the role check in one step.

enum class Need { any, patient, clinician };

bool authorize(sd_bus_message* m, Need need, app::Identity& who, sd_bus_error* err) {
  CallerInfo c;
  const int r = caller_info(m, c);
  if (r < 0) {
    (void)sd_bus_error_setf(err, kErrAccessDenied, "Cannot determine the caller's uid: %s", strerrordesc_np(-r));
    return false;
  }
  who = {c.uid, c.clinician, c.patient};
  const bool ok = need == Need::any || (need == Need::patient && c.patient) || (need == Need::clinician && c.clinician);
  if (!ok) {
    (void)sd_bus_error_setf(err, kErrAccessDenied, "uid %u lacks the %s role for this call", c.uid,
                      need == Need::clinician ? "clinician" : "patient");
  }
  return ok;
}

// ---------------------------------------------------------------------------------------
// Replies that come later: the call's message is held until the service completes it.

using MessageRef = std::shared_ptr<sd_bus_message>;

template <class Ok>
app::Completion reply_later(sd_bus_message* m, Ok ok) {
  MessageRef msg(sd_bus_message_ref(m), [](sd_bus_message* x) { (void)sd_bus_message_unref(x); });
  return [msg, ok](const app::CallResult& r) {
    if (r.error) {
      (void)sd_bus_reply_method_errorf(msg.get(), error_name(r.error->code), "%s", r.error->message.c_str());
      return;
    }
    (void)ok(msg.get(), r);
  };
}

app::Completion reply_empty(sd_bus_message* m) {
  return reply_later(m, [](sd_bus_message* msg, const app::CallResult&) { return sd_bus_reply_method_return(msg, ""); });
}

/// After a call that goes through the dosing thread: poll for its reply soon.
int called(void* userdata) {
  self(userdata).poll_soon();
  return 1;
}

template <class Fill>
int reply_array(sd_bus_message* m, const char* contents, Fill fill) {
  sd_bus_message* reply = nullptr;
  int r = sd_bus_message_new_method_return(m, &reply);
  if (r < 0) return r;
  r = sd_bus_message_open_container(reply, 'a', contents);
  if (r >= 0) r = fill(reply);
  if (r >= 0) r = sd_bus_message_close_container(reply);
  if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
  sd_bus_message_unref(reply);
  return r < 0 ? r : 1;
}

// ---------------------------------------------------------------------------------------
// Methods of org.thecal.Pump1: read arguments, check the role, call the service, reply.

int method_validate(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* yaml = nullptr;
  const int r = sd_bus_message_read(m, "s", &yaml);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  const auto problems = svc(userdata).validate_prescription(yaml);
  return reply_array(m, "(sus)", [&](sd_bus_message* reply) {
    int q = 0;
    for (const auto& p : problems) {
      const std::string msg = "column " + std::to_string(p.column) + ": " + p.message;
      q = sd_bus_message_append(reply, "(sus)", p.path.c_str(), static_cast<std::uint32_t>(p.line), msg.c_str());
      if (q < 0) break;
    }
    return q;
  });
}

int method_describe(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* yaml = nullptr;
  const int r = sd_bus_message_read(m, "s", &yaml);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  const auto summary = svc(userdata).describe_prescription(yaml);
  if (summary.error) return set_error(err, *summary.error);
  return sd_bus_reply_method_return(m, "s", summary.value.c_str());
}

int method_load(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* yaml = nullptr;
  const int r = sd_bus_message_read(m, "s", &yaml);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  svc(userdata).load_prescription(who, yaml, reply_later(m, [](sd_bus_message* msg, const app::CallResult& res) {
    return sd_bus_reply_method_return(msg, "s", res.text.c_str());
  }));
  return called(userdata);
}

int method_prime(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  double volume = 0;
  const int r = sd_bus_message_read(m, "d", &volume);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  svc(userdata).prime(who, uL(volume), reply_empty(m));
  return called(userdata);
}

int method_revise_catheter(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  double volume = 0;
  const int r = sd_bus_message_read(m, "d", &volume);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  svc(userdata).revise_catheter(who, uL(volume), reply_empty(m));
  return called(userdata);
}

/// The methods without arguments that only need the role and give an empty reply.
template <void (app::PumpService::*Call)(const app::Identity&, app::Completion), Need need>
int method_plain(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  app::Identity who;
  if (!authorize(m, need, who, err)) return -EACCES;
  (svc(userdata).*Call)(who, reply_empty(m));
  return called(userdata);
}

int method_request_bolus(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  app::Identity who;
  if (!authorize(m, Need::patient, who, err)) return -EACCES;
  svc(userdata).request_bolus(who, reply_later(m, [](sd_bus_message* msg, const app::CallResult& res) {
    return sd_bus_reply_method_return(msg, "dt", to_mcg(res.dose), wall_or_zero(res.ends));
  }));
  return called(userdata);
}

int method_suspend(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  std::uint64_t duration = 0;
  const int r = sd_bus_message_read(m, "t", &duration);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  if (duration > static_cast<std::uint64_t>(INT64_MAX)) return sd_bus_error_set(err, kErrOutOfRange, "suspend duration beyond one year");
  svc(userdata).suspend(who, Duration{static_cast<std::int64_t>(duration)}, reply_empty(m));
  return called(userdata);
}

int method_clinician_bolus(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  double dose = 0;
  std::uint64_t duration = 0;
  const int r = sd_bus_message_read(m, "dt", &dose, &duration);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  if (duration > static_cast<std::uint64_t>(INT64_MAX)) return sd_bus_error_set(err, kErrOutOfRange, "bolus duration beyond 7 days");
  svc(userdata).clinician_bolus(who, mcg(dose), Duration{static_cast<std::int64_t>(duration)},
                                reply_later(m, [](sd_bus_message* msg, const app::CallResult& res) {
                                  return sd_bus_reply_method_return(msg, "t", wall_or_zero(res.ends));
                                }));
  return called(userdata);
}

int method_refill(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  double withdrawn = 0;
  double volume = 0;
  const char* yaml = nullptr;
  const int r = sd_bus_message_read(m, "dds", &withdrawn, &volume, &yaml);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  svc(userdata).refill(who, uL(withdrawn), uL(volume), yaml, reply_empty(m));
  return called(userdata);
}

int method_ack(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* code = nullptr;
  const int r = sd_bus_message_read(m, "s", &code);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::patient, who, err)) return -EACCES;
  svc(userdata).acknowledge_alarm(who, code, reply_empty(m));
  return called(userdata);
}

int method_get_events(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  std::uint64_t since = 0;
  std::uint32_t max = 0;
  const int r = sd_bus_message_read(m, "tu", &since, &max);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::any, who, err)) return -EACCES;
  const auto events = svc(userdata).events(since, max);
  if (events.error) return set_error(err, *events.error);
  return reply_array(m, "(tsss)", [&](sd_bus_message* reply) {
    int q = 0;
    for (const auto& e : events.value) {
      q = sd_bus_message_append(reply, "(tsss)", static_cast<std::uint64_t>(e.wall_us), e.type.c_str(), e.who.c_str(),
                                e.detail.c_str());
      if (q < 0) break;
    }
    return q;
  });
}

int method_get_history(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  std::uint64_t bucket = 0;
  const int r = sd_bus_message_read(m, "ttt", &from, &to, &bucket);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::any, who, err)) return -EACCES;
  const auto buckets = svc(userdata).delivery_history(from, to, bucket);
  if (buckets.error) return set_error(err, *buckets.error);
  return reply_array(m, "(tdd)", [&](sd_bus_message* reply) {
    int q = 0;
    for (const auto& b : buckets.value) {
      q = sd_bus_message_append(reply, "(tdd)", b.start_us, b.mcg, b.ul);
      if (q < 0) break;
    }
    return q;
  });
}

int method_get_drug_history(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* drug = nullptr;
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  std::uint64_t bucket = 0;
  const int r = sd_bus_message_read(m, "sttt", &drug, &from, &to, &bucket);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::any, who, err)) return -EACCES;
  const auto buckets = svc(userdata).drug_delivery_history(drug, from, to, bucket);
  if (buckets.error) return set_error(err, *buckets.error);
  return reply_array(m, "(tdd)", [&](sd_bus_message* reply) {
    int q = 0;
    for (const auto& b : buckets.value) {
      q = sd_bus_message_append(reply, "(tdd)", b.start_us, b.mcg, b.ul);
      if (q < 0) break;
    }
    return q;
  });
}

int method_get_refills(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  std::uint64_t from = 0;
  const int r = sd_bus_message_read(m, "t", &from);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::any, who, err)) return -EACCES;
  const auto refills = svc(userdata).refill_history(from);
  if (refills.error) return set_error(err, *refills.error);
  return reply_array(m, "(tdddddb)", [&](sd_bus_message* reply) {
    int q = 0;
    for (const auto& x : refills.value) {
      q = sd_bus_message_append(reply, "(tdddddb)", static_cast<std::uint64_t>(std::max<std::int64_t>(0, x.wall_us)),
                                x.filled_ul, x.withdrawn_ul, x.estimate_ul, x.pumped_ul, x.accuracy_percent,
                                static_cast<int>(x.discrepancy));
      if (q < 0) break;
    }
    return q;
  });
}

int method_get_recording(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  int r = sd_bus_message_read(m, "tt", &from, &to);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  const auto rec = svc(userdata).recording(from, to);
  if (rec.error) return set_error(err, *rec.error);
  sd_bus_message* reply = nullptr;
  r = sd_bus_message_new_method_return(m, &reply);
  if (r >= 0) r = sd_bus_message_append_array(reply, 'y', rec.value.data(), rec.value.size());
  if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
  sd_bus_message_unref(reply);
  return r;
}

int method_export(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  svc(userdata).export_therapy(who, reply_later(m, [](sd_bus_message* msg, const app::CallResult& res) {
    return sd_bus_reply_method_return(msg, "s", res.text.c_str());
  }));
  return called(userdata);
}

int method_import(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* text = nullptr;
  const int r = sd_bus_message_read(m, "s", &text);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  svc(userdata).import_therapy(who, text, reply_empty(m));
  return called(userdata);
}

/// A preview's reply, marshalled a slice at a time from an sd-event defer source, so that
/// other calls are served between slices: the largest reply (100,000 buckets, 3.6 MB) takes
/// a few hundred ms to marshal, which in one go would hold the bus that long.
struct PreviewReply {
  static constexpr std::size_t kSlice = 2048;  // buckets or events per turn of the main loop
  MessageRef call;
  app::PreviewResult result;
  sd_bus_message* reply = nullptr;
  std::size_t buckets = 0;  // appended so far
  std::size_t events = 0;
  ~PreviewReply() { sd_bus_message_unref(reply); }

  /// One slice; > 0 when more remain, 0 when sent, < 0 on failure (the caller replies).
  int step() {
    int q = 0;
    if (reply == nullptr) {
      q = sd_bus_message_new_method_return(call.get(), &reply);
      if (q >= 0) q = sd_bus_message_open_container(reply, 'a', "(tdddd)");
      if (q < 0) return q;
    }
    const auto& bs = result.buckets;
    if (buckets < bs.size() || (buckets == 0 && events == 0)) {
      const std::size_t end = std::min(bs.size(), buckets + kSlice);
      for (; q >= 0 && buckets < end; ++buckets) {
        const auto& b = bs[buckets];
        q = sd_bus_message_append(reply, "(tdddd)", wall_or_zero(b.start), to_mcg(b.tip_mass), to_uL(b.pump_volume),
                                  to_uL(b.reservoir_end), to_mcg(b.rolling_24h_end));
      }
      if (q < 0 || buckets < bs.size()) return q < 0 ? q : 1;
      q = sd_bus_message_close_container(reply);
      if (q >= 0) q = sd_bus_message_open_container(reply, 'a', "(tss)");
      if (q >= 0) events = 0;
      if (q < 0) return q;
      ++buckets;  // past the end: the bucket array is closed
    }
    const auto& es = result.events;
    const std::size_t end = std::min(es.size(), events + kSlice);
    for (; q >= 0 && events < end; ++events) {
      q = sd_bus_message_append(reply, "(tss)", wall_or_zero(es[events].when), es[events].type.c_str(),
                                es[events].detail.c_str());
    }
    if (q < 0 || events < es.size()) return q < 0 ? q : 1;
    q = sd_bus_message_close_container(reply);
    if (q >= 0) q = sd_bus_send(nullptr, reply, nullptr);
    return q < 0 ? q : 0;
  }

  static int on_defer(sd_event_source* s, void* userdata) {
    auto* self = static_cast<PreviewReply*>(userdata);
    const int q = self->step();
    if (q > 0) return 0;  // more next turn
    if (q < 0) {
      (void)sd_bus_reply_method_errorf(self->call.get(), kErrInvalidState, "cannot send the preview: %s",
                                       strerrordesc_np(-q));
    }
    (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
    (void)sd_event_source_unref(s);  // floating: the destroy callback frees `self`
    return 0;
  }
};

int method_preview(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* yaml = nullptr;
  int with_boluses = 0;
  std::uint64_t horizon = 0;
  std::uint64_t bucket = 0;
  const int r = sd_bus_message_read(m, "sbtt", &yaml, &with_boluses, &horizon, &bucket);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::any, who, err)) return -EACCES;
  MessageRef msg(sd_bus_message_ref(m), [](sd_bus_message* x) { (void)sd_bus_message_unref(x); });
  sd_event* event = self(userdata).event();
  svc(userdata).preview_prescription(who, yaml, with_boluses != 0, horizon, bucket,
                                     [msg, event](const app::Outcome<app::PreviewResult>& res) {
    if (res.error) {
      (void)sd_bus_reply_method_errorf(msg.get(), error_name(res.error->code), "%s", res.error->message.c_str());
      return;
    }
    auto out = std::make_unique<PreviewReply>();
    out->call = msg;
    out->result = res.value;
    sd_event_source* src = nullptr;
    int q = event != nullptr ? sd_event_add_defer(event, &src, PreviewReply::on_defer, out.get()) : -ENXIO;
    if (q >= 0) {
      (void)sd_event_source_set_description(src, "thecal-preview-reply");
      (void)sd_event_source_set_enabled(src, SD_EVENT_ON);  // a defer source is one-shot by default
      (void)sd_event_source_set_destroy_callback(src, [](void* p) { delete static_cast<PreviewReply*>(p); });
      (void)out.release();
      (void)sd_event_source_set_floating(src, 1);
      (void)sd_event_source_unref(src);  // the event loop holds it until it is done
      return;
    }
    while ((q = out->step()) > 0) {  // no event loop: all at once
    }
    if (q < 0) (void)sd_bus_reply_method_errorf(msg.get(), kErrInvalidState, "cannot send the preview: %s", strerrordesc_np(-q));
  });
  return called(userdata);  // the state copy goes through the dosing thread
}

// ---------------------------------------------------------------------------------------
// Properties: one table per interface, used by the getter, the change tracker and the vtable.

struct PropertyDef {
  const char* name;
  const char* signature;
  bool fast;            // fast-moving: PropertiesChanged at most once a second
  std::uint64_t flags;  // vtable flags
  PropertyValue (*value)(const app::PumpService& s);
};

int append_value(sd_bus_message* reply, const char* signature, const PropertyValue& v) {
  return std::visit(
      [&](const auto& x) -> int {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) return sd_bus_message_append(reply, signature, x.c_str());
        else if constexpr (std::is_same_v<T, bool>) return sd_bus_message_append(reply, signature, static_cast<int>(x));
        else if constexpr (std::is_same_v<T, std::vector<AlarmRow>>) {
          int r = sd_bus_message_open_container(reply, 'a', "(ssst)");
          for (const auto& a : x) {
            if (r < 0) break;
            r = sd_bus_message_append(reply, "(ssst)", a.code.c_str(), a.priority.c_str(), a.message.c_str(), a.raised_us);
          }
          return r < 0 ? r : sd_bus_message_close_container(reply);
        } else if constexpr (std::is_same_v<T, std::vector<DrugRow>>) {
          int r = sd_bus_message_open_container(reply, 'a', "(sddd)");
          for (const auto& d : x) {
            if (r < 0) break;
            r = sd_bus_message_append(reply, "(sddd)", d.name.c_str(), d.concentration_mcg_per_ml, d.delivered_24h_mcg,
                                      d.daily_limit_mcg);
          }
          return r < 0 ? r : sd_bus_message_close_container(reply);
        } else if constexpr (std::is_same_v<T, Histogram>) {
          int r = sd_bus_message_open_container(reply, 'a', "(tt)");
          for (const auto& [edge, count] : x) {
            if (r < 0) break;
            r = sd_bus_message_append(reply, "(tt)", edge, count);
          }
          return r < 0 ? r : sd_bus_message_close_container(reply);
        } else {
          return sd_bus_message_append(reply, signature, x);
        }
      },
      v);
}

/// Equal for change tracking: NaN equals NaN (RefillAccuracyPercent until measured).
bool same(const PropertyValue& a, const PropertyValue& b) {
  if (const auto* x = std::get_if<double>(&a)) {
    const auto* y = std::get_if<double>(&b);
    return y != nullptr && (*x == *y || (std::isnan(*x) && std::isnan(*y)));
  }
  return a == b;
}

std::string phase_text(const Status& s) {
  if (!s.has_prescription) return "";
  return s.phase == Phase::trial ? "trial" : "maintenance";
}

std::vector<AlarmRow> active_alarms(const app::PumpService& svc) {
  std::vector<AlarmRow> rows;
  const Status& s = svc.status();
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    if (!s.alarms[i].active) continue;
    const auto code = static_cast<AlarmCode>(i);
    rows.push_back({std::string(to_string(code)), std::string(to_string(priority_of(code))), svc.alarm_text(code),
                    wall_or_zero(s.alarms[i].raised)});
  }
  return rows;
}

/// Drugs (SPEC 4): the primary drug first, then the admixture.
std::vector<DrugRow> drug_rows(const Status& s) {
  std::vector<DrugRow> rows;
  for (const auto& d : s.drugs) {
    rows.push_back({std::string(d.name.view()), to_mcg_per_mL(d.concentration), to_mcg(d.delivered_24h), to_mcg(d.daily_limit)});
  }
  return rows;
}

using S = const app::PumpService&;

const PropertyDef kPumpProperties[] = {
    {pump_property::kState, "s", false, kEmits, [](S s) -> PropertyValue { return std::string(to_string(s.status().state)); }},
    {pump_property::kPhase, "s", false, kEmits, [](S s) -> PropertyValue { return phase_text(s.status()); }},
    {pump_property::kPrescriptionId, "s", false, kEmits, [](S s) -> PropertyValue { return std::string(s.status().prescription_id.view()); }},
    {pump_property::kDrug, "s", false, kEmits, [](S s) -> PropertyValue { return std::string(s.status().drug.view()); }},
    {pump_property::kConcentrationMcgPerMl, "d", false, kEmits, [](S s) -> PropertyValue { return to_mcg_per_mL(s.status().concentration); }},
    {pump_property::kBasalRateMcgPerDay, "d", false, kEmits, [](S s) -> PropertyValue { return to_mcg_per_day(s.status().basal_rate); }},
    {pump_property::kReservoirUl, "d", true, kEmits, [](S s) -> PropertyValue { return to_uL(s.status().reservoir); }},
    {pump_property::kReservoirCapacityUl, "d", false, kEmits, [](S s) -> PropertyValue { return to_uL(s.status().reservoir_capacity); }},
    {pump_property::kCatheterPrimed, "b", false, kEmits, [](S s) -> PropertyValue { return s.status().catheter_primed; }},
    {pump_property::kDelivered24hMcg, "d", true, kEmits, [](S s) -> PropertyValue { return to_mcg(s.status().delivered_24h); }},
    {pump_property::kDailyLimitMcg, "d", false, kEmits, [](S s) -> PropertyValue { return to_mcg(s.status().daily_limit); }},
    {pump_property::kPatientBolusesToday, "u", false, kEmits, [](S s) -> PropertyValue { return s.status().patient_boluses_24h; }},
    {pump_property::kNextPatientBolusUsec, "t", true, kEmits, [](S s) -> PropertyValue { return wall_or_zero(s.status().next_patient_bolus); }},
    {pump_property::kBolusActive, "b", false, kEmits, [](S s) -> PropertyValue { return s.status().bolus_active; }},
    {pump_property::kActiveAlarms, "a(ssst)", false, kEmits, [](S s) -> PropertyValue { return active_alarms(s); }},
    {pump_property::kBatteryPercent, "d", true, kEmits, [](S s) -> PropertyValue { return s.status().battery_percent; }},
    {pump_property::kRefillDueUsec, "t", true, kEmits, [](S s) -> PropertyValue { return wall_or_zero(s.status().refill_due); }},
    {pump_property::kTrialEndsUsec, "t", false, kEmits, [](S s) -> PropertyValue {
       const Status& st = s.status();
       return st.has_prescription && st.phase == Phase::trial ? wall_or_zero(st.trial_ends) : std::uint64_t{0};
     }},
    {pump_property::kRefillAccuracyPercent, "d", false, kEmits, [](S s) -> PropertyValue { return s.status().refill_accuracy_percent; }},
    {pump_property::kCatheterVolumeUl, "d", false, kEmits, [](S s) -> PropertyValue { return to_uL(s.status().catheter_volume); }},
    {pump_property::kSolutionExpiresUsec, "t", false, kEmits, [](S s) -> PropertyValue { return wall_or_zero(s.status().solution_expires); }},
    {pump_property::kDrugs, "a(sddd)", true, kEmits, [](S s) -> PropertyValue { return drug_rows(s.status()); }},
};

Histogram histogram_bins(const loop::LatencyHistogram& h) {
  // Non-empty bins as (lower edge ns, count): 1 us wide below 4.096 ms, 64 us wide up to
  // 69.632 ms; the overflow bin is (max_ns, count).
  Histogram bins;
  for (std::size_t i = 0; i < h.counts.size(); ++i) {
    if (h.counts[i] == 0) continue;
    bins.emplace_back(i < loop::LatencyHistogram::kBins ? loop::LatencyHistogram::lower_edge_ns(i) : h.max_ns, h.counts[i]);
  }
  return bins;
}

const PropertyDef kDiagProperties[] = {
    {"LoopCycles", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().since_start.cycles; }},
    {"Overruns", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().since_start.overruns; }},
    {"LatencyMaxNs", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().since_start.latency.max_ns; }},
    {"LatencyP50Ns", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().since_start.latency.quantile_ns(0.5); }},
    {"LatencyP99Ns", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().since_start.latency.quantile_ns(0.99); }},
    {"LatencyP999Ns", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().since_start.latency.quantile_ns(0.999); }},
    {"LatencyMaxNsLastMinute", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().last_minute.max_ns; }},
    {"LatencyP99NsLastMinute", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().last_minute.quantile_ns(0.99); }},
    {"LatencyP999NsLastMinute", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().last_minute.quantile_ns(0.999); }},
    {"LatencyHistogram", "a(tt)", false, 0, [](S s) -> PropertyValue { return histogram_bins(s.loop_figures().since_start.latency); }},
    {"ControlStepMaxNs", "t", false, 0, [](S s) -> PropertyValue { return s.loop_figures().since_start.control_step_max_ns; }},
    {"StepsIssued", "t", false, 0, [](S s) -> PropertyValue { return std::uint64_t{s.status().steps_issued}; }},
    {"EncoderPulses", "t", false, 0, [](S s) -> PropertyValue { return static_cast<std::uint64_t>(s.status().encoder_pulses); }},
    {"JournalWrites", "t", false, 0, [](S s) -> PropertyValue { return s.journal_writes(); }},
    {"WallClockUsec", "t", false, 0, [](S s) -> PropertyValue { return wall_or_zero(s.now().wall); }},
    {"RealtimeScheduling", "b", false, SD_BUS_VTABLE_PROPERTY_CONST, [](S s) -> PropertyValue { return s.loop_figures().since_start.realtime; }},
};

template <const auto& Table>
int get_property(sd_bus* /*bus*/, const char* /*path*/, const char* /*iface*/, const char* property,
                 sd_bus_message* reply, void* userdata, sd_bus_error* err) {
  for (const auto& p : Table) {
    if (std::strcmp(p.name, property) == 0) return append_value(reply, p.signature, p.value(svc(userdata)));
  }
  return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "no property %s", property);
}

template <const auto& Table>
std::vector<sd_bus_vtable> property_vtable() {
  std::vector<sd_bus_vtable> v;
  const sd_bus_vtable start = SD_BUS_VTABLE_START(0);
  v.push_back(start);
  for (const auto& p : Table) {
    const sd_bus_vtable prop = SD_BUS_PROPERTY(p.name, p.signature, get_property<Table>, 0, p.flags);
    v.push_back(prop);
  }
  return v;
}

const sd_bus_vtable kPumpMethods[] = {
    SD_BUS_METHOD_WITH_ARGS("ValidatePrescription", SD_BUS_ARGS("s", yaml), SD_BUS_RESULT("a(sus)", problems),
                            method_validate, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("DescribePrescription", SD_BUS_ARGS("s", yaml), SD_BUS_RESULT("s", summary),
                            method_describe, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("LoadPrescription", SD_BUS_ARGS("s", yaml), SD_BUS_RESULT("s", id), method_load,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Prime", SD_BUS_ARGS("d", volume_ul), SD_BUS_NO_RESULT, method_prime, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ReviseCatheter", SD_BUS_ARGS("d", volume_ul), SD_BUS_NO_RESULT, method_revise_catheter,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Start", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                            (method_plain<&app::PumpService::start, Need::clinician>), SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Suspend", SD_BUS_ARGS("t", duration_usec), SD_BUS_NO_RESULT, method_suspend,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Resume", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                            (method_plain<&app::PumpService::resume, Need::clinician>), SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("RequestBolus", SD_BUS_NO_ARGS, SD_BUS_RESULT("d", dose_mcg, "t", ends_usec),
                            method_request_bolus, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ClinicianBolus", SD_BUS_ARGS("d", dose_mcg, "t", duration_usec),
                            SD_BUS_RESULT("t", ends_usec), method_clinician_bolus, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("CancelBolus", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                            (method_plain<&app::PumpService::cancel_bolus, Need::patient>), SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Refill", SD_BUS_ARGS("d", withdrawn_ul, "d", volume_ul, "s", prescription_yaml),
                            SD_BUS_NO_RESULT, method_refill, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("BeginRefill", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                            (method_plain<&app::PumpService::begin_refill, Need::clinician>), SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("CancelRefill", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                            (method_plain<&app::PumpService::cancel_refill, Need::clinician>), SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("AcknowledgeAlarm", SD_BUS_ARGS("s", code), SD_BUS_NO_RESULT, method_ack,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetEvents", SD_BUS_ARGS("t", since_usec, "u", max), SD_BUS_RESULT("a(tsss)", events),
                            method_get_events, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetDeliveryHistory", SD_BUS_ARGS("t", from_usec, "t", to_usec, "t", bucket_usec),
                            SD_BUS_RESULT("a(tdd)", buckets), method_get_history, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetDrugDeliveryHistory",
                            SD_BUS_ARGS("s", drug, "t", from_usec, "t", to_usec, "t", bucket_usec),
                            SD_BUS_RESULT("a(tdd)", buckets), method_get_drug_history, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetRefillHistory", SD_BUS_ARGS("t", from_usec), SD_BUS_RESULT("a(tdddddb)", refills),
                            method_get_refills, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ReplaceBattery", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                            (method_plain<&app::PumpService::replace_battery, Need::clinician>),
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("TestAlarm", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                            (method_plain<&app::PumpService::test_alarm, Need::clinician>), SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetRecording", SD_BUS_ARGS("t", from_usec, "t", to_usec), SD_BUS_RESULT("ay", recording),
                            method_get_recording, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ExportTherapy", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", document), method_export,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ImportTherapy", SD_BUS_ARGS("s", document), SD_BUS_NO_RESULT, method_import,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("PreviewPrescription",
                            SD_BUS_ARGS("s", yaml, "b", with_patient_boluses, "t", horizon_usec, "t", bucket_usec),
                            SD_BUS_RESULT("a(tdddd)", buckets, "a(tss)", events), method_preview,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_ARGS("AlarmRaised", SD_BUS_ARGS("s", code, "s", priority, "s", message), 0),
    SD_BUS_SIGNAL_WITH_ARGS("AlarmCleared", SD_BUS_ARGS("s", code), 0),
    SD_BUS_SIGNAL_WITH_ARGS("BolusStarted", SD_BUS_ARGS("s", source, "d", dose_mcg), 0),
    SD_BUS_SIGNAL_WITH_ARGS("BolusFinished", SD_BUS_ARGS("s", source, "d", delivered_mcg), 0),
    SD_BUS_VTABLE_END};

const std::vector<sd_bus_vtable>& diag_vtable() {
  static const std::vector<sd_bus_vtable> v = [] {
    auto t = property_vtable<kDiagProperties>();
    const sd_bus_vtable end = SD_BUS_VTABLE_END;
    t.push_back(end);
    return t;
  }();
  return v;
}

// ---------------------------------------------------------------------------------------
// org.thecal.Simulator1

int method_inject_fault(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* fault = nullptr;
  int active = 0;
  const int r = sd_bus_message_read(m, "sb", &fault, &active);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  const auto done = svc(userdata).inject_fault(who, fault, active != 0);
  if (done.error) return set_error(err, *done.error);
  return sd_bus_reply_method_return(m, "");
}

int get_time_scale(sd_bus* /*bus*/, const char* /*path*/, const char* /*iface*/, const char* /*property*/,
                   sd_bus_message* reply, void* userdata, sd_bus_error* /*err*/) {
  return sd_bus_message_append(reply, "d", svc(userdata).time_scale());
}

int set_time_scale(sd_bus* bus, const char* path, const char* iface, const char* property, sd_bus_message* value,
                   void* userdata, sd_bus_error* err) {
  double v = 0;
  const int r = sd_bus_message_read(value, "d", &v);
  if (r < 0) return r;
  app::Identity who;
  if (!authorize(value, Need::clinician, who, err)) return -EACCES;
  const auto done = svc(userdata).set_time_scale(who, v);
  if (done.error) return set_error(err, *done.error);
  (void)sd_bus_emit_properties_changed(bus, path, iface, property, nullptr);
  return 1;
}

int get_true_delivered(sd_bus* /*bus*/, const char* /*path*/, const char* /*iface*/, const char* /*property*/,
                       sd_bus_message* reply, void* userdata, sd_bus_error* /*err*/) {
  return sd_bus_message_append(reply, "d", svc(userdata).true_delivered_ul());
}

const sd_bus_vtable kSimVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_ARGS("InjectFault", SD_BUS_ARGS("s", fault, "b", active), SD_BUS_NO_RESULT,
                            method_inject_fault, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_WRITABLE_PROPERTY("TimeScale", "d", get_time_scale, set_time_scale, 0,
                             SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("TrueDeliveredUl", "d", get_true_delivered, 0, 0),
    SD_BUS_VTABLE_END};

}  // namespace

// ---------------------------------------------------------------------------------------

PumpObject::~PumpObject() { detach(); }

int PumpObject::attach(sd_bus* bus, sd_event* event) {
  bus_ = bus;
  event_ = event;
  pump_vtable_ = property_vtable<kPumpProperties>();
  pump_vtable_.insert(pump_vtable_.end(), std::begin(kPumpMethods), std::end(kPumpMethods));
  struct Iface {
    const char* name;
    const sd_bus_vtable* vtable;
  };
  std::vector<Iface> ifaces{{kPumpInterface, pump_vtable_.data()}, {kDiagnosticsInterface, diag_vtable().data()}};
  if (service_.has_simulator()) ifaces.push_back({kSimulatorInterface, kSimVtable});
  for (const auto& i : ifaces) {
    sd_bus_slot* slot = nullptr;
    const int r = sd_bus_add_object_vtable(bus, &slot, kObjectPath, i.name, i.vtable, this);
    if (r < 0) return r;
    slots_.push_back(slot);
  }
  int r = sd_event_add_time_relative(event, &timer_, CLOCK_MONOTONIC, kIdlePollUs, 0, on_timer, this);
  if (r < 0) return r;
  // sd-event coalesces timers within their accuracy, 250 ms by default: the poll must
  // fire on time, or every reply waits a quarter of a second.
  r = sd_event_source_set_time_accuracy(timer_, 1);
  if (r >= 0) r = sd_event_source_set_enabled(timer_, SD_EVENT_ON);
  if (r >= 0) r = sd_event_source_set_description(timer_, "thecal-poll");
  if (r < 0) return r;
  // A finished preview (worker thread) wakes the main loop through an eventfd.
  const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return -errno;
  r = sd_event_add_io(event, &wake_, fd, EPOLLIN, on_wake, this);
  if (r < 0) {
    (void)close(fd);
    return r;
  }
  (void)sd_event_source_set_io_fd_own(wake_, 1);
  (void)sd_event_source_set_description(wake_, "thecal-preview-done");
  service_.set_preview_wake([fd] {
    const std::uint64_t one = 1;
    (void)!write(fd, &one, sizeof one);
  });
  service_.set_listener(this);
  return 0;
}

int PumpObject::on_wake(sd_event_source* s, int fd, std::uint32_t /*revents*/, void* userdata) {
  (void)s;
  std::uint64_t n = 0;
  (void)!read(fd, &n, sizeof n);
  auto& o = self(userdata);
  o.service_.poll();
  o.arm_timer(o.service_.busy());
  return 0;
}

void PumpObject::detach() {
  service_.set_preview_wake(nullptr);
  wake_ = sd_event_source_disable_unref(wake_);
  service_.set_listener(nullptr);
  service_.fail_pending("the pump daemon is shutting down");
  for (auto*& s : slots_) s = sd_bus_slot_unref(s);
  slots_.clear();
  timer_ = sd_event_source_disable_unref(timer_);
  bus_ = nullptr;
}

int PumpObject::on_timer(sd_event_source* /*s*/, std::uint64_t /*usec*/, void* userdata) {
  auto& o = self(userdata);
  o.service_.poll();
  o.arm_timer(o.service_.busy());
  return 0;
}

void PumpObject::arm_timer(bool fast) {
  if (timer_ == nullptr) return;
  // Both fail only for a source that is not a timer or an event loop that is gone.
  (void)sd_event_source_set_time_relative(timer_, fast ? kFastPollUs : kIdlePollUs);
  (void)sd_event_source_set_enabled(timer_, SD_EVENT_ON);
}

void PumpObject::status_changed(const Status& /*status*/, bool urgent) {
  if (bus_ == nullptr) return;
  constexpr std::size_t n = std::size(kPumpProperties);
  if (last_emitted_.empty()) {
    // The first status: what a client reads from now on; nothing to announce.
    for (const auto& p : kPumpProperties) last_emitted_.push_back(p.value(service_));
    return;
  }
  const std::int64_t now_us = monotonic_us();
  const bool fast_due = urgent || now_us - last_fast_emit_us_ >= kFastPropertyIntervalUs;
  std::vector<const char*> changed;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& p = kPumpProperties[i];
    if (p.fast && !fast_due) continue;
    PropertyValue v = p.value(service_);
    if (!same(last_emitted_[i], v)) {
      last_emitted_[i] = std::move(v);
      changed.push_back(p.name);
    }
  }
  if (fast_due) last_fast_emit_us_ = now_us;
  if (changed.empty()) return;
  changed.push_back(nullptr);
  (void)sd_bus_emit_properties_changed_strv(bus_, kObjectPath, kPumpInterface, const_cast<char**>(changed.data()));
}

void PumpObject::alarm_raised(AlarmCode code, const std::string& message) {
  if (bus_ == nullptr) return;
  const std::string c(to_string(code));
  const std::string prio(to_string(priority_of(code)));
  (void)sd_bus_emit_signal(bus_, kObjectPath, kPumpInterface, "AlarmRaised", "sss", c.c_str(), prio.c_str(), message.c_str());
}

void PumpObject::alarm_cleared(AlarmCode code) {
  if (bus_ == nullptr) return;
  const std::string c(to_string(code));
  (void)sd_bus_emit_signal(bus_, kObjectPath, kPumpInterface, "AlarmCleared", "s", c.c_str());
}

void PumpObject::bolus_started(BolusSource source, Mass dose) {
  if (bus_ == nullptr) return;
  const std::string src(to_string(source));
  (void)sd_bus_emit_signal(bus_, kObjectPath, kPumpInterface, "BolusStarted", "sd", src.c_str(), to_mcg(dose));
}

void PumpObject::bolus_finished(BolusSource source, Mass delivered) {
  if (bus_ == nullptr) return;
  const std::string src(to_string(source));
  (void)sd_bus_emit_signal(bus_, kObjectPath, kPumpInterface, "BolusFinished", "sd", src.c_str(), to_mcg(delivered));
}

}  // namespace thecal::dbus
