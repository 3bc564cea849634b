#include "control/catheter.hpp"

#include <algorithm>
#include <limits>

namespace thecal {

namespace {
constexpr double kEpsUl = 1e-12;

using Segments = boost::container::static_vector<Catheter::Segment, Catheter::kMaxSegments>;

void append(Segments& segs, Volume v, Concentration c, const AdmixConc& mix) {
  if (!segs.empty() && segs.back().concentration == c && segs.back().admix == mix) {
    segs.back().volume += v;
    return;
  }
  if (segs.size() == segs.capacity()) {
    // Merge the two segments nearest the pump, keeping their mass and volume.  Only
    // reached after more concentration changes than kMaxSegments within one transit.
    auto& a = segs[segs.size() - 2];
    const auto& b = segs.back();
    const Mass m = a.concentration * a.volume + b.concentration * b.volume;
    const Volume merged = a.volume + b.volume;
    for (std::size_t i = 0; i < kDrugSlots; ++i) {
      a.admix[i] = (a.admix[i] * a.volume + b.admix[i] * b.volume) / merged;
    }
    a.volume = merged;
    a.concentration = m / a.volume;
    segs.pop_back();
  }
  segs.push_back({v, c, mix});
}

/// Removes `v` from the tip end, returning the mass it carried (each admixture drug's to
/// `*admix` when not null).
Mass drain(Segments& segs, Volume v, AdmixMass* admix = nullptr) {
  Mass out = mcg(0);
  while (v > uL(kEpsUl) && !segs.empty()) {
    auto& tip = segs.front();
    const Volume take = std::min(tip.volume, v);
    out += tip.concentration * take;
    if (admix != nullptr) {
      for (std::size_t i = 0; i < kDrugSlots; ++i) (*admix)[i] += tip.admix[i] * take;
    }
    tip.volume -= take;
    v -= take;
    if (tip.volume <= uL(kEpsUl)) segs.erase(segs.begin());
  }
  return out;
}
}  // namespace

Volume Catheter::contents() const {
  Volume v = uL(0);
  for (const auto& s : segs_) v += s.volume;
  return v;
}

void Catheter::set_capacity(Volume v) {
  capacity_ = v;
  const Volume excess = contents() - capacity_;
  if (excess > uL(0)) (void)drain(segs_, excess);
}

Mass Catheter::push(Volume v, Concentration c, const AdmixConc& a, AdmixMass* out) {
  if (out != nullptr) out->fill(mcg(0));
  if (v <= uL(0)) return mcg(0);
  append(segs_, v, c, a);
  const Volume excess = contents() - capacity_;
  return excess > uL(0) ? drain(segs_, excess, out) : mcg(0);
}

Mass Catheter::mass_out_if_pushed(Volume v, Concentration c, const AdmixConc& a, AdmixMass* out) const {
  if (out != nullptr) out->fill(mcg(0));
  Segments copy = segs_;
  if (v <= uL(0)) return mcg(0);
  append(copy, v, c, a);
  Volume total = uL(0);
  for (const auto& s : copy) total += s.volume;
  const Volume excess = total - capacity_;
  return excess > uL(0) ? drain(copy, excess, out) : mcg(0);
}

bool Catheter::holds(std::size_t slot) const {
  return std::any_of(segs_.begin(), segs_.end(), [&](const Segment& s) { return s.admix[slot] > Concentration{}; });
}

const AdmixConc& Catheter::tip_admix(const AdmixConc& incoming) const {
  if (!full() || segs_.empty()) return incoming;
  return segs_.front().admix;
}

Volume Catheter::volume_for_mass(Mass m, Concentration incoming, Volume skip) const {
  // Walk from the tip: first the room left to fill (delivers nothing), then each segment,
  // then the incoming solution; the first `skip` of that walk is already spoken for.
  if (m <= mcg(0)) return uL(0);
  Volume v = uL(0);
  Mass left = m;
  Volume to_skip = skip > uL(0) ? skip : uL(0);
  bool done = false;
  auto piece = [&](Volume pv, Concentration c) {
    if (done) return;
    if (to_skip > uL(0)) {
      const Volume s = std::min(pv, to_skip);
      pv -= s;
      to_skip -= s;
    }
    if (pv <= uL(0)) return;
    if (c > Concentration{}) {
      const Mass pm = c * pv;
      if (pm >= left) {
        v += left / c;
        done = true;
        return;
      }
      left -= pm;
    }
    v += pv;
  };
  const Volume room = capacity_ - contents();
  if (room > uL(0)) piece(room, Concentration{});
  for (const auto& s : segs_) piece(s.volume, s.concentration);
  if (done) return v;
  if (incoming <= Concentration{}) return uL(std::numeric_limits<double>::infinity());
  return v + left / incoming;
}

Concentration Catheter::min_concentration(Concentration incoming) const {
  Concentration c = incoming;
  for (const auto& s : segs_) c = std::min(c, s.concentration);
  return c;
}

Concentration Catheter::tip_concentration(Concentration incoming) const {
  if (!full() || segs_.empty()) return incoming;
  return segs_.front().concentration;
}

}  // namespace thecal
