"""The book as one planned computation: the plan lists exactly what a chapter reads and trains
nothing; the cost model predicts from manifests; the executors (worker processes, Ray's own
multi-node test cluster) store what the in-process one stores, survive a lost node, and an
interrupted plan resumes. On the tiny random-init Llama over the real data."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from zsg_core import experiments, toc
from zsg_core.config import load_profile, run_config
from zsg_core.costs import CostModel, machine_kind, manifests
from zsg_core.data import DataError
from zsg_core.execute import Executor, train_missing, waves
from zsg_core.experiments import PlannedRun
from zsg_core.plan import Plan, book_plan, predictions, render
from zsg_core.precision import capability
from zsg_core.runs import TABLES, load

TINY = dict(model="tiny-llama", train_per_task=4, test_per_task=2, max_len=256, batch_size=4, lr=1e-3,
            frozen_layers=2, precision="fp32")  # fp32: runs from two executors compare bit for bit

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`



def _chapter_params(chapter: str, **over) -> dict:
    return {**toc.chapter_parameters(chapter, load_profile("smoke")), **TINY, **over}


def test_planning_trains_nothing_and_lists_exactly_what_the_chapter_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))
    params = _chapter_params("05_granularity", side_split_seeds=[0], long_steps=4, max_steps=2)
    with experiments.planning() as recorder:
        pending = experiments.chapter_runs("05_granularity", params)
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written
    assert all(isinstance(v, experiments.Pending) for v in pending.values())
    planned = {r.key: r for r in recorder.runs}
    assert sorted((r.experiment, r.label, r.seed) for r in recorder.runs) == \
        [("granularity", "RT", 0), ("granularity", "coarse", 0), ("granularity", "fine", 0)]
    read = experiments.chapter_runs("05_granularity", params)  # the chapter's own call, training
    assert {r.config.key() for r in read.values()} == set(planned)
    assert {r.config.key(): r.config for r in read.values()} == {k: r.config for k, r in planned.items()}


def test_the_plan_holds_the_runs_issue_32_asks_for(tmp_path, monkeypatch):
    """E9's OT on every headline split (item 10); a generating random order on every side split for
    E1's claim 2 (item 3); chapter 7's task- and length-matched controls (items 7, 8); chapter 8's
    balanced order from the prompt-only gradients (item 12)."""
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))

    def planned(chapter: str, generating: bool = False, **over) -> set[tuple[str, str, int]]:
        with experiments.planning() as recorder:
            experiments.chapter_runs(chapter, _chapter_params(chapter, **over))
        return {(r.experiment, r.label, r.seed) for r in recorder.runs
                if not generating or (r.config.train.generate_steps and r.seed_param == "split_seed")}

    assert {("similarity", "OT", s) for s in (0, 1, 2)} <= planned("04_similarity", split_seeds=[0, 1, 2])
    ch2 = planned("02_early_generalization", generating=True, side_split_seeds=[0, 1, 2])
    assert ch2 == {("early_generalization", "random", s) for s in (1, 2)}
    ch7 = planned("07_nearest_first", split_seeds=[0, 1])
    assert {(label, s) for _, label, s in ch7} >= {(label, s) for label in ("task", "length") for s in (0, 1)}
    assert ("representations", "balanced (gradient, prompts only)", 0) in planned("08_representations",
                                                                                side_split_seeds=[0])
    assert not list(tmp_path.glob("*/complete"))


def test_a_book_chapter_reading_a_run_its_plan_lacks_fails(tmp_path, monkeypatch):
    """The book runner trains the plan, then sets ZSG_PLAN_TRAINED for its kernels: a run the plan
    did not list is then an error naming BOOK_RUNS, not a silent training inside the chapter."""
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))
    monkeypatch.setenv(experiments.PLANNED_ENV, "1")
    with pytest.raises(DataError, match="BOOK_RUNS"):
        experiments.run_arrangements({**TINY, "max_steps": 2}, {"random": {"arrangement": "random"}})
    assert not list(tmp_path.glob("*/complete"))


def test_a_chapter_parameter_that_is_missing_is_named():
    with pytest.raises(DataError, match="05_granularity: parameter 'long_steps'"):
        experiments.chapter_runs("05_granularity", {**TINY, "side_split_seeds": [0]})
    with pytest.raises(DataError, match="no runs are declared"):
        experiments.chapter_runs("01_data", TINY)
    with pytest.raises(DataError, match=r"no parameter\(s\) \['long_step'\]"):  # a variant's change is checked
        book_plan("smoke", ["05_granularity"], changes={"long_step": 120})


def test_every_chapter_with_runs_is_planned_and_each_run_counted_once():
    """The smoke profile's plan: every chapter that reads runs is in BOOK_RUNS, runs read by two
    chapters (E4's in 7 and 8, chapter 3's in 8) are listed once, under the first reader."""
    sources = {src.stem for src in toc.chapter_sources() if "experiments.chapter_runs(" in src.read_text()}
    assert sources == set(experiments.BOOK_RUNS)
    plan = book_plan("smoke")
    keys = [r.key for r in plan.runs]
    assert len(keys) == len(set(keys))
    shared = [k for k, readers in plan.readers.items() if len(readers) > 1]
    assert shared and all(plan.readers[k][0] == next(r.chapter for r in plan.runs if r.key == k) for k in shared)
    assert "08_representations" in {c for k in shared for c in plan.readers[k]}


def test_tma_runs_wait_on_their_pools_and_are_counted(monkeypatch):
    monkeypatch.setattr(experiments, "_pools_embedded", lambda *a: False)
    plan = book_plan("smoke", ["06_tma"])
    assert plan.runs == [] and list(plan.unsized) == ["06_tma"]
    p = toc.chapter_parameters("06_tma", load_profile("smoke"))
    n = 3 * len(p["split_seeds"]) + 2 + len(p["round_starts"]) * len(p["side_split_seeds"])  # MIN, MAX: first split
    assert plan.unsized["06_tma"].runs == n
    shown = render(plan, CostModel(machine_kind(capability()), 0))
    assert f"+{n} runs of tma_comparison, sized once the TMA pools" in shown
    assert f"total to train: {n} runs without a prediction" in shown  # not "0m00s" for runs it cannot price


def _manifest(config, steps, seconds, kind: str | dict = "AVX512", first=False, new_entries=0):
    """A manifest as runs._train_and_store writes it, with chosen parts; `kind` a CPU capability or a
    whole machine record (`precision.capability()`: this machine, whatever it is)."""
    evals = len(config.train.eval_steps)
    held = config.split.test_tasks * config.split.test_per_task
    parts = {"train_seconds": steps * seconds["step"], "eval_seconds": evals * held * seconds["eval"],
             "generate_seconds": 0.0, "cache_seconds": new_entries * seconds["entry"]}
    machine = kind if isinstance(kind, dict) else {"device": "cpu", "cpu_capability": kind}
    return {"config": config, "machine": machine, "steps": steps,
            "evaluations": evals, "held_out": held, "processes": 1, "cache_entries_computed": new_entries,
            "texts_embedded": 500 if first else 0, "prepare_seconds": seconds["fixed"], **parts,
            "wall_seconds": seconds["fixed"] + sum(parts.values()) + (seconds["split"] if first else 0.0)}


def test_the_cost_model_recovers_the_parts_of_the_runs_it_is_fitted_on():
    rates = {"step": 0.5, "eval": 0.01, "fixed": 20.0, "entry": 0.2, "split": 40.0}
    configs = [run_config(**{**TINY, "max_steps": s, "eval_steps": [0, s], "split_seed": i}) for i, s in enumerate((10, 20, 40))]
    kind = capability().get("cpu_capability")
    held = configs[0].split.test_tasks * configs[0].split.test_per_task
    reads = [c.train.max_steps * 4 + held for c in configs]
    new = [reads[0], reads[1] // 2, 0]  # the first run computes every entry it reads, the next half, the last none
    stored = [_manifest(c, c.train.max_steps, rates, kind, first=(i == 0), new_entries=new[i]) for i, c in enumerate(configs)]
    stored.append(_manifest(configs[1], 20, {k: 100 * v for k, v in rates.items()}, kind="OTHER"))  # another machine: ignored
    other = run_config(**{**TINY, "max_steps": 10, "eval_steps": [0, 10], "frozen_layers": 1})  # another set-up
    stored.append(_manifest(other, 10, {k: 10 * v for k, v in rates.items()}, kind, first=True))
    model = CostModel.fit(stored, f"cpu:{kind}")
    assert model.fitted == 4 and len(model.step) == 2
    share = sum(new) / sum(reads)
    target = run_config(**{**TINY, "max_steps": 30, "eval_steps": [0, 10, 30]})
    warm = 20.0 + 30 * 0.5 + 3 * held * 0.01 + (30 * 4 + held) * share * 0.2
    assert model.predict(target) == pytest.approx(warm)
    assert model.predict(target, first_on_split=True) == pytest.approx(warm + 40.0)
    assert model.predict(run_config(**{**TINY, "max_steps": 30, "frozen_layers": 0})) is None  # never seen: no guess
    assert CostModel.fit([], f"cpu:{kind}").predict(target) is None
    # an order decided while training adds its probing per step, a rate of its own method's runs
    adaptive = {**TINY, "val_per_task": 1, "arrangement": "adaptive-loss"}
    probing = _manifest(run_config(**adaptive, max_steps=10, eval_steps=[0, 10]), 10, rates, kind)
    probing["adapt_seconds"] = 10 * 0.3
    probing["wall_seconds"] += probing["adapt_seconds"]
    model = CostModel.fit([*stored, probing], f"cpu:{kind}")
    plain = model.predict(target)
    assert model.predict(run_config(**{**adaptive, "max_steps": 30, "eval_steps": [0, 10, 30]})) == pytest.approx(plain + 30 * 0.3)
    assert model.predict(run_config(**{**adaptive, "arrangement": "adaptive-gradient", "max_steps": 30})) is None
    # the first run of a split ordered on the LM's gradients computes them: a part of its own, not
    # the fixed part of every run
    on_gradients = {**TINY, "arrangement": "nft", "features": "gradient", "max_steps": 10, "eval_steps": [0, 10]}
    computing = _manifest(run_config(**on_gradients), 10, rates, kind)
    computing["features_seconds"] = {"gradient": 300.0}
    computing["wall_seconds"] += 300.0
    model = CostModel.fit([*stored, computing], f"cpu:{kind}")
    assert model.features == {(("tiny-llama", 2, 4, "fp32"), "gradient"): 300.0}
    assert model.predict(target) == pytest.approx(plain)  # the features' seconds are not in the fixed part
    nft = run_config(**{**on_gradients, "max_steps": 30, "eval_steps": [0, 10, 30]})
    assert model.predict(nft, computes_features=True) == pytest.approx(model.predict(nft) + 300.0)
    assert model.predict(run_config(**{**on_gradients, "features": "hidden"}), computes_features=True) is None
    assert model.predict(run_config(**{**on_gradients, "arrangement": "random"}), computes_features=True) == \
        pytest.approx(model.predict(run_config(**{**on_gradients, "arrangement": "random"})))  # random measures nothing


def test_a_whole_epoch_run_is_priced_from_its_cached_split_and_not_guessed_without_it(tmp_path, monkeypatch):
    from zsg_core import costs
    from zsg_core.split import load_split

    monkeypatch.setenv("ZSG_CACHE", str(tmp_path))  # an empty cache: no split is cached yet
    whole = run_config(**{**TINY, "max_steps": None})
    assert costs.planned_steps(whole) is None  # only the split knows, and planning computes no split
    monkeypatch.undo()
    train = load_split(whole.split, whole.model, log=lambda m: None).train
    assert costs.planned_steps(whole) == -(-len(train) // 4)  # batch 4: the epoch's steps, the last one partial
    setup = ("tiny-llama", 2, 4, "fp32")
    model = CostModel("k", 1, fixed={setup: 0.0}, step={setup: 1.0})
    assert model.predict(whole) == pytest.approx(-(-len(train) // 4))


def test_a_splits_first_missing_run_pays_for_what_its_runs_share(tmp_path):
    a, b = (run_config(**{**TINY, "max_steps": 4, "eval_steps": [0, 4], "arrangement": m}) for m in ("random", "cluster"))
    c = run_config(**{**TINY, "max_steps": 4, "eval_steps": [0, 4], "split_seed": 1})
    plan = Plan("t", ["c"], [PlannedRun("c", "e", l, 0, "split_seed", x) for l, x in (("a", a), ("b", b), ("c", c))])
    setup = ("tiny-llama", 2, 4, "fp32")
    model = CostModel("k", 1, fixed={setup: 1.0}, step={setup: 1.0}, first_on_split={setup: 100.0})
    got = predictions(plan, model, tmp_path)
    assert got == {a.key(): pytest.approx(105.0), b.key(): pytest.approx(5.0), c.key(): pytest.approx(105.0)}
    # as if `a` were stored: its split's work is done
    assert predictions(plan, model, tmp_path, stored={a.key()}) == {b.key(): pytest.approx(5.0), c.key(): pytest.approx(105.0)}
    # the LM's gradient features of a split: computed by the first run ordered on them, read by the rest
    g1, g2 = (run_config(**{**TINY, "max_steps": 4, "eval_steps": [0, 4], "arrangement": m, "features": "gradient"})
              for m in ("nft", "fft"))
    on_gradients = Plan("t", ["c"], [PlannedRun("c", "e", l, 0, "split_seed", x) for l, x in (("a", a), ("g1", g1), ("g2", g2))])
    model.features[setup, "gradient"] = 1000.0
    assert predictions(on_gradients, model, tmp_path) == {a.key(): pytest.approx(105.0), g1.key(): pytest.approx(1005.0),
                                                  g2.key(): pytest.approx(5.0)}
    assert predictions(on_gradients, model, tmp_path, stored={g1.key()}) == {a.key(): pytest.approx(5.0),  # g1 did the split's work
                                                                             g2.key(): pytest.approx(5.0)}
    assert [[r.label for r in w] for w in waves(plan.runs)] == [["a", "c"], ["b"]]


def test_the_time_left_is_the_cost_model_refitted_on_what_is_stored_so_far(tmp_path):
    from zsg_core.execute import _Progress

    rates = {"step": 0.5, "eval": 0.01, "fixed": 20.0, "entry": 0.0, "split": 40.0}
    configs = [run_config(**{**TINY, "max_steps": 10, "eval_steps": [0, 10], "arrangement": m, "split_seed": seed})
               for m, seed in (("random", 0), ("cluster", 0), ("random", 1))]
    plan = Plan("t", ["c"], [PlannedRun("c", "e", c.arrangement, 0, "split_seed", c) for c in configs])
    progress = _Progress(plan, plan.runs, tmp_path, 1, log=lambda m: None)
    assert progress.left()[1] == 3  # a fresh machine: nothing stored, nothing priced
    here = capability()  # the progress line prices on this machine's kind, a CPU's or a GPU's
    for config, first in zip(configs[:2], (True, False)):  # as if the first two had just been trained here
        folder = tmp_path / config.key()
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config.to_dict()))
        manifest = {k: v for k, v in _manifest(config, 10, rates, here, first=first).items() if k != "config"}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        (folder / "complete").touch()
    seconds, blind = progress.left()
    expected = predictions(plan, CostModel.fit(manifests(tmp_path)), tmp_path)
    assert blind == 0 and list(expected) == [configs[2].key()]  # the third, on a split of its own, is priced
    assert seconds == pytest.approx(expected[configs[2].key()]) and seconds > 40.0  # with its split's work
    # two workers share what is left, but one run left is not done any faster by two
    assert _Progress(plan, plan.runs, tmp_path, 2, log=lambda m: None).left()[0] == pytest.approx(seconds)


def _tiny_plan(steps: int = 6) -> Plan:
    """Six tiny runs on two splits: enough for two workers to hold one each."""
    runs = [PlannedRun("t", "e", arrangement, seed, "split_seed",
                       run_config(**{**TINY, "max_steps": steps, "eval_steps": [0, steps], "arrangement": arrangement,
                                     "split_seed": seed}))
            for seed in (0, 1) for arrangement in ("random", "cluster", "round-robin")]
    return Plan("tiny", ["t"], runs)


def _same_tables(a: Path, b: Path) -> None:
    """Every number two runs stored is the same bits, but how long their steps took."""
    for t in TABLES:
        left, right = (pd.read_parquet(f / f"{t}.parquet").drop(columns=["seconds"], errors="ignore") for f in (a, b))
        pd.testing.assert_frame_equal(left, right, check_exact=True)


@pytest.mark.slow
def test_worker_processes_store_what_the_process_itself_stores(tmp_path):
    plan = _tiny_plan(steps=2)
    plan.runs = plan.runs[:2]
    train_missing(plan, Executor("inprocess", threads=1), log=lambda m: None, root=tmp_path / "here")
    walls = train_missing(plan, Executor("processes", workers=2, threads=1), log=lambda m: None, root=tmp_path / "pool")
    assert set(walls) == {r.key for r in plan.runs}
    for r in plan.runs:
        _same_tables(load(tmp_path / "here" / r.key).folder, load(tmp_path / "pool" / r.key).folder)
    assert train_missing(plan, Executor("processes", workers=2), log=lambda m: None, root=tmp_path / "pool") == {}


def test_an_executor_refuses_what_it_cannot_do():
    for bad in (dict(kind="slurm"), dict(workers=0), dict(threads=0), dict(gpus_per_run=2)):
        with pytest.raises(DataError):
            Executor(**bad)


@pytest.mark.slow
def test_ray_on_a_two_node_cluster_completes_a_plan_after_losing_a_node(tmp_path):
    """Ray's own multi-node test cluster on this machine: a head that runs nothing and two worker
    nodes of one CPU each. When both hold a run, one node is removed: its run is retried on the
    other, and every run is stored once, whole, and equal (fp32) to the in-process one."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    plan = _tiny_plan(steps=40)
    root = tmp_path / "ray"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, logging_level="warning",
                 runtime_env={"env_vars": {"ZSG_CACHE": os.environ.get("ZSG_CACHE", ""), "OMP_NUM_THREADS": "1"}}
                 if os.environ.get("ZSG_CACHE") else None)
        import threading

        def lose_a_node() -> None:  # once two runs are under way (folders without a marker), one node goes
            deadline = time.time() + 300
            while time.time() < deadline:
                busy = [f for f in root.glob("*") if f.is_dir() and not (f / "complete").exists()]
                if len(busy) >= 2:
                    cluster.remove_node(nodes[1])
                    lost.append(len(busy))
                    return
                time.sleep(0.2)

        lost: list[int] = []
        killer = threading.Thread(target=lose_a_node)
        killer.start()
        walls = train_missing(plan, Executor("ray", workers=2, threads=1), log=lambda m: None, root=root)
        killer.join()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert lost, "the test never saw two runs under way"
    assert set(walls) == {r.key for r in plan.runs}
    folders = [f for f in root.iterdir() if f.is_dir()]
    assert sorted(f.name for f in folders) == sorted(r.key for r in plan.runs)  # each once, nothing else
    here = tmp_path / "here"
    train_missing(plan, Executor("inprocess", threads=1), log=lambda m: None, root=here)
    for r in plan.runs:
        stored = load(root / r.key)  # verified against its checksums and its key: whole
        assert not (stored.folder / "state").exists()
        _same_tables(stored.folder, here / r.key)


