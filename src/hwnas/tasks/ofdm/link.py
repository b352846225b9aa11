"""The simulated OFDM SIMO uplink (:class:`OfdmLink`): seeded batches, receiver inputs/targets, decoding, baselines.

One frame is one slot: ``k`` random information bits → 5G LDPC code (rate ``code_rate``, Sionna's
``LDPC5GEncoder`` with the 38.212 bit interleaver for the modulation) → Gray QAM → the data REs of an OFDM
resource grid whose pilot symbols carry a fixed QPSK sequence → CDL channel (TR 38.901, Sionna), applied in the
frequency domain per RE (``y = h·x``; the channel may change from one OFDM symbol to the next, it is constant
within a symbol: no inter-carrier interference, no inter-symbol interference) → complex AWGN of variance ``no``.

Layouts (``B`` frames, ``Nr`` receive antennas, ``S`` OFDM symbols, ``F`` subcarriers, ``m`` bits per symbol):

* received grid ``y`` (B, Nr, S, F) complex64; perfect channel ``h`` (B, Nr, S, F) complex64 (unit average
  energy per RE per frame, Sionna's ``normalize_channel``); noise variance ``no`` (B,) per complex RE;
* :meth:`OfdmLink.receiver_input` (B, 2·Nr + 1, S, F) float32: ``Re y`` of every antenna, then ``Im y`` of every
  antenna, then a constant plane ``log10(no)``;
* LLRs and bit targets (B, m, S, F): plane ``j`` holds bit ``j`` (the mapper's label order, MSB first) of the
  symbol on that RE; pilot REs hold 0 and are masked out. LLRs are logits, ``log P(b=1)/P(b=0)`` (Sionna's
  demapper and decoder convention; ``torch.sigmoid(llr)`` is P(b=1), so BCE-with-logits applies directly).

Reproducibility: ``sample(..., seed=s)`` returns identical tensors for the same ``s``, options and device. The
link's own draws (CDL model, delay spread, speed, direction, SNR, bits, noise) use a private
``torch.Generator``; Sionna's CDL draws from Sionna's global per-device generator, which :meth:`sample` reseeds
for the duration of the call and then restores to its previous state, so nothing outside the call sees a
change. Importing Sionna reseeds torch's default generator (Sionna's config does it at import): the import here
saves and restores torch's global RNG state around it.
"""

from __future__ import annotations

import contextlib
import math
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hwnas.errors import tool_missing
from hwnas.tasks.registry import TaskError

from .config import LinkConfig, _range, normalize_cdl_model

__all__ = ["SAMPLE_VERSION", "LinkBatch", "OfdmLink"]

SAMPLE_VERSION = 1
"""Bumped whenever a change alters the batch a given seed produces."""

_SPLITS = ("train", "test")
_sionna: types.SimpleNamespace | None = None


def _load_sionna() -> types.SimpleNamespace:
    """Import the Sionna PHY pieces the link uses, keeping torch's global RNG state as it was."""
    global _sionna
    if _sionna is not None:
        return _sionna
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        from sionna.phy import config
        from sionna.phy.channel import cir_to_ofdm_channel, subcarrier_frequencies
        from sionna.phy.channel.tr38901 import CDL, PanelArray
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
        from sionna.phy.mapping import Demapper, Mapper
        from sionna.phy.mimo import StreamManagement
        from sionna.phy.ofdm import (
            LMMSEEqualizer,
            LSChannelEstimator,
            PilotPattern,
            ResourceGrid,
            ResourceGridMapper,
        )
        from sionna.phy.utils import ebnodb2no
    except ImportError as err:
        raise tool_missing(TaskError(
            f"ofdm link: Sionna PHY is not installed ({err}); install the receiver extra: "
            "pip install 'hwnas[receiver]' (sionna-no-rt==2.2.0)"
        )) from err
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
    _sionna = types.SimpleNamespace(
        config=config, cir_to_ofdm_channel=cir_to_ofdm_channel, subcarrier_frequencies=subcarrier_frequencies,
        CDL=CDL, PanelArray=PanelArray, LDPC5GDecoder=LDPC5GDecoder, LDPC5GEncoder=LDPC5GEncoder,
        Demapper=Demapper, Mapper=Mapper, StreamManagement=StreamManagement, LMMSEEqualizer=LMMSEEqualizer,
        LSChannelEstimator=LSChannelEstimator, PilotPattern=PilotPattern, ResourceGrid=ResourceGrid,
        ResourceGridMapper=ResourceGridMapper, ebnodb2no=ebnodb2no,
    )
    return _sionna


