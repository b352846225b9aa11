"""``hwnas receiver study`` (PTQ study, :mod:`hwnas.tasks.ofdm.study`) and ``search`` (:mod:`hwnas.tasks.ofdm.search`).

Exit status: 0 success, 2 bad input (an option out of range, an output folder holding files hwnas did not write,
a float receiver in the folder trained with other options), 130 interrupted (the checkpoints written so far are
kept: the next run resumes). Every error is one line naming the option.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from hwnas.cli_util import one_line_errors

__all__ = ["add_receiver_commands"]


def _number(name: str, text: str, kind: type) -> Any:
    from hwnas.tasks.ofdm.study import StudyError

    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise StudyError(f"option {name} (--{name.replace('_', '-')}): expected {what}, got {text!r}") from None


def _parts(text: str) -> list[str]:
    """The non-empty items of a comma list, stripped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _yes_no(name: str, text: str) -> tuple[bool, ...]:
    words = {"no": False, "yes": True, "false": False, "true": True}
    parts = [part.lower() for part in _parts(text)]
    if not parts or any(part not in words for part in parts):
        from hwnas.tasks.ofdm.study import StudyError

        raise StudyError(f"search option {name} (--{name.replace('_', '-')}): no, yes or no,yes, got {text!r}")
    return tuple(words[part] for part in parts)


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "int": lambda name, text: _number(name, text, int),
    "float": lambda name, text: _number(name, text, float),
    "text": lambda name, text: text,
    "ints": lambda name, text: tuple(_number(name, part, int) for part in _parts(text)),
    "words": lambda name, text: tuple(_parts(text)),
    "yes_no": _yes_no,
    "paths": lambda name, text: () if text.strip() == "none" else tuple(_parts(text)),
}
"""How a kind of option is read from its argparse string: ``(name, text) -> value`` (a bad one: a StudyError)."""


def _given(args: argparse.Namespace, table: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, Any]:
    """The options given on the command line, each read by its kind's parser.

    ``table`` lists (kind, names) pairs in order: the first bad option in it is the one reported.
    """
    given: dict[str, Any] = {}
    for kind, names in table:
        for name in names:
            text = getattr(args, name)
            if text is not None:
                given[name] = _PARSERS[kind](name, text)
    return given


_STUDY_OPTIONS = (
    ("int", ("channels", "blocks", "steps", "batch_size", "frames", "eval_batch", "seed", "val_frames",
             "calibration_frames", "qat_steps", "threads")),
    ("float", ("lr", "qat_lr", "weight_decay", "target_bler")),
    ("text", ("preset", "lr_schedule", "qat_kind", "ebno")),
    ("words", ("groups", "variants")),
)

_SEARCH_OPTIONS = (
    ("int", ("trials", "population", "steps", "batch_size", "input_bits", "bias_bits", "select", "verify_frames",
             "val_frames", "frames", "eval_batch", "seed", "threads")),
    ("float", ("lr", "max_bops", "target_bler")),
    ("ints", ("channels", "blocks", "weight_bits", "act_bits")),
    ("text", ("preset", "sampler", "study", "ebno")),
    ("words", ("groups",)),
    ("yes_no", ("separable",)),
    ("paths", ("verify_paths",)),
)


def _study(args: argparse.Namespace) -> int:
    from hwnas.tasks.ofdm.study import StudyOptions, run_study

    options = StudyOptions.from_dict(_given(args, _STUDY_OPTIONS))
    out = args.out or f"runs/receiver-{options.preset}"

    def say(line: str) -> None:
        if not args.quiet:  # a status line (hwnas.cli_util.say: stdout, above a progress bar)
            from hwnas.cli_util import say as status

            status(f"[receiver] {line}")

    result = run_study(options, out, progress=say, bars=not args.quiet)
    print(f"study: {result.out / 'index.html'} ({result.seconds['total']:.0f} s)")
    for c in result.claims:
        verdict = {True: "holds", False: "does not hold", None: "undecided"}[c["holds"]]
        print(f"  {c['group']:6s} {c['claim']}: {verdict} ({c['evidence']})")
    return 0


def _search(args: argparse.Namespace) -> int:
    from hwnas.tasks.ofdm.search import ReceiverSearchOptions, run_search

    options = ReceiverSearchOptions.from_dict(_given(args, _SEARCH_OPTIONS))
    out = args.out or "runs/receiver-search"

    def say(line: str) -> None:
        if not args.quiet:
            from hwnas.cli_util import say as status

            status(f"[receiver search] {line}")

    result = run_search(options, out, progress=say, bars=not args.quiet)
    print(f"search: {result.out / 'index.html'} ({result.seconds['total']:.0f} s); front of {len(result.front)}:")
    for r in result.front:
        print(f"  trial {r['number']:3d}  BMD rate {r['bmd_rate']:.4f}  {r['bops'] / 1e9:8.3f} GBOPs/frame  "
              f"{r['channels']} ch × {r['blocks']} blocks: {r['bits']}  ({r['model']})")
    return 0


