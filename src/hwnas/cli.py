"""The ``hwnas`` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from hwnas.demo import run_demo

    run_demo(epochs=args.epochs, beta=args.beta, gamma=args.gamma, seed=args.seed, progress=not args.quiet)
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from hwnas.tasks import TaskError, get_task, task_names

    if args.name is None:
        for name in task_names():
            task = get_task(name)
            print(f"{name:15s} {task.metric:9s} {task.description}")
        return 0
    try:
        task = get_task(args.name)
    except TaskError as err:
        print(f"hwnas: error: {err}", file=sys.stderr)
        return 2
    print(f"{task.name}: {task.description}\nmetric: {task.metric}   loss: {task.loss}\noptions:")
    for opt, default in task.defaults.items():
        print(f"  {opt:15s} default {default!r:12s} {task.option_docs.get(opt, '')}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from hwnas.tasks.amc import generate_cached

    try:
        data = generate_cached(args.preset, args.per_pair, seed=args.seed, data_dir=args.data_dir,
                               normalization=args.normalization, progress=not args.quiet,
                               workers=args.workers)
    except ValueError as err:
        print(f"hwnas: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(data)} frames of {args.preset!r} ({len(data.classes)} classes, shape {tuple(data.x.shape[1:])}) "
          f"in {args.data_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hwnas`` command."""
    parser = argparse.ArgumentParser(
        prog="hwnas",
        description="Find, quantize, verify and deploy small neural networks for FPGAs and edge devices.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train an HGQ model with learnable per-parameter bit-widths on digits")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--beta", type=float, default=3e-6, help="EBOPs weight in the loss (default 3e-6)")
    demo.add_argument("--gamma", type=float, default=1e-6, help="bit-width L1 weight in the loss (default 1e-6)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)
    tasks = sub.add_parser("tasks", help="list the built-in tasks, or show one task's options")
    tasks.add_argument("name", nargs="?", help="a task name (omit to list all)")
    tasks.set_defaults(func=_tasks)
    gen = sub.add_parser("generate-amc", help="generate a RadioML-like AMC data set into a cache folder")
    gen.add_argument("--preset", default="rml2016", choices=("rml2016", "rml2018"), help="dataset preset")
    gen.add_argument("--per-pair", type=int, default=1000, help="frames per (class, SNR) pair (default 1000)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--data-dir", default="data", help="cache folder (default ./data)")
    gen.add_argument("--normalization", default="unit_power", help="unit_power | rml2016_l1 | none")
    gen.add_argument("--workers", type=int, default=2, help="worker processes (default 2; data do not depend on it)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_generate)
    from hwnas.cli_export import add_export_commands

    add_export_commands(sub)
    from hwnas.cli_search import add_run_commands, add_search_commands

    add_search_commands(sub)
    add_run_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hwnas`` command."""
    args = build_parser().parse_args(argv)
    if getattr(args, "epochs", 1) < 1:
        print("hwnas: error: --epochs must be >= 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