@contextlib.contextmanager
def _sionna_rng(device: str, seed: int) -> Iterator[None]:
    """Seed Sionna's generator for ``device`` for the block, then put its previous state back."""
    gen = _load_sionna().config.torch_rng(device)
    state = gen.get_state()
    gen.manual_seed(seed)
    try:
        yield
    finally:
        gen.set_state(state)


def _resolve_seed(seed: int | torch.Generator | None) -> int:
    """An int seed in [0, 2**63) from an int, a generator (one draw) or ``None`` (fresh OS entropy)."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % (1 << 63))
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 1 << 62, (1,), generator=seed, device=seed.device).item())
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise TaskError(f"ofdm link option seed: must be an int >= 0 or a torch.Generator, got {seed!r}")
    return int(seed)


def _draw_range(name: str, value: Any) -> tuple[float, float]:
    return _range(name, value, lo=-50.0, hi=100.0)


@dataclass(frozen=True)
class LinkBatch:
    """One batch of simulated slots (all tensors on the link's device; ``B`` frames).

    Attributes:
        y: received resource grid (B, Nr, S, F) complex64, noise included.
        no: noise variance per complex RE (B,) float32.
        b: information bits (B, k) float32 in {0, 1}.
        c: coded bits (B, n) float32 in {0, 1}, in the order the mapper consumed them.
        h: the true channel (B, Nr, S, F) complex64 (for perfect-CSI receivers).
        x: the transmitted resource grid (B, S, F) complex64 (data and pilots).
        snr_db: per-RE SNR ``-10·log10(no)`` [dB] (B,) float32.
        ebno_db: Eb/N0 [dB] (B,) float32 (Sionna's ``ebnodb2no`` convention: pilot and CP overhead counted).
        delay_spread_ns: RMS delay spread [ns] (B,) float32.
        speed_mps: UE speed [m/s] (B,) float32.
        cdl_model: CDL profile letter per frame.
        split: ``"train"`` or ``"test"``.
        seed: the int seed that reproduces this batch with the same options.
    """

    y: torch.Tensor
    no: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor
    h: torch.Tensor
    x: torch.Tensor
    snr_db: torch.Tensor
    ebno_db: torch.Tensor
    delay_spread_ns: torch.Tensor
    speed_mps: torch.Tensor
    cdl_model: tuple[str, ...]
    split: str
    seed: int

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def batch_size(self) -> int:
        """Frames in the batch."""
        return len(self)


class OfdmLink:
    """The simulated link of a :class:`LinkConfig` (Sionna PHY blocks built once; ``sample`` per batch).

    Args:
        config: a :class:`LinkConfig` or a preset name (``"seed"``, ``"small"``).
        device: torch device of every tensor (default ``"cpu"``); the same seed gives different draws on
            different devices.
        compile_decoder: run the LDPC decoder through ``torch.compile`` (seed preset on one CPU core: ≈ 2.5×
            faster per batch after a first call that compiles for ≈ 2 min; bit-identical decisions; batches are
            decoded in chunks of the first batch's size, padded, so no recompilation happens). Off by default.
    """

    def __init__(self, config: LinkConfig | str = "seed", *, device: str = "cpu", compile_decoder: bool = False):
        sn = _load_sionna()
        cfg = LinkConfig.from_options(config) if isinstance(config, str) else config
        if not isinstance(cfg, LinkConfig):
            raise TaskError(f"ofdm link option config: must be a LinkConfig or preset name, got {config!r}")
        self.config = cfg
        self.device = str(device)
        opts: dict[str, Any] = {"precision": "single", "device": self.device}
        S, F, m = cfg.num_ofdm_symbols, cfg.num_subcarriers, cfg.bits_per_symbol

        # Pilots: a fixed QPSK sequence (seeded by pilot_seed) on every subcarrier of the pilot symbols.
        prng = np.random.default_rng(cfg.pilot_seed)
        pb = prng.integers(0, 2, size=(2, len(cfg.pilot_symbols) * F))
        pilots = ((1 - 2 * pb[0]) + 1j * (1 - 2 * pb[1])) / math.sqrt(2)
        mask = np.zeros((1, 1, S, F), dtype=bool)
        mask[..., list(cfg.pilot_symbols), :] = True
        pattern = sn.PilotPattern(mask, pilots.reshape(1, 1, -1).astype(np.complex64), normalize=False, **opts)
        self.resource_grid = sn.ResourceGrid(
            num_ofdm_symbols=S,
            fft_size=F,
            subcarrier_spacing=cfg.subcarrier_spacing_hz,
            num_tx=1,
            num_streams_per_tx=1,
            cyclic_prefix_length=cfg.cyclic_prefix_length,
            pilot_pattern=pattern,
            **opts,
        )
        rg_type = self.resource_grid.build_type_grid()[0, 0]
        #: (S, F) bool, True on data REs.
        self.data_mask = (rg_type == 0).to(self.device)
        #: flat indices (s·F + f) of the data REs in the order the resource-grid mapper fills them.
        self.data_index = torch.nonzero(self.data_mask.flatten()).squeeze(-1)
        if self.data_index.numel() != cfg.num_data_re:
            raise AssertionError("resource grid data REs disagree with the configuration")

        self.n, self.k, self.bits_per_symbol = cfg.n, cfg.k, m
        self.encoder = sn.LDPC5GEncoder(self.k, self.n, num_bits_per_symbol=m, **opts)
        self.decoder = sn.LDPC5GDecoder(self.encoder, hard_out=True, num_iter=cfg.ldpc_iterations, **opts)
        self._compiled = bool(compile_decoder)
        self._decode_fn = self.decoder
        if self._compiled:
            # One eager call first builds the block, so the compiled graph is traced once, not twice.
            with torch.no_grad():
                self.decoder(torch.zeros((1, self.n), device=self.device))
            self._decode_fn = torch.compile(self.decoder)
        self._decode_chunk: int | None = None
        self.mapper = sn.Mapper("qam", m, **opts)
        self.rg_mapper = sn.ResourceGridMapper(self.resource_grid, **opts)
        self.demapper = sn.Demapper("app", "qam", m, **opts)
        sm = sn.StreamManagement(np.ones((1, 1), dtype=int), 1)
        self.ls_estimator = sn.LSChannelEstimator(self.resource_grid, interpolation_type="nn", **opts)
        self.equalizer = sn.LMMSEEqualizer(self.resource_grid, sm, **opts)

        # Antennas: the UE sends with one vertically polarized omni element; the base station receives with
        # num_rx_ant elements (one dual-polarized ±45° element per pair, 38.901 pattern; one vertical for Nr=1).
        fc = cfg.carrier_frequency_hz
        self.ut_array = sn.PanelArray(
            num_rows_per_panel=1, num_cols_per_panel=1, polarization="single", polarization_type="V",
            antenna_pattern="omni", carrier_frequency=fc, **opts,
        )
        if cfg.num_rx_ant == 1:
            bs = {"num_cols_per_panel": 1, "polarization": "single", "polarization_type": "V"}
        else:
            bs = {"num_cols_per_panel": cfg.num_rx_ant // 2, "polarization": "dual", "polarization_type": "cross"}
        self.bs_array = sn.PanelArray(
            num_rows_per_panel=1, antenna_pattern="38.901", carrier_frequency=fc, **bs, **opts
        )
        self._frequencies = sn.subcarrier_frequencies(F, cfg.subcarrier_spacing_hz, **opts)
        self._sampling_frequency = 1.0 / self.resource_grid.ofdm_symbol_duration
        # N0 = ebno_factor / (Eb/N0 linear): Sionna's ebnodb2no at 0 dB (pilot and cyclic-prefix overhead counted).
        self._ebno_factor = float(sn.ebnodb2no(0.0, m, self.k / self.n, self.resource_grid, **opts))

    # ------------------------------------------------------------------ conversions
    def ebno_to_no(self, ebno_db: float | torch.Tensor) -> torch.Tensor:
        """Noise variance per complex RE for an Eb/N0 [dB] (float32 tensor on the link's device)."""
        e = torch.as_tensor(ebno_db, dtype=torch.float32, device=self.device)
        return self._ebno_factor * torch.pow(10.0, -e / 10.0)

    def no_to_ebno(self, no: torch.Tensor) -> torch.Tensor:
        """Eb/N0 [dB] of a noise variance (inverse of :meth:`ebno_to_no`)."""
        return 10.0 * torch.log10(self._ebno_factor / no)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        batch_size: int,
        *,
        seed: int | torch.Generator | None = None,
        split: str = "train",
        ebno_db: float | tuple[float, float] | None = None,
        snr_db: float | tuple[float, float] | None = None,
        speed_group: str | None = None,
        cdl_model: str | None = None,
    ) -> LinkBatch:
        """Simulate ``batch_size`` slots.

        Per frame, uniformly: a CDL profile of the split (``cdl_model`` forces one), an RMS delay spread and a
        UE speed from the split's ranges (``speed_group`` picks the low/medium/high range on either split), a
        travel direction (azimuth uniform in [0, 2π), zenith uniform in [0, π], as Sionna's CDL draws it), and
        the noise level: train split per-RE SNR from ``train_snr_db``, test split Eb/N0 from ``test_ebno_db``;
        ``ebno_db`` or ``snr_db`` (a number or a ``(low, high)`` range) overrides that on either split.

        ``seed``: an int, a ``torch.Generator`` (one int is drawn from it) or ``None`` (fresh entropy); the batch
        records the int in ``.seed``: the same int and options reproduce the batch exactly.
        """
        cfg = self.config
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise TaskError(f"ofdm link option batch_size: must be an int >= 1, got {batch_size!r}")
        if split not in _SPLITS:
            raise TaskError(f"ofdm link option split: must be 'train' or 'test', got {split!r}")
        if ebno_db is not None and snr_db is not None:
            raise TaskError("ofdm link option ebno_db: give ebno_db or snr_db, not both")
        models = (normalize_cdl_model(cdl_model),) if cdl_model is not None else (
            cfg.train_cdl_models if split == "train" else cfg.test_cdl_models
        )
        ds_lo, ds_hi = cfg.train_delay_spread_ns if split == "train" else cfg.test_delay_spread_ns
        v_lo, v_hi = cfg.speed_range(speed_group, split)
        if snr_db is not None:
            noise_kind, (n_lo, n_hi) = "snr", _draw_range("snr_db", snr_db)
        elif ebno_db is not None:
            noise_kind, (n_lo, n_hi) = "ebno", _draw_range("ebno_db", ebno_db)
        elif split == "train":
            noise_kind, (n_lo, n_hi) = "snr", cfg.train_snr_db
        else:
            noise_kind, (n_lo, n_hi) = "ebno", cfg.test_ebno_db

        seed_int = _resolve_seed(seed)
        own_seq, sionna_seq = np.random.SeedSequence([seed_int, SAMPLE_VERSION]).spawn(2)
        own_seed = int(own_seq.generate_state(1, np.uint64)[0] >> np.uint64(1))
        sionna_seed = int(sionna_seq.generate_state(1, np.uint64)[0] >> np.uint64(1))

        B, S, F, Nr = int(batch_size), cfg.num_ofdm_symbols, cfg.num_subcarriers, cfg.num_rx_ant
        dev, f32 = self.device, torch.float32
        with torch.no_grad():
            g = torch.Generator(device=dev)
            g.manual_seed(own_seed)
            # Every draw has a fixed shape whatever the options, so options never shift later streams.
            model_idx = torch.randint(0, len(models), (B,), generator=g, device=dev)
            ds_ns = ds_lo + (ds_hi - ds_lo) * torch.rand(B, generator=g, device=dev, dtype=f32)
            speed = v_lo + (v_hi - v_lo) * torch.rand(B, generator=g, device=dev, dtype=f32)
            phi = 2.0 * math.pi * torch.rand(B, generator=g, device=dev, dtype=f32)
            theta = math.pi * torch.rand(B, generator=g, device=dev, dtype=f32)
            level_db = n_lo + (n_hi - n_lo) * torch.rand(B, generator=g, device=dev, dtype=f32)
            b = torch.randint(0, 2, (B, self.k), generator=g, device=dev).to(f32)
            noise = torch.complex(
                torch.randn((B, Nr, S, F), generator=g, device=dev, dtype=f32),
                torch.randn((B, Nr, S, F), generator=g, device=dev, dtype=f32),
            )
            if noise_kind == "snr":
                snr = level_db
                no = torch.pow(10.0, -snr / 10.0)
                ebno = self.no_to_ebno(no)
            else:
                ebno = level_db
                no = self.ebno_to_no(ebno)
                snr = -10.0 * torch.log10(no)

            velocity = torch.stack(
                [speed * torch.cos(phi) * torch.sin(theta), speed * torch.sin(phi) * torch.sin(theta),
                 speed * torch.cos(theta)],
                dim=-1,
            )
            h = torch.zeros((B, Nr, S, F), dtype=torch.complex64, device=dev)
            with _sionna_rng(dev, sionna_seed):
                for i, letter in enumerate(models):
                    idx = torch.nonzero(model_idx == i).squeeze(-1)
                    if idx.numel():
                        h[idx] = self._channel(letter, velocity[idx], ds_ns[idx])

            c = self.encoder(b)
            symbols = self.mapper(c)
            x = self.rg_mapper(symbols.reshape(B, 1, 1, -1))[:, 0, 0]
            y = h * x[:, None] + torch.sqrt(no / 2.0)[:, None, None, None] * noise

        return LinkBatch(
            y=y.to(torch.complex64), no=no.to(f32), b=b, c=c.to(f32), h=h, x=x.to(torch.complex64),
            snr_db=snr.to(f32), ebno_db=ebno.to(f32), delay_spread_ns=ds_ns, speed_mps=speed,
            cdl_model=tuple(models[int(i)] for i in model_idx.tolist()), split=split, seed=seed_int,
        )

    def _channel(self, letter: str, velocity: torch.Tensor, ds_ns: torch.Tensor) -> torch.Tensor:
        """CDL-``letter`` frequency responses (b, Nr, S, F) for per-frame velocities and delay spreads.

        Sionna's CDL takes one delay spread per instance and only scales the profile's normalized delays by it,
        so the model is built with a delay spread of 1 s (delays come out normalized) and each frame's delays
        are scaled by its own spread before the conversion to the frequency domain.
        """
        sn = _load_sionna()
        cfg = self.config
        model = sn.CDL(
            letter, 1.0, cfg.carrier_frequency_hz, ut_array=self.ut_array, bs_array=self.bs_array,
            direction="uplink", ut_velocity=velocity, precision="single", device=self.device,
        )
        a, tau = model(int(velocity.shape[0]), cfg.num_ofdm_symbols, self._sampling_frequency)
        tau = tau * (ds_ns * 1e-9).reshape(-1, 1, 1, 1)
        h = sn.cir_to_ofdm_channel(self._frequencies, a, tau, normalize=True)  # (b, 1, Nr, 1, 1, S, F)
        return h[:, 0, :, 0, 0]

    # ------------------------------------------------------------------ receiver interface
    def receiver_input(self, batch: LinkBatch) -> torch.Tensor:
        """(B, 2·Nr + 1, S, F) float32: ``Re y`` per antenna, ``Im y`` per antenna, a plane of ``log10(no)``."""
        y = batch.y
        plane = torch.log10(batch.no).reshape(-1, 1, 1, 1).expand(-1, 1, y.shape[2], y.shape[3])
        return torch.cat([y.real, y.imag, plane], dim=1).to(torch.float32)

    def targets(self, batch: LinkBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(bits (B, m, S, F) float32 in {0, 1}, mask (S, F) bool)``: the coded bits per RE; mask True on data REs."""
        return self.codeword_to_grid(batch.c), self.data_mask

    def codeword_to_grid(self, v: torch.Tensor) -> torch.Tensor:
        """(B, n) in codeword order → (B, m, S, F) in grid layout (0 on pilot REs)."""
        cfg, m = self.config, self.bits_per_symbol
        B = v.shape[0]
        if tuple(v.shape[1:]) != (self.n,):
            raise TaskError(f"ofdm link: expected (B, {self.n}) codeword values, got {tuple(v.shape)}")
        grid = torch.zeros((B, m, cfg.num_ofdm_symbols * cfg.num_subcarriers), dtype=v.dtype, device=v.device)
        grid[:, :, self.data_index] = v.reshape(B, -1, m).transpose(1, 2)
        return grid.reshape(B, m, cfg.num_ofdm_symbols, cfg.num_subcarriers)

    def grid_to_codeword(self, llr: torch.Tensor) -> torch.Tensor:
        """(B, m, S, F) grid layout → (B, n) in the order the mapper consumed the coded bits."""
        cfg, m = self.config, self.bits_per_symbol
        shape = (m, cfg.num_ofdm_symbols, cfg.num_subcarriers)
        if llr.dim() != 4 or tuple(llr.shape[1:]) != shape:
            want = f"(B, {m}, {shape[1]}, {shape[2]})"
            raise TaskError(f"ofdm link: expected LLRs of shape {want}, got {list(llr.shape)}")
        B = llr.shape[0]
        return llr.reshape(B, m, -1)[:, :, self.data_index].transpose(1, 2).reshape(B, self.n)

    def decode(self, llr: torch.Tensor, batch: LinkBatch | None = None) -> torch.Tensor:
        """LDPC-decode grid-layout LLRs (B, m, S, F) (logits: positive means bit 1) → info bits (B, k) float32."""
        if batch is not None and llr.shape[0] != len(batch):
            raise TaskError(f"ofdm link: {llr.shape[0]} LLR frames for a batch of {len(batch)}")
        with torch.no_grad():
            flat = self.grid_to_codeword(llr.detach().to(device=self.device, dtype=torch.float32))
            if not self._compiled:
                return self._decode_fn(flat)
            chunk = self._decode_chunk = self._decode_chunk or int(flat.shape[0])
            out = []
            for i in range(0, flat.shape[0], chunk):
                part = flat[i : i + chunk]
                rows = part.shape[0]
                if rows < chunk:
                    part = torch.cat([part, part.new_zeros((chunk - rows, self.n))])
                out.append(self._decode_fn(part)[:rows])
            return torch.cat(out)

    @staticmethod
    def errors(batch: LinkBatch, b_hat: torch.Tensor) -> tuple[int, int]:
        """``(bit_errors, block_errors)`` of decoded info bits against the batch's."""
        if b_hat.shape != batch.b.shape:
            raise TaskError(f"ofdm link: decoded bits {tuple(b_hat.shape)} vs batch {tuple(batch.b.shape)}")
        wrong = b_hat.to(batch.b.device) != batch.b
        return int(wrong.sum()), int(wrong.any(dim=1).sum())

    # ------------------------------------------------------------------ baselines
    def ls_lmmse_llr(self, batch: LinkBatch) -> torch.Tensor:
        """Classical receiver: LS estimates at the pilots, nearest-neighbour interpolation, LMMSE, APP demapping."""
        with torch.no_grad():
            y = batch.y[:, None]
            h_hat, err_var = self.ls_estimator(y, batch.no)
            x_hat, no_eff = self.equalizer(y, h_hat, err_var, batch.no)
            return self._demap(x_hat, no_eff)

    def perfect_csi_llr(self, batch: LinkBatch) -> torch.Tensor:
        """Genie receiver: the true channel, LMMSE equalization, APP demapping."""
        with torch.no_grad():
            y = batch.y[:, None]
            h = batch.h[:, None, :, None, None]
            err_var = torch.zeros((), dtype=torch.float32, device=self.device)
            x_hat, no_eff = self.equalizer(y, h, err_var, batch.no)
            return self._demap(x_hat, no_eff)

    def _demap(self, x_hat: torch.Tensor, no_eff: torch.Tensor) -> torch.Tensor:
        llr = self.demapper(x_hat, no_eff)  # (B, 1, 1, n), codeword order
        return self.codeword_to_grid(llr.reshape(llr.shape[0], self.n).to(torch.float32))
