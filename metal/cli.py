"""The ``metal`` command line.

Each subcommand lives in its own ``_cmd_*`` function registered in :func:`build_parser`, so new
ones (e.g. end-model training) are added without reshaping the command. Errors from bad input
print one readable line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from metal._version import __version__
from metal.errors import MetalError


def _cmd_demo(args: argparse.Namespace) -> int:
    from metal import LabelModel, MajorityVoter
    from metal.data import make_synthetic

    k = args.cardinality
    data = make_synthetic(n=args.n, m=args.m, cardinality=k, seed=args.seed)
    print(f"metal {__version__} demo: {args.n} rows, {args.m} sources, {k} classes "
          f"(generated, seed {args.seed}); {np.mean(data.L >= 0):.0%} of entries are votes, "
          f"{int((data.unipolar >= 0).sum())} unipolar sources")
    model = LabelModel(cardinality=k, seed=args.seed).fit(data.L)
    learned = model.get_accuracies()
    cond = data.conditional_probs
    correct = np.einsum("iyy,y->i", cond[:, :k, :], data.class_balance)
    voted = ((1 - cond[:, k, :]) * data.class_balance).sum(axis=1)
    true_acc = correct / voted
    print("\nsource  polarity  coverage  accuracy(true)  accuracy(learned)")
    for i in range(args.m):
        pol = "all" if data.unipolar[i] < 0 else f"only {data.unipolar[i]}"
        print(f"{i:>6}  {pol:>8}  {np.mean(data.L[:, i] >= 0):>8.2f}  {true_acc[i]:>14.3f}  "
              f"{learned[i]:>17.3f}")
    mae = np.abs(model.get_conditional_probs() - cond).mean()
    print(f"\nmean |learned - true| over all P(lambda_i = v | Y = y): {mae:.4f}")
    print(f"class balance: true {np.round(data.class_balance, 3).tolist()}, "
          f"learned {np.round(model.class_balance_, 3).tolist()}")
    ours = model.score(data.L, data.Y)["accuracy"]
    mv = MajorityVoter(cardinality=k).score(data.L, data.Y)["accuracy"]
    print(f"label accuracy: LabelModel {ours:.3f} vs majority vote {mv:.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metal", description="Multi-task weak supervision: label models without labels.")
    parser.add_argument("--version", action="version", version=f"metal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser("demo", help="fit a label model on generated data and report",
                          description="Generate a label matrix with known source accuracies, "
                          "fit the label model without labels and compare what it learned.")
    demo.add_argument("--n", type=int, default=20_000, help="rows (default 20000)")
    demo.add_argument("--m", type=int, default=10, help="sources (default 10)")
    demo.add_argument("--cardinality", "-k", type=int, default=3, help="classes (default 3)")
    demo.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except MetalError as exc:
        print(f"metal {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"metal {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
