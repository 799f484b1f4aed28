"""experiments: grids of runs; compare: tidy curves, curve shapes; stats: intervals, gaps; predict: E3's
prefix measures from the received batches, window changes and predictive power."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from zsg_core import compare, experiments, findings, predict, stats
from zsg_core.config import run_params
from zsg_core.data import DataError, Record
from zsg_core.embed import Encoder

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`

SMOKE = dict(model="tiny-llama", train_per_task=4, test_per_task=2, max_len=256, batch_size=4, lr=1e-3,
             frozen_layers=2, max_steps=4, eval_steps=[0, 2, 4])


def test_run_params_keeps_only_run_parameters():
    assert run_params({"lr": 1e-3, "arrangement_seeds": [0], "n_boot": 9, "model": "m", "tma_budget": 4}) == \
        {"lr": 1e-3, "model": "m", "tma_budget": 4}


def test_a_grid_runs_each_config_once_and_curves_are_tidy(tmp_path, monkeypatch):
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))
    lines: list[str] = []
    results = experiments.run_arrangements(SMOKE, {"cluster": {"arrangement": "cluster"}, "random": {"arrangement": "random"}},
                                       seeds=[0, 1], log=lines.append)
    assert sorted(results) == [("cluster", 0), ("random", 0), ("random", 1)]  # a fixed order: one run
    assert len(list(tmp_path.glob("*/complete"))) == 3
    curves = compare.loss_curves(results)
    assert list(curves.columns) == ["label", "seed", "split", "order_seed", "step", "loss"]
    assert sorted(curves.step.unique()) == [0, 2, 4]
    assert curves[curves.label == "random"].order_seed.unique().tolist() == [0, 1]  # from each run's config
    assert curves[curves.label == "cluster"].order_seed.unique().tolist() == [0]  # a fixed order has no seed
    r = results[("random", 1)]
    assert np.allclose(curves[(curves.label == "random") & (curves.seed == 1)].loss, r.mean_loss().to_numpy())
    # all orders start from the same weights on the same test set
    assert curves[curves.step == 0].loss.nunique() == 1
    cost = compare.run_costs({"grid": results}, results)  # nested and repeated: each run counted once
    assert cost.startswith("3 runs; ") and f"CPU kind {r.manifest['machine']['cpu_capability']}" in cost
    assert f"in {r.config.train.precision}." in cost and r.config.train.precision in ("bf16", "fp32")
    assert " training, " in cost and "probing" not in cost  # a part no run spent time on is not named
    threads = r.manifest["machine"]["threads"]
    assert re.search(rf"\b{threads} thread{'s' if threads != 1 else ''},", cost) and not re.search(r"\b1 threads", cost)
    assert compare.run_costs(r).startswith("1 run; ")  # one run, named in the singular
    with pytest.raises(DataError, match="no runs"):
        compare.run_costs({})
    groups = {t: "even" if i % 2 else "odd" for i, t in enumerate(sorted(r.eval_loss.task.unique()))}
    tokens = compare.loss_curves(results, weight="tokens")  # every answer token weighs the same
    t = r.eval_loss
    by_hand = (t.loss * t.tokens).groupby(t.step).sum() / t.tokens.groupby(t.step).sum()
    got = tokens[(tokens.label == "random") & (tokens.seed == 1)].set_index("step").loss
    assert np.allclose(got, by_hand) and t.tokens.nunique() > 1 and not np.allclose(got, r.mean_loss())
    with pytest.raises(DataError, match="unknown weight"):
        compare.loss_curves(results, weight="answers")
    by_group = compare.loss_curves(results, by=groups)
    assert set(by_group.group) == {"even", "odd"}
    with pytest.raises(DataError, match="no group"):
        compare.loss_curves(results, by={})
    # groups keyed by different seeds may hold the same run: it is counted once
    again = compare.loss_curves(results, {("random", 7): results[("random", 0)]})
    assert len(again) == len(curves)
    # what a run received, with tasks and families from its own split
    from zsg_core.data import task_family
    from zsg_core.split import load_split

    split = load_split(r.config.split, r.config.model)
    got = compare.received(r)
    assert got.id.tolist() == r.batches.id.tolist()
    task_of = {x.id: x.task for x in split.train}
    assert (got.task == got.id.map(task_of)).all()
    held = {task_family(x.task) for x in split.test}
    first_two = got[got.step <= 2]
    assert compare.sibling_share(r, 2) == pytest.approx(first_two.task.map(task_family).isin(held).mean())
    assert compare.epoch_steps(r) == -(-len(split.train) // 4)
    tasks = compare.task_curves(results)
    assert set(tasks.task) == set(r.eval_loss.task)
    lead = compare.leading_family(r, 2)
    assert lead["instances"] == len(first_two) and 0 < lead["its share"] <= 1
    assert lead["leading family"] == first_two.task.map(task_family).value_counts().index[0]
    assert lead["leading task's share"] == first_two.task.value_counts().iloc[0] / len(first_two)
    # the answer-format table (issue 32 item 7 b) and the loss read without / only its EOS (c)
    chars = {x.id: len(x.response) for x in [*split.train, *split.test]}
    form = compare.answer_format(r, 2).set_index("task")
    early = np.log2(np.mean([chars[i] for i in first_two.id]) + 1)
    for task, g in r.eval_loss[r.eval_loss.step == 0].groupby("task"):
        length = np.log2(g.id.map(chars).mean() + 1)
        assert form.loc[task, "held-out length"] == pytest.approx(length)
        assert form.loc[task, "mismatch"] == pytest.approx(abs(length - early))
    e = r.eval_loss
    answer = r.task_loss("answer").stack()
    whole = e.assign(a=(e.loss * e.tokens - e.eos_loss) / (e.tokens - 1)).groupby(["step", "task"]).a.mean()
    assert np.allclose(answer.sort_index().to_numpy(), whole.sort_index().to_numpy())
    assert np.allclose(r.task_loss("eos").stack().sort_index().to_numpy(),
                       e.groupby(["step", "task"]).eos_loss.mean().sort_index().to_numpy())
    assert set(compare.task_curves(results, measure="eos").columns) == set(tasks.columns)
    with pytest.raises(DataError, match="unknown loss measure 'tail'"):
        r.task_loss("tail")
    with pytest.raises(DataError, match="seed_param"):
        experiments.run_arrangements(SMOKE, {}, seed_param="seed")
    with pytest.raises(DataError, match="unknown run parameter"):
        experiments.run_arrangements({**SMOKE, "learning_rate": 1}, {"r": {"arrangement": "random"}})
    # train=False reads the store and never trains: what is stored comes back, the rest is left out
    again = experiments.run_arrangements(SMOKE, {"random": {"arrangement": "random"}}, seeds=[1, 5], train=False)
    assert list(again) == [("random", 1)] and again[("random", 1)].folder == results[("random", 1)].folder
    assert len(list(tmp_path.glob("*/complete"))) == 3


def test_over_units_interval_and_holm():
    e = stats.over_units([1.0, 2.0, 3.0])
    assert e.value == 2.0 and e.lo < 2.0 < e.hi and math.isclose(e.hi - 2.0, 4.303 / math.sqrt(3), rel_tol=1e-3)
    assert e.n == 3 and e.lo < 0 and 0.05 < e.p < 0.1  # the interval reaches 0 exactly when p > 0.05
    assert stats.over_units([1.0, 1.1, 0.9]).p < 0.05
    one = stats.over_units([5.0])
    assert not one.has_interval and math.isnan(one.p)
    for few in ([0.2, 0.2], [0.2, 0.2, 0.2], [0.1, 0.3]):  # two units, or no spread: no interval, no verdict
        e = stats.over_units(few)
        assert not e.has_interval and math.isnan(e.p) and e.n == len(few), few
        assert findings.verdict(e, "<") == "inconclusive" and findings.verdict(e, ">") == "inconclusive"
    with pytest.raises(DataError, match="at least one"):
        stats.over_units([float("nan")])
    adjusted = stats.holm([0.01, 0.04, float("nan"), 0.03])
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06) and math.isnan(adjusted[2])  # monotone; NaN not counted


def _split_table(offsets: dict[str, dict[int, list[float]]], steps=(0, 5), tasks=("t0", "t1")) -> pd.DataFrame:
    """label -> split -> one offset per order seed; every task gets the same curve plus its offset."""
    return pd.DataFrame([{"label": label, "seed": split, "split": split, "order_seed": seed, "task": task,
                          "step": s, "loss": 2 - s / 10 + offset + (0.01 if task == "t1" else 0)}
                         for label, by_split in offsets.items() for split, per_seed in by_split.items()
                         for seed, offset in enumerate(per_seed) for task in tasks for s in steps])


def test_split_gap_has_the_split_as_unit():
    table = _split_table({"a": {0: [0.10], 1: [0.12], 2: [0.11]}, "b": {0: [0.0, 0.02, -0.02], 1: [0.0], 2: [0.0]}})
    means = stats.split_means(table, "a", "b", step=5)
    assert means.split.tolist() == [0, 1, 2]
    assert means["diff"].tolist() == pytest.approx([0.10, 0.12, 0.11])  # b's three shuffles averaged on split 0
    gap = stats.split_gap(table, "a", "b")
    assert gap.n.tolist() == [3, 3] and (gap.lo > 0).all() and gap["diff"].tolist() == pytest.approx([0.11, 0.11])
    both = stats.split_gaps(table, [("a", "b"), ("b", "a")])
    assert set(both.comparison) == {"a - b", "b - a"}
    noise = stats.noise_sources(table, "a", "b", 5)
    assert noise["splits"] == 3 and noise["shuffles"] == 3
    assert noise["between splits"] == pytest.approx(0.01) and noise["shuffles within a split"] == pytest.approx(0.02)
    with pytest.raises(DataError, match="no curve"):
        stats.split_gap(table, "a", "c")
    with pytest.raises(DataError, match="columns"):
        stats.split_gap(table.drop(columns="split"), "a", "b")
    run_level = table.groupby(["label", "seed", "split", "order_seed", "step"]).loss.mean().reset_index()
    by_run = stats.split_means(run_level, "a", "b", step=5)  # no task column: one unit per run (a token average)
    assert by_run["diff"].tolist() == pytest.approx([0.10, 0.12, 0.11])
    lonely = _split_table({"a": {0: [0.1]}, "b": {1: [0.0]}})
    with pytest.raises(DataError, match="share no split"):
        stats.split_gap(lonely, "a", "b")


def test_change_step_and_jitter():
    steps = [0, 2, 4, 6, 8, 10]
    falling = [4.0, 2.0, 1.4, 1.05, 1.0, 0.95]
    assert compare.plateau(steps, falling) == pytest.approx(1.0)
    assert compare.change_step(steps, falling, 0.8) == 4  # (4 - 1.4) / 3 = 0.87
    rising = [0, 30, 38, 40, 40, 40]
    assert compare.change_step(steps, rising, 0.8) == 4
    assert compare.change_step(steps, [1, 1, 1, 1]) is None
    smooth = compare.jitter(steps, falling, after=4)
    noisy = compare.jitter(steps, [4.0, 2.0, 1.4, 0.6, 1.4, 0.95], after=4)
    assert 0 < smooth < noisy
    assert math.isnan(compare.jitter(steps, [1, 1, 1, 1, 1, 1], after=0))


def _record(i: int, task: str, text: str) -> Record:
    return Record(id=f"{task}-{i}", task=task, messages=[{"role": "user", "content": text},
                                                         {"role": "assistant", "content": "yes it is"}])


def test_prefix_table_measures_what_was_received(tmp_path):
    encoder = Encoder(cache=tmp_path)  # the real MiniLM, on a few texts
    topics = ["cats", "tax law", "chess openings", "rain", "poems", "bridges"]
    train = [_record(i, f"t{i % 3}", f"a note about {topics[i % 6]}, number {i}") for i in range(12)]
    test = [_record(0, "x", "held out text about cats"), _record(1, "x", "another held out one")]
    by_id = {r.id: r for r in train}
    ids = [r.id for r in train]
    table = predict.prefix_table({("fwd", 0): ids, ("rev", 0): ids[::-1]}, by_id, test, steps=[0, 1, 2, 3],
                                 batch_size=4, encoder=encoder)
    assert sorted(table.step.unique()) == [1, 2, 3] and set(table.label) == {"fwd", "rev"}
    assert set(table.measure) == set(predict.ALL_MEASURES)
    fwd = table[table.label == "fwd"]
    cmin = fwd[fwd.measure == "Cosine-Min"].sort_values("step").value.to_numpy()
    cmax = fwd[fwd.measure == "Cosine-Max"].sort_values("step").value.to_numpy()
    assert (np.diff(cmin) <= 0).all() and (np.diff(cmax) >= 0).all()  # running min / max over a growing prefix

    def avg(label: str, step: int) -> float:
        return table[(table.label == label) & (table.step == step) & (table.measure == "Cosine-Avg")].value.item()

    assert avg("fwd", 1) != pytest.approx(avg("rev", 1))  # another order: another prefix at step 1
    assert avg("fwd", 3) == pytest.approx(avg("rev", 3))  # the whole list seen: order no longer matters
    with pytest.raises(DataError, match="past the"):
        predict.prefix_table({("a", 0): ids}, by_id, test, steps=[4], batch_size=4, encoder=encoder)
    with pytest.raises(DataError, match="not training records"):
        predict.prefix_table({("a", 0): ["nope"] + ids}, by_id, test, steps=[1], batch_size=4, encoder=encoder)


def test_a_measure_that_drives_the_loss_is_found_and_noise_is_not():
    rng = np.random.default_rng(0)
    rows_loss, rows_measure = [], []
    for label in ("a", "b"):
        for t in range(12):
            level, driver, noise = 3.0, 0.0, 0.0
            for step in range(1, 11):
                d = rng.standard_normal()
                driver += d
                noise += rng.standard_normal()
                level += 0.5 * d + 0.1 * rng.standard_normal()  # the loss moves with the driver
                unit = {"label": label, "seed": 0, "task": f"t{t}", "step": step}
                rows_loss.append({**unit, "loss": level})
                rows_measure += [{**unit, "measure": "driver", "value": driver},
                                 {**unit, "measure": "unrelated", "value": noise}]
    changes = predict.window_changes(pd.DataFrame(rows_loss), pd.DataFrame(rows_measure))
    assert set(changes.measure) == {"driver", "unrelated", predict.NULL_MEASURE}
    assert len(changes[changes.measure == "driver"]) == 2 * 12 * 9
    power = predict.predictive_power(changes, n_boot=100).set_index("measure")
    assert power.loc["driver", "within_lo"] > 0.5
    assert power.loc["unrelated", "within_lo"] < 0 < power.loc["unrelated", "within_hi"]
    assert power.index[0] == "driver"
    with pytest.raises(DataError, match="columns"):
        predict.window_changes(pd.DataFrame(rows_loss).drop(columns="task"), pd.DataFrame(rows_measure))


def _task_table(curves_by_label: dict[str, dict[str, list[float]]], steps: list[int]) -> pd.DataFrame:
    return pd.DataFrame([{"label": label, "seed": 0, "split": 0, "order_seed": 0, "task": task, "step": s, "loss": v}
                         for label, tasks in curves_by_label.items() for task, values in tasks.items()
                         for s, v in zip(steps, values)])


def test_sudden_drops_are_measured_against_the_baseline_order():
    steps = [0, 2, 4, 6]
    table = _task_table({"cluster": {"a": [3, 2.9, 2.8, 1.0], "b": [3, 2.0, 1.5, 1.4]},
                         "random": {"a": [3, 2.5, 2.0, 1.8], "b": [3, 2.0, 1.5, 1.4]}}, steps)
    drops = compare.sudden_drops(table, "cluster", "random").set_index("task")
    assert drops.loc["a", "start"] == 4 and drops.loc["a", "step"] == 6
    assert drops.loc["a", "excess"] == pytest.approx(1.8 - 0.2)
    assert drops.loc["b", "excess"] == pytest.approx(0.0)  # same curve: nothing sudden
    assert drops.index[0] == "a" and (drops.start > 0).all()  # the window from step 0 is never counted


def test_excess_windows_count_every_window_once_per_split():
    steps = [0, 2, 4, 6]
    rows = []
    for split in (0, 1):
        table = _task_table({"cluster": {"a": [3, 2.9, 2.8, 1.0], "b": [3, 2.0, 1.5, 1.4]},
                             "random": {"a": [3, 2.5, 2.0, 1.8], "b": [3, 2.0, 1.5, 1.4]}}, steps)
        rows.append(table.assign(split=split))
    windows = compare.excess_windows(pd.concat(rows), "cluster", "random")
    assert len(windows) == 2 * 2 * 2  # splits x tasks x windows after the first evaluation
    a = windows[(windows.split == 0) & (windows.task == "a")].set_index("start").excess
    assert a.loc[2] == pytest.approx(0.1 - 0.5) and a.loc[4] == pytest.approx(1.8 - 0.2)
    assert (windows[windows.task == "b"].excess.abs() < 1e-12).all()


def test_decline_kinds_and_metric_shapes():
    steps = [0, 2, 4, 6, 8, 10]
    task_mean = pd.DataFrame([{"task": t, "step": s, "loss": v} for t, values in
                              {"fast": [4, 1.5, 1.1, 1.0, 1.0, 1.0], "slow": [4, 3.6, 3.2, 2.6, 2.1, 2.0],
                               "flat": [2, 2.1, 2.2, 2.3, 2.3, 2.3]}.items() for s, v in zip(steps, values)])
    kinds = compare.decline_kinds(task_mean, {"fast": "A", "slow": "B", "flat": "B"}, rapid_by=4).set_index("task")
    assert kinds.kind.to_dict() == {"fast": "rapid", "slow": "gradual", "flat": "gradual"}
    assert kinds.loc["flat", "fall"] < 0 and kinds.loc["fast", "group"] == "A"
    # one run: greedy on fixed ids a, b; the paper protocol on another id at each step. The loss is
    # read on the instances each protocol generated (issue 32 item 3), not on every held-out one.
    from types import SimpleNamespace

    loss_of = {"a": [4, 2, 1.5, 1.4, 1.4, 1.4], "b": [4, 2.2, 1.6, 1.5, 1.5, 1.5], "c": [4, 3, 9, 1, 9, 1]}
    eval_loss = pd.DataFrame([{"step": s, "id": i, "task": "t", "loss": v}
                              for i, values in loss_of.items() for s, v in zip(steps, values)])
    made = [("greedy", s, i, r) for s, r in zip([0, 4, 10], [5, 30, 12]) for i in ("a", "b")] \
        + [("paper", s, "c", r) for s, r in zip([0, 4, 10], [5, 30, 31])]
    generations = pd.DataFrame([{"step": s, "protocol": p, "id": i, "task": "t", "prediction": "x", "rouge1": r,
                                 "rougeL": r, "exact_match": 0.0, "reward": None} for p, s, i, r in made])
    run = SimpleNamespace(generations=generations, eval_loss=eval_loss, folder=SimpleNamespace(name="r"),
                          config=SimpleNamespace(split=SimpleNamespace(seed=7), key=lambda: "r"))
    jitters = compare.metric_jitters({("random", 0): run})
    assert set(jitters.seed) == {0} and set(jitters.split) == {7} and len(jitters) == 2 * (1 + len(compare.METRIC_NAMES))
    loss_rows = jitters[jitters.metric == "held-out loss"].set_index("protocol")
    ab = [(x + y) / 2 for x, y in zip(loss_of["a"], loss_of["b"])]
    assert loss_rows.loc["greedy", "jitter"] == pytest.approx(compare.jitter([0, 4, 10], [ab[0], ab[2], ab[5]], after=4))
    assert loss_rows.loc["paper", "jitter"] > loss_rows.loc["greedy", "jitter"]  # c's loss at 0, 4, 10: 4, 9, 1
    shapes = compare.metric_shapes(jitters[jitters.protocol == "greedy"]).set_index("metric")
    assert shapes.index[0] == "held-out loss"  # the steadiest here
    assert shapes.loc["ROUGE-1", "jitter_mean"] > shapes.loc["held-out loss", "jitter_mean"]
    run.eval_loss = eval_loss[eval_loss.step != 4]
    with pytest.raises(DataError, match="generated at steps it did not evaluate"):
        compare.metric_jitters({("random", 0): run})


def test_comparisons_are_evaluated_where_they_are_read():
    from zsg_core.train import comparison_schedule

    p = experiments.compared({**SMOKE, "generate_steps": [0, 4]})
    assert p["generate_steps"] == [] and p["eval_steps"] == list(comparison_schedule(SMOKE["max_steps"]))
    longer = experiments.compared(SMOKE, 16)
    assert longer["max_steps"] == 16 and longer["eval_steps"][-1] == 16
    whole = experiments.compared({k: v for k, v in SMOKE.items() if k != "eval_steps"} | {"max_steps": None})
    assert "eval_steps" not in whole  # a whole-epoch run's length is known late: the dense schedule


def test_a_regime_changes_the_set_up_and_may_stop_early(tmp_path, monkeypatch):
    """Chapter 7's regimes: the profile's NFT / FFT / RT, and the same under each set-up, a slow
    one stopping at the reading point with the evaluations that fit; the order and the split
    are not a set-up's to change."""
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))
    base = {**SMOKE, "max_steps": 4}
    setups = experiments.regimes(base, {"shorter, lr / 10": {"max_steps": 2, "lr": 1e-4}}, [0], [0], log=lambda m: None)
    assert sorted(setups) == ["profile", "shorter, lr / 10"]
    for name, steps, lr in (("profile", 4, 1e-3), ("shorter, lr / 10", 2, 1e-4)):
        assert sorted(setups[name]) == [("FFT", 0), ("NFT", 0), ("RT", 0)]
        for r in setups[name].values():
            assert r.config.train.lr == lr and r.config.train.max_steps == steps
            assert max(r.config.train.eval_steps) == steps and len(r.batches.step.unique()) == steps
    with pytest.raises(DataError, match="not the order or the split"):
        experiments.regimes(base, {"odd": {"arrangement": "random"}}, [0], [0], log=lambda m: None)