def test_ray_refuses_a_store_the_tasks_do_not_see(tmp_path):
    from zsg_core.execute import STORE_TOKEN, _ray_task

    (tmp_path / STORE_TOKEN).write_text("driver's")
    with pytest.raises(DataError, match="every node mounts"):
        _ray_task({}, str(tmp_path), "another", 1)
    with pytest.raises(DataError, match="no store"):
        _ray_task({}, str(tmp_path / "elsewhere"), "another", 1)


_INTERRUPTED = """
import sys
from zsg_core.execute import train_missing
from zsg_core.plan import Plan
from zsg_core.experiments import PlannedRun
from zsg_core.config import RunConfig
import json

runs = [PlannedRun("t", "e", str(i), 0, "split_seed", RunConfig.from_dict(c)) for i, c in enumerate(json.load(open(sys.argv[1])))]
train_missing(Plan("t", ["t"], runs), log=lambda m: print(m, flush=True))
"""


@pytest.mark.slow
def test_an_interrupted_plan_leaves_a_store_that_a_rerun_completes(tmp_path):
    plan = _tiny_plan(steps=30)
    plan.runs = plan.runs[:2]
    (tmp_path / "plan.json").write_text(json.dumps([r.config.to_dict() for r in plan.runs]))
    root = tmp_path / "runs"
    env = {**os.environ, "ZSG_RUNS": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED, str(tmp_path / "plan.json")], env=env,
                            stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(root.glob("*/state")):  # a checkpoint: the first run is half-way
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(root.glob("*/complete"))
    rerun = subprocess.run([sys.executable, "-c", _INTERRUPTED, str(tmp_path / "plan.json")], env=env,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert sorted(f.parent.name for f in root.glob("*/complete")) == sorted(r.key for r in plan.runs)
    for r in plan.runs:
        assert load(root / r.key).train_log.step.tolist() == list(range(1, 31))


def test_zsg_plan_prints_each_chapter_and_the_total_and_refuses_bad_options(capsys):
    from zsg_core.cli import main

    assert main(["plan", "--profile", "smoke", "--chapters", "05_granularity", "--runs"]) == 0
    out = capsys.readouterr().out
    assert "plan for profile smoke" in out and "05_granularity" in out and "total to train" in out
    assert out.count(" granularity ") == len(book_plan("smoke", ["05_granularity"]).runs)  # a line per run
    assert main(["plan", "--profile", "smoke", "--workers", "0"]) == 2
    assert "workers must be" in capsys.readouterr().err
    assert main(["plan", "--profile", "smoke", "--chapters", "99_nothing"]) == 2


def test_a_chapter_that_reads_another_chapters_runs_back_plans_none_of_its_own():
    """Chapter 6 reads chapter 4's E4 runs (like with like) and chapter 9 chapter 4's RT: in each
    shipped profile's plan, every run a chapter reads back is the other chapter's own run (the plan
    lists a run under the first chapter that reads it), so a parameter trimmed from a chapter cannot
    quietly make it train new ones (as removing chapter 6's max_steps once did)."""
    read_back = {("06_tma", "similarity")}
    for profile in ("smoke", "cpu"):
        plan = book_plan(profile)
        own = [(r.chapter, r.experiment, r.label) for r in plan.runs if (r.chapter, r.experiment) in read_back]
        assert not own, (profile, own[:3])
        chapter9 = {r.label for r in plan.runs if r.chapter == "09_adaptive"}
        assert "RT" not in chapter9, profile  # chapter 4's RT, read back


def test_make_books_plan_is_printed_again_once_the_waiting_runs_are_sized(tmp_path, monkeypatch):
    """A fresh machine's first plan cannot list chapter 6's runs (its pools are not embedded): the
    plan is printed again after sizing, so every run and its price is seen before it trains."""
    from zsg_core import book
    from zsg_core.experiments import Unsized

    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))
    sized = run_config(**{**TINY, "max_steps": 4, "eval_steps": [0, 4]})
    waiting = Plan("t", ["06_tma"], [], unsized={"06_tma": Unsized("tma_comparison", 1, "the pools are embedded")})
    ready = Plan("t", ["06_tma"], [PlannedRun("06_tma", "tma_comparison", "NFT", 0, "split_seed", sized)])
    monkeypatch.setattr(book, "book_plan", lambda profile, only=None, size=False: ready if size else waiting)
    trained: list[Plan] = []
    monkeypatch.setattr(book, "train_missing", lambda plan, *a, **k: trained.append(plan))
    lines: list[str] = []
    book.train_plan("t", log=lines.append)
    renders = [line for line in lines if line.startswith("plan for profile t")]
    assert len(renders) == 2 and "+1 runs of tma_comparison" in renders[0]
    assert re.search(r"06_tma +1 runs, +0 stored, +1 to train", renders[1]) and trained == [ready]
