"""Named random streams for one block of frames, so results do not depend on how the work is split.

Every random quantity of a block (symbols, offsets, fading phases, noise, …) is drawn from its own
:class:`numpy.random.Generator`, seeded by ``[seed, class index, SNR code, block index, crc32(name)]``, in
one call whose leading axis is the frame. Frame ``i`` of a block therefore depends only on frames ``< i``
of the same block: generating fewer frames gives a prefix of the same frames, and the split of a data set
into blocks, chunks or worker processes never changes a value.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["Streams"]


class Streams:
    """Factory of independent generators for one block: ``streams("noise")`` is the noise generator.

    Each name may be used for a single draw (a second draw from the same name would make frame ``i``
    depend on the block size); :meth:`__call__` enforces this.
    """

    def __init__(self, seed: int, class_index: int, snr_code: int, block: int) -> None:
        self._key = (int(seed), int(class_index), int(snr_code), int(block))
        self._used: set[str] = set()

    def __call__(self, name: str) -> np.random.Generator:
        """The generator of stream ``name`` (each name can be asked for once)."""
        if name in self._used:
            raise RuntimeError(f"random stream {name!r} used twice in one block")
        self._used.add(name)
        return np.random.default_rng([*self._key, zlib.crc32(name.encode())])
