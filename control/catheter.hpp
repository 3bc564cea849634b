// The catheter as a plug-flow queue of solution segments (SPEC S3).  Volume pushed in at
// the pump end comes out at the tip in order; drug reaches the patient only once the
// catheter is full, and after a change of concentration the tip keeps seeing the old
// solution until the catheter's dead volume has been pushed through.
//
// Admixture (SPEC 2, S1, S3): each segment also carries the concentration of every other
// drug of its solution, by the core's drug slot (PumpCore keeps which drug each slot is),
// so each drug's mass at the tip follows the solution actually at the tip.  The primary
// drug's arithmetic is the same with or without admixture.
#pragma once

#include <array>
#include <cstddef>

#include <boost/container/static_vector.hpp>

#include "control/units.hpp"

namespace thecal {

/// Admixture drugs the core can track at once: the plan's (at most kMaxAdmixture) and,
/// until they have left the line and the rolling 24 h, those a refill took out.
inline constexpr std::size_t kDrugSlots = 6;
/// Concentration of each admixture drug in a solution, by drug slot (0: not in it).
using AdmixConc = std::array<Concentration, kDrugSlots>;
/// Mass of each admixture drug, by drug slot.
using AdmixMass = std::array<Mass, kDrugSlots>;

class Catheter {
 public:
  static constexpr std::size_t kMaxSegments = 16;

  struct Segment {
    Volume volume;
    Concentration concentration;  // the primary drug
    AdmixConc admix{};            // the admixture drugs, by slot
  };

  explicit Catheter(Volume dead_volume = uL(0)) : capacity_(dead_volume) {}

  /// Changes the dead volume (a new prescription's catheter); keeps the contents that fit.
  void set_capacity(Volume v);
  /// Pushes `v` of solution at `c` in at the pump end; returns the drug mass that leaves
  /// the tip.
  Mass push(Volume v, Concentration c) { return push(v, c, AdmixConc{}, nullptr); }
  /// Same, for a solution with admixture `a`; each admixture drug's mass leaving the tip
  /// goes to `*out` (when not null).
  Mass push(Volume v, Concentration c, const AdmixConc& a, AdmixMass* out);
  /// The mass that pushing `v` would deliver at the tip, without changing anything.
  [[nodiscard]] Mass mass_out_if_pushed(Volume v, Concentration c) const {
    return mass_out_if_pushed(v, c, AdmixConc{}, nullptr);
  }
  [[nodiscard]] Mass mass_out_if_pushed(Volume v, Concentration c, const AdmixConc& a, AdmixMass* out) const;
  /// Whether any segment holds admixture drug `slot`.
  [[nodiscard]] bool holds(std::size_t slot) const;
  /// The volume to push for `m` of drug to leave the tip (infinite if it never would).
  [[nodiscard]] Volume volume_for_mass(Mass m, Concentration incoming) const {
    return volume_for_mass(m, incoming, uL(0));
  }
  /// Same, as if `skip` had already been pushed in first (volume programmed but not yet
  /// stepped), so consecutive conversions walk on along the line.
  [[nodiscard]] Volume volume_for_mass(Mass m, Concentration incoming, Volume skip) const;
  /// Lowest and highest concentration the next `v` pushed would deliver at the tip
  /// (catheter contents, then `incoming`).
  [[nodiscard]] Concentration min_concentration(Concentration incoming) const;

  [[nodiscard]] bool full() const { return full(uL(1e-9)); }
  /// Full within `tolerance` (e.g. less than one motor step of room left).
  [[nodiscard]] bool full(Volume tolerance) const { return contents() >= capacity_ - tolerance; }
  /// Empties the line (a new or revised catheter).
  void clear() { segs_.clear(); }
  [[nodiscard]] Volume contents() const;
  [[nodiscard]] Volume capacity() const { return capacity_; }
  /// Concentration of the solution now at the tip (what the next drop delivers); the
  /// incoming concentration when the catheter is empty of solution.
  [[nodiscard]] Concentration tip_concentration(Concentration incoming) const;
  /// The admixture at the tip, likewise.
  [[nodiscard]] const AdmixConc& tip_admix(const AdmixConc& incoming) const;
  [[nodiscard]] const boost::container::static_vector<Segment, kMaxSegments>& segments() const { return segs_; }
  /// Restores contents (journal recovery, therapy import).
  void restore(const boost::container::static_vector<Segment, kMaxSegments>& segs) { segs_ = segs; }

 private:
  Volume capacity_;
  // segs_.front() is at the tip, segs_.back() at the pump.
  boost::container::static_vector<Segment, kMaxSegments> segs_;
};

}  // namespace thecal
