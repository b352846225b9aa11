"""Simulated dispersive readout of a superconducting qubit (the SNAC-Pack qubit-readout task).

>>> from hwnas.tasks.qubit import MatchedFilter, readout_window, simulate_readout
>>> sim = simulate_readout(20000, seed=0)           # ReadoutData: iq (N, 2, 770) float32, label int64
>>> x = readout_window(sim.iq, 100, 400)            # (N, 800): I window then Q window (SNAC-Pack baseline)
>>> mf = MatchedFilter().fit(x[:10000], sim.label[:10000])   # threshold from the training shots
>>> round(mf.score(x[10000:], sim.label[10000:]), 2)        # fidelity on held-out shots
0.95

See docs/tasks_qubit_images.md for the model and its parameters.
"""

from .config import ReadoutConfig
from .filters import MatchedFilter, assignment_errors, fidelity
from .simulate import ReadoutData, cavity_field, readout_window, simulate_readout

__all__ = [
    "MatchedFilter",
    "ReadoutConfig",
    "ReadoutData",
    "assignment_errors",
    "cavity_field",
    "fidelity",
    "readout_window",
    "simulate_readout",
]
