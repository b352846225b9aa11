"""Time of the seed preset's neural receiver on this machine: per 1k training steps and per BLER point.

The seed's receiver (Table I: 128 channels, 8 residual blocks, 3×3) on the seed's link (14 × 132 grid, 64-QAM,
LDPC rate 0.5, SIMO 1×2), trained on batches of 128 frames (the seed's batch size). Measured here, in one run:

* one training step (simulate a batch + forward + BCE + backward + Adam): ``--steps`` timed steps after one
  untimed warm-up step, scaled to 1,000 steps;
* one BLER point: per batch of ``--eval-batch`` frames, the link simulation, the receiver's inference, LS+LMMSE
  and perfect CSI, and the LDPC decoding of each, scaled to the study's 256 frames and to 2,000 frames.

The small preset (the quick study's 96 × 2 receiver on its 14 × 24 grid, 16 frames per step) is measured the same
way beside it. Wall-clock and process CPU seconds are both printed; on a machine shared with other jobs the wall
times grow, the CPU times much less. Run::

    OMP_NUM_THREADS=1 .venv/bin/python bench/receiver_seed_timing.py            # ~10 min on 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python bench/receiver_seed_timing.py --steps 1  # quicker, rougher

Results: docs/benchmarks.md (*Neural receiver: time of the seed preset*) and docs/tasks_receiver.md.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def measure(preset: str, channels: int, blocks: int, batch: int, steps: int, eval_batch: int,
            threads: int) -> dict[str, float]:
    from hwnas.nn import macs
    from hwnas.tasks.ofdm import OfdmLink, deeprx
    from hwnas.tasks.ofdm.train import train_batch_seed

    torch.set_num_threads(threads)
    link = OfdmLink(preset)
    model = deeprx(link, channels=channels, blocks=blocks, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mask = link.data_mask

    def step(t: int) -> None:
        b = link.sample(batch, seed=train_batch_seed(0, t), split="train")
        llr = model(link.receiver_input(b))
        bits = link.targets(b)[0]
        loss = F.binary_cross_entropy_with_logits(llr[:, :, mask], bits[:, :, mask])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(0)  # warm-up: allocations, Sionna's first-call set-up
    start = _clock()
    for t in range(1, steps + 1):
        step(t)
    wall, cpu = _since(start)
    out = {"macs_per_frame": float(macs(model)), "step_wall": wall / steps, "step_cpu": cpu / steps}

    model.eval()
    parts = {"simulate": 0.0, "infer": 0.0, "decode_nn": 0.0, "ls_lmmse": 0.0, "decode_ls": 0.0,
             "perfect_csi": 0.0, "decode_pcsi": 0.0}
    cpu_total = time.process_time()
    t0 = time.perf_counter()
    b = link.sample(eval_batch, seed=1, split="test", ebno_db=6.0, speed_group="medium")
    parts["simulate"] = time.perf_counter() - t0
    with torch.no_grad():
        t0 = time.perf_counter()
        llr = model(link.receiver_input(b))
        parts["infer"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    link.decode(llr, b)
    parts["decode_nn"] = time.perf_counter() - t0
    for name, fn, dec in (("ls_lmmse", link.ls_lmmse_llr, "decode_ls"),
                          ("perfect_csi", link.perfect_csi_llr, "decode_pcsi")):
        t0 = time.perf_counter()
        other = fn(b)
        parts[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        link.decode(other, b)
        parts[dec] = time.perf_counter() - t0
    out["batch_cpu"] = time.process_time() - cpu_total
    out.update({f"batch_{k}": v for k, v in parts.items()})
    out["batch_wall"] = sum(parts.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2, help="timed training steps per preset (default 2)")
    ap.add_argument("--eval-batch", type=int, default=128, help="frames per evaluation batch (default 128)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2: both cores)")
    ap.add_argument("--skip-seed", action="store_true", help="only the small preset (a quick check)")
    args = ap.parse_args()
    rows = [("small", 96, 2, 16)] + ([] if args.skip_seed else [("seed", 128, 8, 128)])
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} timed steps, evaluation batch "
          f"{args.eval_batch} frames")
    print("| preset | receiver | frames/step | GMAC/frame | s/step wall | s/step CPU | 1k steps wall | "
          "s/batch wall | s/batch CPU | of which LDPC (3 decoders) | BLER point 256 frames | 2,000 frames |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for preset, ch, bl, batch in rows:
        r = measure(preset, ch, bl, batch, args.steps, args.eval_batch, args.threads)
        per_frame = r["batch_wall"] / args.eval_batch
        ldpc = r["batch_decode_nn"] + r["batch_decode_ls"] + r["batch_decode_pcsi"]
        print(f"| {preset} | {ch} ch × {bl} blocks | {batch} | {r['macs_per_frame'] / 1e9:.3f} | "
              f"{r['step_wall']:.2f} | {r['step_cpu']:.2f} | {r['step_wall'] * 1000 / 3600:.2f} h | "
              f"{r['batch_wall']:.1f} | {r['batch_cpu']:.1f} | {ldpc:.1f} s | {per_frame * 256 / 60:.1f} min | "
              f"{per_frame * 2000 / 60:.1f} min |")
        print("    batch parts [s]: " + ", ".join(f"{k[6:]} {v:.2f}" for k, v in r.items()
                                                if k.startswith("batch_") and k not in ("batch_wall", "batch_cpu")))


if __name__ == "__main__":
    main()
