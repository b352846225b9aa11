// Reference high-level jet features from FastJet + fjcontrib, for tests/test_jets_features.py.
//
// Reads whitespace-separated text from stdin: the number of jets, then per jet the number of
// constituents followed by that many "px py pz E" rows (GeV). Prints one line per jet: the 16 features
// of hwnas.tasks.jets.features.HLF_NAMES in order, then the number of constituents kept by the groomer,
// each with 17 significant digits.
//
// Definitions (see docs/tasks_jets.md): the constituents are clustered into one jet (anti-kT with a
// radius large enough to hold them all); fjcontrib's ModifiedMassDropTagger(0.1) in grooming mode
// reclusters it with C/A (its default, JetDefinition::max_allowable_R) and grooms it; the energy
// correlator classes use their default pt_R measure on the groomed jet; zlogz and multiplicity use the
// ungroomed jet.

#include <cmath>
#include <cstdio>
#include <iostream>
#include <vector>

#include "fastjet/ClusterSequence.hh"
#include "fastjet/contrib/EnergyCorrelator.hh"
#include "fastjet/contrib/ModifiedMassDropTagger.hh"

using fastjet::ClusterSequence;
using fastjet::JetDefinition;
using fastjet::PseudoJet;
namespace fc = fastjet::contrib;

int main() {
  fastjet::ClusterSequence::set_fastjet_banner_stream(nullptr);
  long n_jets = 0;
  if (!(std::cin >> n_jets)) {
    std::cerr << "jets_reference: cannot read the number of jets\n";
    return 2;
  }
  const JetDefinition jet_def(fastjet::antikt_algorithm, 100.0);
  fc::ModifiedMassDropTagger mmdt(0.1);
  mmdt.set_grooming_mode(true);
  const fc::EnergyCorrelatorC1 c1_b0(0.0), c1_b1(1.0), c1_b2(2.0);
  const fc::EnergyCorrelatorC2 c2_b1(1.0), c2_b2(2.0);
  const fc::EnergyCorrelatorD2 d2_b1(1.0), d2_b2(2.0);
  const fc::EnergyCorrelatorGeneralizedD2 d2_a1_b1(1.0, 1.0), d2_a1_b2(1.0, 2.0);
  const fc::EnergyCorrelatorM2 m2_b1(1.0), m2_b2(2.0);
  const fc::EnergyCorrelatorN2 n2_b1(1.0), n2_b2(2.0);

  for (long k = 0; k < n_jets; ++k) {
    long n = 0;
    if (!(std::cin >> n) || n < 1) {
      std::cerr << "jets_reference: bad constituent count for jet " << k << "\n";
      return 2;
    }
    std::vector<PseudoJet> particles;
    for (long i = 0; i < n; ++i) {
      double px, py, pz, e;
      if (!(std::cin >> px >> py >> pz >> e)) {
        std::cerr << "jets_reference: short input in jet " << k << "\n";
        return 2;
      }
      particles.emplace_back(px, py, pz, e);
    }
    ClusterSequence cs(particles, jet_def);
    const std::vector<PseudoJet> jets = cs.inclusive_jets();
    if (jets.size() != 1) {
      std::cerr << "jets_reference: jet " << k << " clustered into " << jets.size() << " jets\n";
      return 3;
    }
    const PseudoJet &jet = jets[0];
    double zlogz = 0.0;
    for (const PseudoJet &c : jet.constituents()) {
      const double z = c.pt() / jet.pt();
      if (z > 0.0) zlogz += z * std::log(z);
    }
    const PseudoJet groomed = mmdt(jet);
    const double values[17] = {
        zlogz,
        c1_b0(groomed), c1_b1(groomed), c1_b2(groomed),
        c2_b1(groomed), c2_b2(groomed),
        d2_b1(groomed), d2_b2(groomed),
        d2_a1_b1(groomed), d2_a1_b2(groomed),
        m2_b1(groomed), m2_b2(groomed),
        n2_b1(groomed), n2_b2(groomed),
        groomed.m(),
        static_cast<double>(jet.constituents().size()),
        static_cast<double>(groomed.constituents().size()),
    };
    for (int f = 0; f < 17; ++f) std::printf(f ? " %.17g" : "%.17g", values[f]);
    std::printf("\n");
  }
  return 0;
}
