"""`vitnas latency measure | profile | verify`: argument parsing and printing only.

`register` adds the verb to the `vitnas` command's subparsers; each handler calls one
library function of `vitnas.latency`. Errors are `VitnasError`s, which the `vitnas`
command prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from vitnas.errors import LatencyError
from vitnas.space.arch_files import read_archs
from vitnas.util.dtypes import dtype_arg

__all__ = ["register", "read_archs"]


def register(subparsers: Any) -> None:
    """Adds ``latency`` and its sub-verbs to the `vitnas` command's subparsers."""
    latency = subparsers.add_parser("latency", help="measure latency, build device profiles, verify predictions")
    verbs = latency.add_subparsers(dest="latency_verb", required=True, metavar="{measure,profile,verify}")

    measure = verbs.add_parser("measure", help="time archs' standalone models, or an export folder's model, on a device")
    source = measure.add_mutually_exclusive_group(required=True)
    source.add_argument("--space", help="shipped space name or YAML path (with --arch)")
    source.add_argument("--model", metavar="DIR", help="an export folder (vitnas export --out): time its model")
    measure.add_argument("--point", metavar="NAME",
                         help="with --model of an elastic bundle: the operating point to time (default: its first)")
    measure.add_argument("--arch", nargs="+", metavar="ARCH.json",
                         help="with --space: arch files (a JSON arch, a JSON list or JSON lines), "
                              "or 'largest' / 'smallest'")
    _add_target(measure, batch=1)
    _add_timing(measure, warmup=10, repeats=50)
    measure.add_argument("--throughput", action="store_true",
                         help="report images/s with batches back to back instead of per-request latency")
    measure.set_defaults(handler=_measure)

    profile = verbs.add_parser("profile", help="measure sampled archs, fit a latency predictor, save the profile")
    profile.add_argument("--space", required=True, help="shipped space name or YAML path")
    _add_target(profile, batch=1)
    profile.add_argument("--samples", type=int, default=200, help="archs to measure (default: 200)")
    profile.add_argument("--holdout", type=float, default=0.2, help="fraction held out to score the fit (default: 0.2)")
    profile.add_argument("--seed", type=int, default=0)
    _add_timing(profile, warmup=10, repeats=30)
    profile.add_argument("--rounds", type=int, default=3,
                         help="interleaved passes over the archs that share the repeats (default: 3)")
    profile.add_argument("--out", default=None, metavar="PROFILE.json",
                         help="file or directory (default: profile_<device>_<space>_<dtype>_b<batch>.json here)")
    profile.set_defaults(handler=_profile)

    verify = verbs.add_parser("verify", help="measure archs for real and compare with a profile's predictions")
    verify.add_argument("--profile", required=True, metavar="PROFILE.json")
    verify.add_argument("--arch", required=True, nargs="+", metavar="ARCH.json",
                        help="arch files (a JSON arch, a JSON list or JSON lines), or 'largest' / 'smallest'")
    verify.add_argument("--device", default=None, help="default: the profile's kind of device")
    verify.add_argument("--warmup", type=int, default=None, help="default: the profile's")
    verify.add_argument("--repeats", type=int, default=None, help="default: the profile's")
    verify.add_argument("--no-check-device", action="store_true", help="measure even on a device of another name")
    verify.set_defaults(handler=_verify)


def _add_target(parser: argparse.ArgumentParser, batch: int) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--batch", type=int, default=batch, help=f"images per forward pass (default: {batch})")
    parser.add_argument("--dtype", default="fp32", type=dtype_arg, help="fp32, bf16 or fp16 (or torch's names; default: fp32)")


def _add_timing(parser: argparse.ArgumentParser, warmup: int, repeats: int) -> None:
    parser.add_argument("--warmup", type=int, default=warmup, help=f"untimed calls first (default: {warmup})")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed calls (default: {repeats})")
    parser.add_argument("--compile", action="store_true", help="time torch.compile'd models")
    parser.add_argument("--channels-last", action="store_true", help="NHWC input and convolution weights")


def _measure(args: argparse.Namespace) -> int:
    if args.model is not None:
        return _measure_folder(args)
    if args.point is not None:
        raise LatencyError("latency measure: --point names an elastic bundle's operating point; it goes with --model")
    if not args.arch:
        raise LatencyError("latency measure: --space needs --arch (arch files, or largest / smallest)")
    from vitnas.latency.measure import measure_arch, throughput_arch
    from vitnas.space.space import load_space

    space = load_space(args.space)
    for arch in read_archs(args.arch, space):
        if args.throughput:
            speed = throughput_arch(space, arch, args.device, args.batch, args.dtype, warmup=args.warmup,
                                    rounds=args.repeats, compile=args.compile, channels_last=args.channels_last)
            print(f"{speed:.1f} images/s at batch {args.batch} {args.dtype} on {args.device}  {arch}")
        else:
            measured = measure_arch(space, arch, args.device, args.batch, args.dtype, warmup=args.warmup,
                                    repeats=args.repeats, compile=args.compile, channels_last=args.channels_last)
            print(f"{measured}  {arch}")
    return 0


def _measure_folder(args: argparse.Namespace) -> int:
    """`--model DIR`: the export folder's model (`vitnas.load`) at the input size its config.json records."""
    from pathlib import Path

    if args.arch:
        raise LatencyError("latency measure: --arch goes with --space; an export folder (--model) holds one model")
    from vitnas.export.load import load, point_of
    from vitnas.export.schema import read_config
    from vitnas.latency.measure import measure, throughput

    folder = Path(args.model)
    image_size = read_config(folder).get("input", {}).get("image_size")
    model = load(folder, point=args.point)
    chosen = point_of(model, args.point)
    label = folder if chosen is None else f"{folder} point {chosen}"
    settings = dict(warmup=args.warmup, compile=args.compile, channels_last=args.channels_last, img_size=image_size)
    if args.throughput:
        speed = throughput(model, args.device, args.batch, args.dtype, rounds=args.repeats, **settings)
        print(f"{speed:.1f} images/s at batch {args.batch} {args.dtype} on {args.device}  {label}")
    else:
        print(f"{measure(model, args.device, args.batch, args.dtype, repeats=args.repeats, **settings)}  {label}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from vitnas.latency.profile import build_profile

    profile = build_profile(
        args.space, device=args.device, batch=args.batch, dtype=args.dtype, samples=args.samples, seed=args.seed,
        holdout_fraction=args.holdout, warmup=args.warmup, repeats=args.repeats, rounds=args.rounds,
        compile=args.compile,
        channels_last=args.channels_last, progress=True,
    )
    print(profile)
    print(f"saved to {profile.save(args.out)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from vitnas.latency.profile import load_profile
    from vitnas.latency.verify import format_verification, verify

    profile = load_profile(args.profile, check_device=not args.no_check_device)
    archs = read_archs(args.arch, profile.space)
    results = verify(profile, profile.space, archs, device=args.device, warmup=args.warmup, repeats=args.repeats,
                     check_device=not args.no_check_device, progress=True)
    print(format_verification(results))
    return 0