def _add_curve_options(p: argparse.ArgumentParser, seed_help: str) -> None:
    """The BLER-curve, seed, thread and progress options ``receiver study`` and ``receiver search`` share."""
    p.add_argument("--ebno", help="Eb/N0 points: start:stop:step or a comma list (default 0:10:2)")
    p.add_argument("--groups", help="comma list of speed groups (default low,medium,high)")
    p.add_argument("--frames", help="frames per Eb/N0 point and group (default 256)")
    p.add_argument("--eval-batch", dest="eval_batch", help="frames per simulated evaluation batch (default 128)")
    p.add_argument("--target-bler", dest="target_bler", help="BLER of the gap table (default 0.1)")
    p.add_argument("--seed", help=seed_help)
    p.add_argument("--threads", help="torch threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress lines or bars")


def add_receiver_commands(sub: Any) -> None:
    """Register ``receiver`` (with ``receiver study``) on the ``hwnas`` sub-command parser."""
    rx = sub.add_parser("receiver", help="neural OFDM receiver (seed 002): the PTQ study and the receiver search")
    one_line_errors(rx)
    rsub = rx.add_subparsers(dest="receiver_command", required=True)
    p = rsub.add_parser("study", help="train a DeepRx-style receiver, quantize it (PTQ, QAT), BLER curves vs "
                        "LS+LMMSE and perfect CSI per speed group, gap and size tables, index.html")
    one_line_errors(p)
    p.add_argument("--preset", help="link preset: small (default; quick) or seed (the paper's link, slow decoding)")
    p.add_argument("--out", help="output folder (default runs/receiver-<preset>); a second run resumes from the "
                   "float receiver it holds")
    p.add_argument("--steps", help="training steps of the float receiver (default 8000)")
    p.add_argument("--batch-size", dest="batch_size", help="frames per training step (default: small 16, seed 128)")
    p.add_argument("--channels", help="receiver width (default: small 96, seed 128)")
    p.add_argument("--blocks", help="residual blocks (default: small 2, seed 8)")
    p.add_argument("--lr", help="Adam learning rate (default 1e-3)")
    p.add_argument("--lr-schedule", dest="lr_schedule", help="constant (default) or cosine")
    p.add_argument("--weight-decay", dest="weight_decay", help="L2 coefficient (default 0)")
    p.add_argument("--val-frames", dest="val_frames", help="validation frames (default 256)")
    p.add_argument("--calibration-frames", dest="calibration_frames",
                   help="frames calibrating the activation ranges of int8-channel-act8 (default 256)")
    p.add_argument("--qat-steps", dest="qat_steps", help="QAT int4 fine-tuning steps (default 300; 0: none)")
    p.add_argument("--qat-kind", dest="qat_kind", help="QAT int4 weights: fixed (power-of-two scales, default) or "
                   "scaled")
    p.add_argument("--qat-lr", dest="qat_lr", help="QAT learning rate (default 1e-4)")
    p.add_argument("--variants", help="comma list of PTQ variants (default all: fp16, int8-tensor, int8-channel, "
                   "int4-tensor, int4-channel, int8-channel-act8)")
    _add_curve_options(p, seed_help="seed of every random draw (default 0)")
    p.set_defaults(func=_study)

    p = rsub.add_parser(
        "search", help="search the receiver's width, depth and per-layer bit-widths (NSGA-II: validation BMD rate "
        "vs BOPs), BLER curves of front models beside LS+LMMSE, perfect CSI and a study's receivers")
    one_line_errors(p)
    p.add_argument("--study", help="a `hwnas receiver study` folder: warm start from its float receiver, same "
                   "validation and evaluation frames, its curves on the plots")
    p.add_argument("--preset", help="link preset (default small; with --study: the study's)")
    p.add_argument("--out", help="output folder (default runs/receiver-search); a second run resumes the search")
    p.add_argument("--trials", help="finished trials to reach (default 12)")
    p.add_argument("--sampler", help="nsga2 (default), tpe or random")
    p.add_argument("--population", help="NSGA-II population (default 6)")
    p.add_argument("--steps", help="training steps per trial (default 300)")
    p.add_argument("--batch-size", dest="batch_size", help="frames per training step (default 16)")
    p.add_argument("--lr", help="Adam learning rate (default 1e-3 from scratch, 1e-4 with --study)")
    p.add_argument("--channels", help="comma list of widths to search (default 32,64,96; --study: its width)")
    p.add_argument("--blocks", help="comma list of block counts to search (default 1,2; --study: its depth)")
    p.add_argument("--separable", help="block kinds: no (full 3x3 convolutions, default), yes (depthwise-separable) "
                   "or no,yes (searched); --study: its receiver's")
    p.add_argument("--weight-bits", dest="weight_bits", help="comma list of weight widths (default 3,4,5,6,8)")
    p.add_argument("--act-bits", dest="act_bits", help="comma list of activation widths (default 4,6,8)")
    p.add_argument("--input-bits", dest="input_bits", help="receiver input width (default 10)")
    p.add_argument("--bias-bits", dest="bias_bits", help="bias width (default 16)")
    p.add_argument("--max-bops", dest="max_bops", help="constraint: BOPs per frame at most this")
    p.add_argument("--select", help="front models that get BLER curves (default 3)")
    p.add_argument("--verify-paths", dest="verify_paths", help="comma list of export paths the selected models are "
                   "verified on (default reference,qonnx; none: no verification)")
    p.add_argument("--verify-frames", dest="verify_frames", help="frames per verification (default 2)")
    p.add_argument("--val-frames", dest="val_frames", help="validation frames (default 256)")
    _add_curve_options(p, seed_help="seed of the sampler, the trials and the frames (default 0)")
    p.set_defaults(func=_search)
