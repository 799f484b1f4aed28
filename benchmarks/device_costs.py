"""The book's plans priced for a GPU machine, from runs trained there: `zsg plan`'s cost model
(`zsg_core.costs`) fitted on manifests of that machine kind instead of this one's.

Three steps, one file, because the device takes a copy of the working tree and nothing else:

    .venv/bin/python benchmarks/device_costs.py pack              # here: choose the runs, pack what they read
    python3 benchmarks/device_costs.py train --out $OUT           # there (device tool): train them, in order
    .venv/bin/python benchmarks/device_costs.py predict FILE      # here: fit, price both plans, write results/

`pack` takes from the cpu and gpu profiles' plans one run of each kind whose rates the cost model
fits (per set-up: a split's first run, a plain one, one generating, one per LM feature kind, one
per adaptive method), in the order of their share of the plan, and writes them with the files
they read into `.devcarry/` (git-ignored; the device call carries it). A device call carries at
most 64 MiB, so the models' weights cannot travel (SmolLM2-135M 538 MB, Gemma-3-270m 1,072 MB,
MiniLM 91 MB): the device builds each from its real config and tokenizer with random weights
and records it as the asset ("shape twin"): the same layers, shapes and tokens, so the same
arithmetic per step, evaluation, cache entry and embedded text. What differs, and is said in the
results: generation runs to `max_new_tokens` (random weights seldom stop), so its rate is an
upper bound; the orders arranged from the twin encoder's vectors are other orders of the same
instances (same work). `train` runs them until its budget is spent and writes every manifest
into one JSON file; `predict` fits `CostModel` on those manifests and prices every run of both
plans (this machine's prediction beside it, from its own manifests) into
`results/device_costs_<kind>.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".devcarry"
PROFILES = ("cpu", "gpu")
# the assets whose files travel, all but their weights (*.safetensors), rebuilt there from config.json
TWINS = ("smollm2-135m", "gemma-270m", "minilm-l6")
MAX_PER_PROFILE = 12


def _kind(run) -> tuple:
    """What a run adds to the cost model: its set-up, and which rates it carries."""
    from zsg_core.arrange import get_method
    from zsg_core.costs import needs_features, set_up

    c = run.config
    method = c.arrangement if get_method(c.arrangement).adaptive else None
    return set_up(c), bool(c.train.generate_steps), needs_features(c), method


def choose(profile: str) -> list:
    """One run per kind (`_kind`) of the profile's plan, on its set-up's first split where it can:
    per set-up (most runs first) its first run (it pays the split's shared work), a second plain
    one, then one of each other kind, most runs first."""
    from collections import Counter

    from zsg_core.plan import book_plan

    plan = book_plan(profile)
    kinds = Counter(_kind(r) for r in plan.runs)
    setups = Counter(_kind(r)[0] for r in plan.runs)
    chosen = []
    for setup, _ in setups.most_common():
        runs = [r for r in plan.runs if _kind(r)[0] == setup]
        first = runs[0]
        on_split = [r for r in runs if r.config.split == first.config.split]
        plain = [r for r in on_split[1:] if not any(_kind(r)[1:])]
        chosen += [first] + plain[:1]
        for key, _ in kinds.most_common():
            if key[0] == setup and any(key[1:]):
                chosen.append(next((r for r in on_split if _kind(r) == key),
                                   next(r for r in runs if _kind(r) == key)))
    return chosen[:MAX_PER_PROFILE]


def pack() -> None:
    from zsg_core.assets import asset_path
    from zsg_core.split import _cached_folder, load_split

    if CARRY.exists():
        shutil.rmtree(CARRY)
    (CARRY / "wheels").mkdir(parents=True)
    runs, splits = [], set()
    chosen = {profile: choose(profile) for profile in PROFILES}
    # the profiles taken in turn, so that a budget spent early still prices both
    for i in range(max(map(len, chosen.values()))):
        for profile, rs in chosen.items():
            if i >= len(rs):
                continue
            r = rs[i]
            runs.append({"profile": profile, "chapter": r.chapter, "experiment": r.experiment, "label": r.label,
                         "config": r.config.to_dict()})
            load_split(r.config.split, r.config.model, log=lambda m: None)  # cached here, carried there
            splits.add(_cached_folder(r.config.split, r.config.model)[0])
    # plain and generating runs first (most of both plans), then the LM-feature and adaptive ones:
    # hidden states of a whole pool took minutes on an H200, so they come last
    order = {"adaptive": 2, "gradient": 1, "hidden": 3}
    runs.sort(key=lambda r: order["adaptive"] if r["config"]["arrangement"].startswith("adaptive")
              else order.get(r["config"].get("features"), 0) if r["config"]["arrangement"] != "random" else 0)
    (CARRY / "runs.json").write_text(json.dumps(runs, indent=1))
    with tarfile.open(CARRY / "cache.tar.xz", "w:xz") as tar:
        for name in TWINS:
            folder = asset_path(name)
            for f in sorted(folder.rglob("*")):
                if f.is_file() and f.suffix != ".safetensors" and f.name != "READY.json":
                    tar.add(f, arcname=f"assets/{name}/{f.relative_to(folder)}")
        for s in sorted(splits):
            tar.add(s, arcname=f"splits/{s.name}")
    # rouge-score (generation's metric) and its nltk are not on the device's image: their wheels
    # travel (rouge-score ships an sdist only: its wheel is built here)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(CARRY / "wheels"),
                    "rouge-score==0.1.2", "nltk"], check=True)
    size = sum(f.stat().st_size for f in CARRY.rglob("*") if f.is_file())
    print(json.dumps({"runs": [(r["profile"], r["config"]["arrangement"], r["label"]) for r in runs],
                      "splits": len(splits), "carry_mb": round(size / 2**20, 1)}, indent=1))


def _twins(cache: Path) -> None:
    """Each carried asset rebuilt with random weights of its real shape, recorded as prepared."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from zsg_core import assets
    from zsg_core.util import file_digests

    for name in TWINS:
        folder = cache / "assets" / name
        config = AutoConfig.from_pretrained(folder)
        torch.manual_seed(0)
        cls = AutoModel if name == "minilm-l6" else AutoModelForCausalLM
        model = cls.from_config(config, dtype=torch.float32)
        model.save_pretrained(folder, safe_serialization=True)  # model.safetensors (and config.json again)
        marker = {**assets._marker(assets.get_asset(name)), "files": file_digests(folder),
                  "twin": "random weights of the real config (benchmarks/device_costs.py)"}
        (folder / "READY.json").write_text(json.dumps(marker, indent=1))


def train(out: Path, budget: float, rehearse: int = 0) -> None:
    """Unpack, build the twins, train the packed runs in order until `budget` seconds are spent.
    `rehearse`: only the first that many runs, 2 steps each (a check here before the device)."""
    t0 = time.perf_counter()
    cache = Path(os.environ.setdefault("ZSG_CACHE", "/tmp/zsg-device-cache"))
    os.environ.setdefault("ZSG_RUNS", str(cache / "runs"))
    os.environ.update(HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "device_log.txt", "a")

    def say(message: str) -> None:
        print(message, flush=True)
        log.write(f"{time.perf_counter() - t0:7.1f}s {message}\n")
        log.flush()

    with tarfile.open(CARRY / "cache.tar.xz") as tar:
        tar.extractall(cache, filter="data")
    _twins(cache)
    import torch

    from zsg_core.config import RunConfig
    from zsg_core.precision import capability
    from zsg_core.runs import run

    done = {"machine": capability(), "torch": torch.__version__, "setup_seconds": round(time.perf_counter() - t0, 1),
            "budget_seconds": budget, "runs": [], "failed": []}
    say(f"twins ready: {done['machine']}")
    items = json.loads((CARRY / "runs.json").read_text())
    for item in items[:rehearse] if rehearse else items:
        if rehearse:
            t = item["config"]["train"]
            t.update(max_steps=2, eval_steps=[0, 2], generate_steps=[2] if t.get("generate_steps") else [])
        if time.perf_counter() - t0 > budget:
            say("budget spent")
            break
        config = RunConfig.from_dict(item["config"])
        what = f"{item['profile']} {config.model} {config.arrangement} ({item['label']}, {item['chapter']})"
        say(f"start {what}")
        try:
            result = run(config, log=lambda m: None)
            manifest = json.loads((result.folder / "manifest.json").read_text())
            done["runs"].append({**item, "manifest": manifest})
            say(f"done {what}: {manifest['wall_seconds']} s, {manifest.get('steps')} steps")
        except Exception as e:
            done["failed"].append({**item, "error": f"{type(e).__name__}: {e}"})
            say(f"failed {what}: {traceback.format_exc()[-1500:]}")
        (out / "device_manifests.json").write_text(json.dumps(done, indent=1))
    done["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "device_manifests.json").write_text(json.dumps(done, indent=1))
    say(f"finished in {done['seconds']} s")


def predict(path: Path) -> None:
    """Price both plans on the device's kind (and on this machine's, from its own manifests)."""
    from zsg_core.config import RunConfig
    from zsg_core.costs import CostModel, machine_kind, manifests
    from zsg_core.plan import book_plan, predictions
    from zsg_core.precision import capability
    from zsg_core.split import load_split

    done = json.loads(path.read_text())
    device = []
    for item in done["runs"]:
        m = dict(item["manifest"])
        m["config"] = RunConfig.from_dict(item["config"])
        device.append(m)
    kind = machine_kind(done["machine"])
    there, here = CostModel.fit(device, kind), CostModel.fit(manifests())
    figures = {"device_kind": kind, "here_kind": here.kind, "device_runs": len(device),
               "device_failed": [(f["profile"], f["config"]["arrangement"], f["error"][:200]) for f in done["failed"]],
               "weights": "random, of each model's real config (shape twins): generation runs to max_new_tokens, "
                          "so its rate is an upper bound", "profiles": {}}
    for profile in PROFILES:
        plan = book_plan(profile)
        # a whole-epoch run (the gpu profile's) is priced from its split's size: compute the splits first
        for split, model in {(r.config.split, r.config.model) for r in plan.runs if r.config.train.max_steps is None}:
            load_split(split, model, log=lambda m: None)
        row = {"runs": len(plan.runs) + sum(w.runs for w in plan.unsized.values()),
               "unsized": sum(w.runs for w in plan.unsized.values())}
        seconds = {name: predictions(plan, model, stored=set()) for name, model in (("device", there), ("here", here))}
        for name, predicted in seconds.items():
            known = [s for s in predicted.values() if s is not None]
            row[name] = {"predicted_seconds": round(sum(known)), "priced_runs": len(known),
                         "unpriced_runs": len(predicted) - len(known)}
        common = [k for k, s in seconds["device"].items() if s is not None and seconds["here"].get(k) is not None]
        if common:  # the same runs priced on both kinds: how much faster the device is
            row["common_runs"] = len(common)
            row["here_over_device_on_common"] = round(sum(seconds["here"][k] for k in common)
                                                      / sum(seconds["device"][k] for k in common), 1)
        figures["profiles"][profile] = row
    rates = {}
    for setup, step in there.step.items():
        rates[" / ".join(map(str, setup))] = {
            "step_s": round(step, 3), "eval_per_instance_s": round(there.evaluation.get(setup) or 0, 5),
            "generation_per_answer_s": round(there.generation.get(setup, 0), 4),
            "fixed_s": round(there.fixed.get(setup, 0), 1), "first_on_split_s": round(there.first_on_split.get(setup, 0), 1)}
    figures["device_rates"] = rates
    figures["here_cpu_capability"] = capability().get("cpu_capability")
    out = ROOT / "benchmarks" / "results" / f"device_costs_{kind.split(':')[-1].replace(' ', '_').lower()}.json"
    sys.path.insert(0, str(Path(__file__).parent))
    from report import report

    report(figures, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("pack")
    p = sub.add_parser("train")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/device-out")))
    p.add_argument("--budget", type=float, default=360.0)
    p.add_argument("--rehearse", type=int, default=0, help="only the first N runs, 2 steps each")
    p = sub.add_parser("predict")
    p.add_argument("file", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.step == "pack":
        pack()
    elif args.step == "train":
        train(args.out, args.budget, args.rehearse)
    else:
        predict(args.file)


if __name__ == "__main__":
    main()
