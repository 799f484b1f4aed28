"""The `zsg` command line.

    zsg prepare [NAME ...] [--force]   fetch, verify and convert assets (default: all but on-demand)
    zsg prepare --list                 each asset, its size, license and whether it is ready
    zsg split --out DIR [--split-seed S ...] the held-out split of the default pool as JSONL + report
    zsg embed FILE --out X.npy         MiniLM embeddings of any supported data file, cached
    zsg arrange --train F --test F --method M --out F [--features minilm|hidden|gradient --model PATH]
                                       order anyone's SFT data for a test set (every method of the paper)
    zsg train [--profile cpu] [--arrangement nft] [--set lr=3e-4 ...]
                                       one run: train in the arranged order, evaluate densely, store
    zsg plan [--profile cpu] [--chapters 04_similarity ...] [--runs] [--train [--workers N] [--ray]]
                                       the book's runs before any trains: stored or not, predicted cost
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _prepare(args: argparse.Namespace) -> int:
    from . import assets

    if args.list:
        rows = assets.listing()
        print(f"{'asset':<14} {'download':>9}  {'ready':<7}  {'license':<19} description")
        for r in rows:
            extra = "" if r["default"] else " [on demand: zsg prepare " + r["name"] + "]"
            status = "yes" if r["ready"] else "DAMAGED" if r["damaged"] else "no"
            print(f"{r['name']:<14} {r['size_mb']:>6.0f} MB  {status:<7}  {r['license']:<19} {r['description']}{extra}")
            if r["damaged"]:
                print(f"  damaged since conversion: {', '.join(r['damaged'])}; run `zsg prepare {r['name']}`")
        print(f"cache: {assets.cache_dir()}")
        return 0
    names = args.names or [n for n, a in assets.ASSETS.items() if a.default]
    for name in names:
        assets.prepare(name, force=args.force)
    return 0


def _split(args: argparse.Namespace) -> int:
    from .config import PARAMETERS, run_config
    from .data import DataError
    from .export import check_writable
    from .split import SPLIT_MARKER, is_previous_split, load_split

    config = run_config(model=args.model, **{n: getattr(args, n) for n, p in PARAMETERS.items() if p.section == "split"}).split
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; --out is a folder for train.jsonl, test.jsonl and report.csv")
    if out.exists() and any(out.iterdir()):
        if not is_previous_split(out):  # --force replaces zsg's own split, never a folder of the user's
            raise DataError(f"{out} exists and is not empty, and is not a folder zsg split wrote (no {SPLIT_MARKER}); "
                            "choose another --out: --force replaces only a previous split")
        if not args.force:
            raise DataError(f"{out} exists and is not empty; pass --force to overwrite its train.jsonl, test.jsonl "
                            "and report.csv")
    check_writable(out / "train.jsonl")
    split = load_split(config, args.model)
    out.mkdir(parents=True, exist_ok=True)
    split.save(out)
    print(json.dumps(split.summary(), indent=1))
    print(f"wrote {out}/train.jsonl, test.jsonl, report.csv")
    return 0


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import load_records
    from .embed import Encoder, embed_records
    from .export import check_out
    from .util import atomic_file

    out = check_out(args.out, "npy", args.force, inputs=(args.file,))
    records = load_records(args.file)
    encoder = Encoder(processes=args.processes, precision=args.embed_precision)
    vectors = embed_records(records, args.text, encoder)
    with atomic_file(out, "wb") as f:
        np.save(f, vectors)
    print(f"{len(records)} records -> {out} {vectors.shape}: encoded {encoder.n_encoded} new texts, "
          f"the rest came from the cache in {encoder.folder}")
    return 0


def _arrange(args: argparse.Namespace) -> int:
    from .data import DataError
    from .export import arrange_file
    from .features import LMSource
    from .precision import resolve

    source = None
    if args.features != "minilm":
        source = LMSource(args.model or LMSource.model, args.frozen_layers, resolve(args.precision), None, args.lr, args.batch_size)
    elif args.model is not None:
        raise DataError("--model is the LM of --features hidden / gradient; minilm embeds with the paper's "
                        "sentence encoder")
    arrangement = arrange_file(args.train, args.test, args.out, args.method, args.tma_budget, args.arrangement_seed,
                               tuple(args.rounds) if args.rounds else None, args.embed_text, args.format,
                               args.allow_overlap, args.force, args.processes, args.features, args.test_view, source,
                               args.embed_precision)
    print(json.dumps(arrangement.summary(), indent=1))
    print(f"wrote {len(arrangement.order)} arranged records to {args.out} ({args.format}); keep this order when "
          "training: no shuffling (see README)")
    return 0


def _add_processes(p: argparse.ArgumentParser) -> None:
    """`--processes` and `--embed-precision`, for the commands that embed (zsg embed, zsg arrange)."""
    from .embed import PRECISIONS

    p.add_argument("--processes", type=int, default=1,
                   help="encode with this many processes: one per GPU where there are GPUs, else CPU processes "
                        "sharing the cores (README: how long large pools take)")
    p.add_argument("--embed-precision", choices=PRECISIONS, default="fp32",
                   help="MiniLM in fp32 (the paper's, the book's) or bf16: faster where the CPU has it, and it moves "
                        "the orders slightly (benchmarks/README)")


def _parse_value(text: str):
    """A --set value: a number (1e-4 included, which YAML would read as a string), else YAML."""
    import yaml

    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _train(args: argparse.Namespace) -> int:
    from .config import (
        RunConfig,
        check_profile_keys,
        flat_params,
        load_profile,
        run_config,
        run_params,
    )
    from .data import DataError
    from .runs import run, runs_dir

    if args.config:
        from .data import parse_json, read_text

        if args.set or args.arrangement or args.train_seed is not None:
            raise DataError("--config is a whole run; do not combine it with --set, --arrangement or --train-seed")
        stored = parse_json(read_text(Path(args.config)), args.config, hint="expected a run's config.json")
        # a stored config always has both sections; anything else ([] or {} included) would otherwise
        # become the default config, or a traceback, not the run the user meant
        if not (isinstance(stored, dict) and all(isinstance(stored.get(k), dict) for k in ("split", "train"))):
            raise DataError(f"{args.config}: not a run's config.json (a JSON object with a model, an arrangement and "
                            "split and train objects, as `zsg train --print-config` shows)")
        config = RunConfig.from_dict(stored)
    else:
        profile = load_profile(args.profile)
        check_profile_keys(args.profile, profile)  # a typo in a custom profile is named, not dropped
        params = run_params(profile)  # the chapters' own keys aside
        if args.arrangement:
            params["arrangement"] = args.arrangement
        if args.train_seed is not None:
            params["train_seed"] = args.train_seed
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep:
                raise DataError(f"--set takes name=value, got {item!r}")
            params[name.strip()] = _parse_value(value)
        config = run_config(**params)
    folder = runs_dir() / config.key()
    if args.print_config:
        print(json.dumps({"key": config.key(), "folder": str(folder), "params": flat_params(config),
                          "config": config.to_dict()}, indent=1))
        return 0
    from .model import process_state

    main = process_state().is_main_process  # under torchrun, one process speaks
    from .precision import describe

    if main:
        print(f"run {config.key()}: {config.model}, {config.arrangement}, lr {config.train.lr:g}, "
              f"batch {config.train.batch_size}, frozen layers {config.train.frozen_layers}, "
              f"precision {describe(config.train.precision)}", flush=True)
    # what happens on the way (resuming, damage found and redone) goes to stderr; the results to stdout
    result = run(config, log=(lambda message: print(message, file=sys.stderr, flush=True)) if main else (lambda m: None))
    if not main:
        return 0
    loss = result.mean_loss()
    if len(loss):
        print(f"held-out loss: {loss.iloc[0]:.4f} at step {loss.index[0]}, {loss.iloc[-1]:.4f} at step {loss.index[-1]}")
    m = result.manifest
    if result.from_store:  # nothing was trained now: say when it was, not as if it just happened
        print(f"served from the run store (trained {m['started']} to {m['ended']}: wall {m['wall_seconds']:.0f} s, "
              f"{m['train_tokens_per_s']:.0f} training tokens/s then)")
    else:
        print(f"wall {m['wall_seconds']:.0f} s, {m['train_tokens_per_s']:.0f} training tokens/s")
    print(f"results: {result.folder}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .costs import CostModel, manifests
    from .execute import from_arguments, train_missing
    from .plan import book_plan, render

    executor = from_arguments(args)  # its options are checked before anything is planned
    plan = book_plan(args.profile, args.chapters, size=args.size)
    print(render(plan, CostModel.fit(manifests()), every_run=args.runs), flush=True)
    if args.train:
        if plan.unsized:
            print("sizing the runs that wait on it (embedding the TMA pools; cached after)", flush=True)
            plan = book_plan(args.profile, args.chapters, size=True)
        train_missing(plan, executor)
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="zsg", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="fetch, verify and convert the registry assets")
    p.add_argument("names", nargs="*", help="assets to prepare (default: every default asset)")
    p.add_argument("--list", action="store_true", help="show each asset, its size, license and status")
    p.add_argument("--force", action="store_true", help="convert again even if ready")
    p.set_defaults(func=_prepare)

    from .config import PARAMETERS
    from .split import HELD_OUT

    p = sub.add_parser("split", help="write the held-out split of the default task pool")
    p.add_argument("--out", required=True, help="folder for train.jsonl, test.jsonl, report.csv")
    p.add_argument("--model", default=PARAMETERS["model"].default, help="asset whose tokenizer measures max_len")
    for param in (p_ for p_ in PARAMETERS.values() if p_.section == "split"):  # --split-seed, --test-tasks, ...
        flag = "--" + param.name.replace("_", "-")
        if isinstance(param.default, bool):
            p.add_argument(flag, dest=param.name, action="store_true")
        elif param.name == "held_out":
            p.add_argument(flag, dest=param.name, choices=HELD_OUT, default=param.default,
                           help="tasks: held-out tasks (the paper); instances: random instances, task-free (E7)")
        else:
            p.add_argument(flag, dest=param.name, type=int, default=param.default)
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.set_defaults(func=_split)

    p = sub.add_parser("embed", help="embed the records of a data file with MiniLM (cached)")
    p.add_argument("file", help="JSONL records, Flan-mini JSON, NIV2 tasks, HF dataset folder")
    p.add_argument("--out", required=True, help="output .npy (rows in record order)")
    p.add_argument("--text", choices=["all", "first-turn"], default="all",
                   help="all messages joined (paper: WSD) or first user + first response (paper: TMA)")
    _add_processes(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=_embed)

    from .arrange import EMBED_TEXT, METHODS
    from .export import FORMATS
    from .features import FEATURES, TEST_VIEWS
    from .precision import CHOICES
    from .train import TrainConfig

    p = sub.add_parser("arrange", help="order training data for a test set (NFT, FFT, RT, coarse, TMA, ...)",
                       epilog="methods:\n" + "\n".join(f"  {m.name:<12} {m.help}" for m in METHODS.values()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training data: JSONL records, Flan-mini JSON, NIV2 tasks, HF folder")
    p.add_argument("--test", required=True, help="the (unseen) test set, any supported format")
    p.add_argument("--method", required=True, choices=list(METHODS))
    p.add_argument("--tma-budget", type=int, default=None, help="tma-*: how many items to select (default: all)")
    p.add_argument("--arrangement-seed", type=int, default=0,
                   help=", ".join(n for n, m in METHODS.items() if m.seeded) + ": the shuffle's seed")
    p.add_argument("--rounds", type=int, nargs=2, metavar=("FIRST", "END"), default=None,
                   help=", ".join(n for n, m in METHODS.items() if m.takes_rounds)
                   + ": keep only what rounds [FIRST, END) over the whole pool pick (E8); with --tma-budget, the first that many")
    p.add_argument("--embed-text", choices=EMBED_TEXT, default=None,
                   help="text to embed (default: the paper's: all messages for WSD, first turn for TMA)")
    p.add_argument("--features", choices=FEATURES, default="minilm",
                   help="what 'similar' means: the paper's MiniLM embeddings, the LM's mean-pooled last hidden "
                        "layer, or its projected gradients after a short warm-up (LESS-style); see zsg_core/features.py")
    p.add_argument("--model", default=None,
                   help="hidden / gradient: the LM, an asset name or a local folder (default smollm2-135m)")
    p.add_argument("--test-view", choices=TEST_VIEWS, default="with-answer",
                   help="held-out features from the reference answer too (the paper's), or from the prompt only")
    p.add_argument("--frozen-layers", type=int, default=0,
                   help="hidden / gradient: bottom layers left frozen (gradients are taken of the others' weights)")
    p.add_argument("--lr", type=float, default=TrainConfig.lr, help="gradient: the warm-up's learning rate")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="gradient: the warm-up's batch size")
    p.add_argument("--precision", choices=CHOICES, default="auto", help="hidden / gradient: bf16, fp32 or auto")
    p.add_argument("--out", required=True, help="output JSONL file, or folder with --format hf")
    p.add_argument("--format", choices=FORMATS, default="jsonl")
    p.add_argument("--allow-overlap", action="store_true", help="arrange even if test tasks, ids or texts are in training")
    _add_processes(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=_arrange)

    p = sub.add_parser("train", help="one run: fine-tune in an arranged order, evaluate densely, store the results")
    p.add_argument("--profile", default="cpu", help="zsg_core/profiles/<name>.yaml: smoke, cpu (default), gpu")
    p.add_argument("--arrangement", choices=list(METHODS), default=None, help="the order (default: the profile's, else random)")
    p.add_argument("--train-seed", type=int, default=None, help="the training seed (the run parameter train_seed)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any run parameter, e.g. lr=3e-4, max_steps=40, eval_steps=[0,5,10] (repeatable); "
                   "names: " + ", ".join(PARAMETERS))
    p.add_argument("--config", help="a stored run's config.json: rerun exactly that")
    p.add_argument("--print-config", action="store_true", help="print the config and its folder, train nothing")
    p.set_defaults(func=_train)

    from .execute import add_arguments

    p = sub.add_parser("plan", help="the book's runs before any trains: stored or not, their predicted cost, the total")
    p.add_argument("--profile", default="cpu", help="zsg_core/profiles/<name>.yaml: smoke, cpu (default), cpu-full, gpu")
    p.add_argument("--chapters", nargs="+", metavar="CHAPTER", help="only these chapters' runs (e.g. 04_similarity)")
    p.add_argument("--runs", action="store_true", help="a line per run, not only per chapter")
    p.add_argument("--size", action="store_true",
                   help="do the work that decides some runs (embedding chapter 6's TMA pools) now, so every run is listed")
    p.add_argument("--train", action="store_true", help="then train the runs the store lacks (the chapters only read them)")
    add_arguments(p)
    p.set_defaults(func=_plan)

    args = parser.parse_args(argv)
    from .assets import AssetError
    from .book import BookError
    from .data import DataError
    from .model import ModelError
    from .similarity import SimilarityError

    # Exit codes (README): 0 done; 2 a problem with the input, a parameter, an asset or the
    # filesystem, told in one line; 1 a bug (a traceback); argparse's usage errors are 2 too.
    try:
        if getattr(args, "out", None) is not None and not args.out.strip():
            raise DataError("--out is empty; give the file or folder to write")
        return args.func(args)
    except (AssetError, BookError, DataError, ModelError, SimilarityError) as e:
        print(f"zsg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder that cannot be written, a file that cannot be read, a full disk
        # a write that fails mid-file (no space, file too large) carries no file name: name the output
        target = e.filename or getattr(args, "out", None)
        if not target and args.command == "train":
            from .runs import runs_dir

            target = runs_dir()
        where = f"{target}: " if target else ""
        print(f"zsg {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