def test_tma_runs_train_the_same_instances_and_round_groups_the_same_steps(tmp_path, monkeypatch):
    """E6 and E8 as chapter 6 runs them, read back from the batches each model received."""
    from zsg_core.arrange import TMA_POOL_SEED, pool_rounds, tma_layout
    from zsg_core.embed import embed_records
    from zsg_core.split import load_split

    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))
    params = {**SMOKE, "split_seed": 0, "batch_size": 16}  # one pass is a few steps
    plan = experiments.tma_plan(params, [0], pool_per_task=4, near_rounds=1, round_width=1, round_starts=[0, 2])
    said: list[str] = []  # sizing again from cached embeddings embeds nothing, and says nothing
    assert experiments.tma_plan(params, [0], 4, 1, 1, [0, 2], log=said.append) == plan and said == []
    cold = tmp_path / "cold"  # from an empty embedding cache, each split says where sizing is
    monkeypatch.setattr(experiments, "Encoder", lambda: Encoder(cache=cold))
    assert experiments.tma_plan(params, [0], 4, 1, 1, [0, 2], log=said.append) == plan
    assert len(said) == 1 and said[0].startswith(f"TMA pool of split 0 (1 of 1): {plan.pool[0]} instances, ")
    monkeypatch.undo()
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))
    runs = experiments.tma_comparison(params, plan, [0], [0], log=lambda m: None)  # split 0 whole: with MIN and MAX
    assert sorted(runs["extremes"]) == [("MAX", 0), ("MIN", 0)]
    assert compare.same_instances(runs["by_split"], ["NFT", "FFT", "RT"]) == {0: True}
    nft = runs["by_split"][("NFT", 0)]
    assert len(nft.batches) == int(nft.manifest["train_instances"])  # one whole pass: nothing left untrained
    assert len(nft.batches) == plan.selected[0]["tma-nft"]  # the plan sized the schedule from the same layout
    assert 0 < plan.near_end[0] <= plan.selected[0]["tma-nft"] and plan.fft_near_start[0] < plan.selected[0]["tma-fft"]
    assert nft.batches.step.max() == compare.epoch_steps(nft)
    groups = experiments.round_groups(params, plan, 1, [0, 2], [0], log=lambda m: None)
    split = load_split(nft.config.split, nft.config.model)
    x, t = embed_records(split.train, "first-turn", Encoder()), embed_records(split.test, "first-turn", Encoder())
    rounds = pool_rounds(x, t, "min", None, TMA_POOL_SEED)
    assert plan.min_rounds[0] == rounds and plan.group_size % params["batch_size"] == 0
    layouts = {v: tma_layout(x, t, v, plan.budget) for v in ("nft", "fft", "min", "max")}  # what the runs arrange
    assert {f"tma-{v}": len(order) for v, (order, _) in layouts.items()} | {"tma-rt": len(layouts["nft"][0])} \
        == plan.selected[0]
    order, label = layouts["nft"]
    assert plan.near_end[0] == sum(label[i][0] == "min" for i in order)
    order, label = layouts["fft"]
    assert plan.fft_near_start[0] == next(k for k, i in enumerate(order) if label[i][0] == "min")
    for start in (0, 2):
        got = groups[(experiments.round_label(start, 1), 0)].batches
        assert len(got) == plan.group_size  # every group the same count, so the same steps and schedule
        assert got.id.tolist() == [split.train[i].id for i in rounds[start][: plan.group_size]]
    other = {("NFT", 0): nft, ("FFT", 0): groups[(experiments.round_label(0, 1), 0)]}
    assert compare.same_instances(other, ["NFT", "FFT"]) == {0: False}
    # On a split not drawn whole, NFT / FFT / RT stop where NFT leaves its near half, under the whole
    # pass's schedule: every number the chapter reads there (steps up to the stop) is the whole run's.
    stop = experiments.near_half_stop(plan, 0, params["batch_size"])
    cut = experiments.tma_comparison(params, plan, [0], [0], whole_on=[], log=lambda m: None)
    assert cut["extremes"] == {} and 0 < stop < compare.epoch_steps(nft)
    for label in ("NFT", "FFT", "RT"):
        whole, short = runs["by_split"][(label, 0)], cut["by_split"][(label, 0)]
        assert short.config.train.max_steps == stop and short.batches.step.max() == stop
        assert compare.epoch_steps(short) == compare.epoch_steps(whole)  # the same schedule horizon
        assert short.batches.equals(whole.batches[whole.batches.step <= stop].reset_index(drop=True))
        assert short.train_log[["step", "lr", "loss"]].equals(whole.train_log[whole.train_log.step <= stop][["step", "lr", "loss"]].reset_index(drop=True))
        both = set(whole.eval_loss.step) & set(short.eval_loss.step)
        assert both == {s for s in whole.eval_loss.step if s <= stop}  # every evaluation the whole run made by then
        pair = [r.eval_loss[r.eval_loss.step.isin(both)].sort_values(["step", "id"]).reset_index(drop=True)
                for r in (short, whole)]
        pd.testing.assert_frame_equal(*pair, check_exact=True)
    assert stop in set(cut["by_split"][("NFT", 0)].eval_loss.step)


