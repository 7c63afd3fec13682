"""`specllm` command line: the user-facing entry points that are not DVC stages.

Every subcommand turns InputError into a one-paragraph message and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from specllm import paths
from specllm.errors import InputError


def _cmd_check(args: argparse.Namespace) -> int:
    from specllm import config, envkey

    flat = config.load(args.params)
    print(f"{args.params or 'params.yaml'}: {len(flat)} keys valid (profile {flat['profile']})")
    # the stages' environment dependency follows this environment (make reproduce runs check first)
    envkey.main()
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from specllm import config

    changed = config.apply_profile(args.name, args.params)
    print(f"profile {args.name}: " + (f"set {', '.join(changed)}" if changed else "params.yaml already matches"))
    flat = config.load(args.params)
    kept = ", ".join(f"{key}: {flat[key]}" for key in config.USER_CHOICES)
    print(f"profile {args.name}: kept {kept} (profiles never change it)")
    return 0


def _cmd_import_sdss17(args: argparse.Namespace) -> int:
    from specllm.data import sdss17

    return sdss17.import_cli(Path(args.path), Path(args.out) if args.out else None)


def _cmd_fetch_dr16(args: argparse.Namespace) -> int:
    from specllm.data import dr16

    return dr16.fetch_cli(args.n, args.bins, Path(args.out) if args.out else None, seed=args.seed, pool=args.pool,
                          min_interval=args.min_interval, skyserver_url=args.skyserver_url, sas_url=args.sas_url)


def _cmd_preflight(args: argparse.Namespace) -> int:
    from specllm import preflight

    return preflight.cli(args)


def _root() -> Path:
    from specllm import paths

    return paths.ROOT


def _cmd_verify(args: argparse.Namespace) -> int:
    from specllm import verify

    return verify.verify(_root(), repro=not args.no_repro, pull=args.pull, only_failures=args.failures_only,
                         strict=args.strict)


def _cmd_freeze(args: argparse.Namespace) -> int:
    from specllm import verify

    out = verify.freeze(_root())
    print(f"froze {out.relative_to(_root())}: review `git diff` and commit it")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from specllm import compare

    print(compare.render(_root()))
    return 0


def _cmd_where(args: argparse.Namespace) -> int:
    from specllm.report import where

    try:
        print("\n\n".join(where.lookup(args.names, _root(), args.profile)))
    except KeyError as err:
        print(f"error: {err.args[0]} is not a generated macro, figure:<stem> or table:<stem> ({paths.rel(paths.PAPER)}"
              f"/generated*/values.json, {paths.rel(paths.REPORTED)}/*.json, specllm.artifacts.REGISTRY)", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specllm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate params.yaml (types, ranges, unknown keys)")
    p.add_argument("--params", type=Path, default=None, help="parameter file (default: ./params.yaml)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("profile", help="switch params.yaml to a profile (smoke, small, open, paper), keeping comments")
    p.add_argument("name")
    p.add_argument("--params", type=Path, default=None, help="parameter file (default: ./params.yaml)")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("preflight", help="check this machine for a profile in seconds (GPU, bf16, driver, memory, "
                                         "disk, weights, data); exit 2 with what to do instead")
    from specllm.preflight import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_preflight)

    p = sub.add_parser("verify", help="rerun (or restore) the pipeline and compare every reported value with "
                                      f"{paths.rel(paths.REPORTED)}/<profile>.json; exit 1 on any mismatch")
    p.add_argument("--no-repro", action="store_true", help="compare the current outputs without `dvc repro`")
    p.add_argument("--pull", action="store_true", help="`dvc repro --pull`: restore from the DVC remote")
    p.add_argument("--failures-only", action="store_true", help="print only the rows that fail")
    p.add_argument("--strict", action="store_true", help="refuse values that are only consistent at the claim "
                   "level after a training diverged (specllm.retrained): identical or within tolerance only")
    p.set_defaults(func=_cmd_verify)
    p = sub.add_parser("freeze", help=f"write {paths.rel(paths.REPORTED)}/<profile>.json from a clean pipeline (deliberately)")
    p.set_defaults(func=_cmd_freeze)
    p = sub.add_parser("compare", help=f"this run's values beside the original paper's ({paths.rel(paths.REFERENCE)}/)")
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser("where", help="trace a macro (e.g. StabilityMeanPss), figure:<stem> or table:<stem> to its "
                                     "stage, file, key, params, code and frozen value")
    p.add_argument("names", nargs="+", help="macro names (with or without the backslash), figure:<stem>, table:<stem>")
    p.add_argument("--profile", default=None, help="frozen values of this profile (default: params.yaml's)")
    p.set_defaults(func=_cmd_where)

    data = sub.add_parser("data", help="import real data sources").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("import-sdss17", help="validate and import the Kaggle 'Stellar Classification Dataset - SDSS17' CSV")
    p.add_argument("path", help="star_classification.csv (the full file, or a sample with a warning)")
    p.add_argument("--out", default=None, help=f"output folder (default: {paths.rel(paths.SDSS17)})")
    p.set_defaults(func=_cmd_import_sdss17)
    p = data.add_parser("fetch-dr16",
                        help="download SDSS DR16 galaxy spectra for the paper profile (resumable, checksummed)")
    p.add_argument("--n", type=int, default=None,
                   help="galaxies to fetch (default: n_train+n_val+n_test of the paper profile)")
    p.add_argument("--bins", type=int, default=None, help="equal-frequency redshift bins (default: data.z_bins)")
    p.add_argument("--out", default=None, help=f"output folder (default: {paths.rel(paths.DR16)})")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: seed in params.yaml)")
    p.add_argument("--pool", type=int, default=None, help="SkyServer rows to sample from (TOP; default: 10 x n)")
    p.add_argument("--min-interval", type=float, default=0.5, help="minimum seconds between requests (default: 0.5)")
    p.add_argument("--skyserver-url", default=None, help="SkyServer SqlSearch endpoint (default: the DR16 SkyServer)")
    p.add_argument("--sas-url", default=None, help="SAS base URL (default: https://data.sdss.org/sas/dr16)")
    p.set_defaults(func=_cmd_fetch_dr16)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
