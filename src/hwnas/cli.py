"""The ``hwnas`` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from hwnas.demo import run_demo

    run_demo(epochs=args.epochs, beta=args.beta, gamma=args.gamma, seed=args.seed, progress=not args.quiet)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hwnas`` command."""
    args = build_parser().parse_args(argv)
    if getattr(args, "epochs", 1) < 1:
        print("hwnas: error: --epochs must be >= 1", file=sys.stderr)
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