def test_feature_costs_read_what_the_runs_that_computed_each_representation_spent():
    from pathlib import Path

    from zsg_core.config import run_config
    from zsg_core.runs import RunResult

    def result(seed: int, features: str, manifest: dict, arrangement: str = "nft", **split) -> RunResult:
        config = run_config(model="tiny-llama", split_seed=seed, arrangement=arrangement, features=features, **split)
        empty = pd.DataFrame()
        return RunResult(config, Path("."), {"prepare_seconds": 1.0, **manifest}, empty, empty, empty, empty)

    runs = {("NFT (hidden)", 0): result(0, "hidden", {"features_seconds": {"hidden": 90.0}}),
            ("NFT (gradient)", 0): result(0, "gradient", {"features_seconds": {"gradient (held-out only)": 170.0}}),
            ("NFT", 0): result(0, "minilm", {"texts_embedded": 2500, "prepare_seconds": 130.0}),
            ("FFT", 0): result(0, "minilm", {"texts_embedded": 7, "prepare_seconds": 9.0}, arrangement="fft")}  # a few new texts later
    table = compare.feature_costs(runs, {("NFT", 0): runs[("NFT", 0)]})  # the same run twice is counted once
    rows = {(r.kind, r.part): (r.seconds, r.texts) for r in table.itertuples()}
    assert rows == {("hidden", "whole split"): (90.0, 0), ("gradient", "held-out side"): (170.0, 0),
                    ("minilm", "whole split"): (130.0, 2500)}
    assert compare.feature_costs({}).empty
    # a split with the same seed but another pool is another split: its embedding is its own row
    pool = {("NFT", 0): result(0, "minilm", {"texts_embedded": 9000, "prepare_seconds": 400.0}, pool_per_task=60)}
    both = compare.feature_costs(runs, pool)
    assert sorted(both[both.kind == "minilm"].texts) == [2500, 9000]
