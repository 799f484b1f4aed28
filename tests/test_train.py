"""Order-preserving training: the batches the model actually received, on one process and two;
the paper's optimiser schedule; resuming; validation of the training parameters."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zsg_core.data import DataError
from zsg_core.model import TunedLM
from zsg_core.packing import Pack
from zsg_core.train import (
    NotFiniteError,
    TrainConfig,
    comparison_schedule,
    dense_schedule,
    step_plan,
    train,
)

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from ddp_order import records  # noqa: E402

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`

SCRIPTS = Path(__file__).parent / "scripts"
QUIET = dict(log=lambda s: None)


@pytest.mark.parametrize("frozen", [0, 2])
def test_batches_the_model_received_are_the_arranged_list_in_order(frozen, tmp_path):
    items = records(30)
    arranged = items[::-1][:5] + items[5:25][::-1] + items[:5]  # any order: it must be kept exactly
    lm = TunedLM("tiny-llama", frozen_layers=frozen, hidden_cache=tmp_path)
    by_targets = {tuple(it.targets.tolist()): it.id for it in lm.items(items)}
    seen: list[str] = []
    lm.loss.register_forward_pre_hook(
        lambda m, a: seen.extend(by_targets[t] for t in Pack.item_targets(a)) if m.training else None)
    result = train(lm, arranged, items[:3], TrainConfig(lr=1e-3, batch_size=4, max_steps=6), **QUIET)
    expected = [r.id for r in arranged[:24]]
    assert seen == expected  # what went through the model, item by item in its packed rows
    assert list(result.batches.id) == expected  # and what the run recorded
    assert list(result.batches.step) == [k // 4 + 1 for k in range(24)]


@pytest.mark.slow
def test_two_processes_take_contiguous_halves_of_each_global_batch(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    for frozen in (0, 2):
        out = tmp_path / f"f{frozen}"
        out.mkdir()
        proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(29500 + frozen),
                               str(SCRIPTS / "ddp_order.py"), str(out), str(frozen)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        ids = [r.id for r in records(40)][:28]  # 7 steps x global batch 4
        rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
        assert rank0 == [i for k in range(7) for i in ids[4 * k: 4 * k + 2]]
        assert rank1 == [i for k in range(7) for i in ids[4 * k + 2: 4 * k + 4]]
        batches = json.loads((out / "batches.json").read_text())
        assert [b["id"] for b in batches] == ids  # gathered in rank order: global batch k = items [4k, 4k+4)
        assert {e["step"] for e in json.loads((out / "eval.json").read_text())} == {0, 7}


def test_schedule_is_the_papers_cosine_to_a_tenth(tmp_path):
    items = records(40)
    lm = TunedLM("tiny-llama", hidden_cache=tmp_path)
    result = train(lm, items, items[:2], TrainConfig(lr=2e-3, batch_size=4, max_steps=6, eval_steps=()), **QUIET)
    horizon = 10  # the whole epoch, although only 6 steps run (as the paper)
    for step, lr in zip(result.train_log.step, result.train_log.lr):
        t = step - 1  # the lr used by step k was set after k - 1 updates
        assert lr == pytest.approx(2e-3 * (0.1 + 0.45 * (1 + math.cos(math.pi * t / horizon))))
    assert result.stats["epoch_steps"] == horizon


def test_frozen_layers_do_not_move_and_trained_ones_do(tmp_path):
    items = records(16)
    lm = TunedLM("tiny-llama", frozen_layers=2, hidden_cache=tmp_path)
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    train(lm, items, items[:2], TrainConfig(lr=1e-2, batch_size=4, max_steps=3), **QUIET)
    for n, p in lm.model.named_parameters():
        moved = not torch.equal(before[n], p)
        assert moved == p.requires_grad, n
        assert moved == any(f"layers.{i}." in n for i in (2, 3)), n


def test_a_loss_that_is_not_finite_stops_the_run(tmp_path):
    """A NaN loss (weights gone bad here; an overflowing model or a diverging lr elsewhere) stops
    training at that step with an error naming it, instead of storing a run of NaNs."""
    items = records(16)
    lm = TunedLM("tiny-llama", frozen_layers=2, hidden_cache=tmp_path)

    def poison(step: int) -> None:
        if step == 2:
            with torch.no_grad():
                lm.trainable_parameters()[0].fill_(float("nan"))

    with pytest.raises(NotFiniteError, match="training loss at step 3"):
        train(lm, items, items[:2], TrainConfig(lr=1e-3, batch_size=4, max_steps=4, eval_steps=[0, 4]),
              on_step=poison, **QUIET)


class Killed(Exception):
    pass


def _interrupted(items, config: TrainConfig, work: Path, kill_step: int, checkpoint_every: int, cache: Path) -> None:
    """Train until just after step `kill_step`, as a killed process would, leaving its checkpoint."""
    def die(step: int) -> None:
        if step == kill_step:
            raise Killed

    with pytest.raises(Killed):
        train(TunedLM("tiny-llama", frozen_layers=1, hidden_cache=cache), items, items[:4], config,
              workdir=work, on_step=die, checkpoint_every=checkpoint_every, **QUIET)


def test_resumed_training_equals_uninterrupted(tmp_path):
    items = records(40)
    config = TrainConfig(lr=1e-3, batch_size=4, max_steps=8)
    full = train(TunedLM("tiny-llama", frozen_layers=1, hidden_cache=tmp_path), items, items[:4], config, **QUIET)
    work = tmp_path / "work"
    _interrupted(items, config, work, kill_step=7, checkpoint_every=3, cache=tmp_path)
    assert json.loads((work / "state" / "state.json").read_text())["step"] == 6  # the last checkpoint
    resumed = train(TunedLM("tiny-llama", frozen_layers=1, hidden_cache=tmp_path), items, items[:4], config,
                    workdir=work, checkpoint_every=3, **QUIET)
    assert resumed.eval_loss.equals(full.eval_loss)
    assert resumed.batches.equals(full.batches)
    assert list(resumed.train_log.loss) == list(full.train_log.loss)


def test_an_unreadable_checkpoint_starts_the_run_over(tmp_path):
    items = records(16)
    config = TrainConfig(lr=1e-3, batch_size=4, max_steps=3)
    clean = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:2], config, **QUIET)
    work = tmp_path / "work"
    (work / "state").mkdir(parents=True)
    (work / "state" / "state.json").write_text('{"step": 2, "tables"')  # truncated
    messages: list[str] = []
    again = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:2], config, workdir=work,
                  log=messages.append)
    assert any(f"checkpoint {work / 'state'} is damaged or unreadable" in m for m in messages)
    assert again.eval_loss.equals(clean.eval_loss)


class _Planted:
    """What a hostile user would leave in a shared run store: a pickle that runs code when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_planted_pickle_checkpoint_is_never_loaded(tmp_path):
    """A resumable state is data only (safetensors + JSON); an old-style state.pt, here a pickle that
    would write a file when unpickled, is removed unread and the run starts over."""
    items = records(16)
    config = TrainConfig(lr=1e-3, batch_size=4, max_steps=3)
    clean = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:2], config, **QUIET)
    work, marker = tmp_path / "work", tmp_path / "pwned"
    work.mkdir()
    torch.save({"step": 2, "payload": _Planted(marker)}, work / "state.pt")
    messages: list[str] = []
    again = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:2], config, workdir=work,
                  log=messages.append)
    assert not marker.exists()  # nothing was executed
    assert not (work / "state.pt").exists() and any("pickle checkpoint" in m for m in messages)
    assert again.eval_loss.equals(clean.eval_loss)


@pytest.mark.parametrize("victim", ["weights.safetensors", "state.json", "checksums.json"])
def test_a_damaged_checkpoint_is_never_resumed_from(tmp_path, victim, flip_byte):
    """One flipped byte anywhere in a checkpoint (a weight, a logged loss in the tables so far, the
    checksums themselves) and the run starts over instead of resuming from wrong numbers."""
    items, config = records(24), TrainConfig(lr=1e-3, batch_size=4, max_steps=5)
    clean = train(TunedLM("tiny-llama", frozen_layers=1, hidden_cache=tmp_path), items, items[:4], config, **QUIET)
    work = tmp_path / "work"
    _interrupted(items, config, work, kill_step=4, checkpoint_every=2, cache=tmp_path)
    path = work / "state" / victim
    raw = path.read_bytes()
    flip_byte(path, {"weights.safetensors": -3, "state.json": raw.rfind(b'"loss": ') + 9,
                     "checksums.json": raw.find(b'"sha256": "') + 12}[victim])
    messages: list[str] = []
    again = train(TunedLM("tiny-llama", frozen_layers=1, hidden_cache=tmp_path), items, items[:4], config,
                  workdir=work, log=messages.append, checkpoint_every=2)
    assert any(f"checkpoint {work / 'state'} is damaged or unreadable" in m for m in messages), messages
    assert not any("resuming" in m for m in messages)
    assert again.eval_loss.equals(clean.eval_loss) and list(again.train_log.loss) == list(clean.train_log.loss)


def test_generations_and_reward_scores_at_chosen_steps(tmp_path, tiny_reward_model):
    items = records(16)
    base = dict(lr=1e-3, batch_size=4, max_steps=2, eval_steps=(), generate_steps=(0, 2), max_new_tokens=3,
                generate_per_task=1)
    plain = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:6], TrainConfig(**base), **QUIET)
    g = plain.generations
    assert list(g.step.unique()) == [0, 2] and len(g) == 2 * 5  # one per task (5 tasks among 6 items)
    assert g.reward.isna().all()  # no reward model given: no number stands in for one
    assert g[["rouge1", "rougeL", "exact_match"]].notna().all().all()
    scored = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:6],
                   TrainConfig(**base, reward_model=str(tiny_reward_model)), **QUIET)
    assert scored.generations.reward.notna().all()
    sampled = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:6],
                    TrainConfig(**base, generate_protocol="paper"), **QUIET).generations
    assert sampled.groupby("step").size().tolist() == [5, 5] and set(sampled.protocol) == {"paper"}
    both = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:6],
                 TrainConfig(**base, generate_protocol="both"), **QUIET).generations
    assert both.groupby(["step", "protocol"]).size().tolist() == [5, 5, 5, 5]
    greedy = both[both.protocol == "greedy"].reset_index(drop=True)
    assert greedy.prediction.tolist() == g.prediction.tolist()  # sampling first or not, greedy is the same


def test_the_paper_protocol_draws_its_own_subsets_for_each_shuffle():
    """Issue 32 item 3: the paper protocol's subset (and sampling seed) come from the training seed,
    the order's seed and the step, so shuffles of one split are independent units; greedy prompts
    stay fixed."""
    from zsg_core.train import _generation_subset, generation_seed

    items = records(60)
    config = TrainConfig(generate_per_task=1, generate_protocol="both")
    draws = {seed: _generation_subset(items, config, 4, "paper", order_seed=seed) for seed in (0, 1, 2)}
    assert len({tuple(d) for d in draws.values()}) == 3
    assert _generation_subset(items, config, 4, "paper", order_seed=1) == draws[1]
    assert _generation_subset(items, config, 4, "greedy", order_seed=0) == _generation_subset(items, config, 4, "greedy", 2)
    assert len({generation_seed(config, s, 4) for s in (0, 1, 2)}) == 3


def test_generating_does_not_change_training(tmp_path):
    """Runs with and without generation share one trajectory: a chapter may compare them."""
    items = records(16)
    base = dict(lr=1e-3, batch_size=4, max_steps=3, eval_steps=(0, 3), max_new_tokens=3, generate_per_task=1)
    quiet = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:6], TrainConfig(**base), **QUIET)
    talking = train(TunedLM("tiny-llama", hidden_cache=tmp_path), items, items[:6],
                    TrainConfig(**base, generate_steps=(0, 1, 3), generate_protocol="both"), **QUIET)
    assert talking.eval_loss.equals(quiet.eval_loss) and list(talking.train_log.loss) == list(quiet.train_log.loss)


def test_plan_and_parameters_are_checked():
    assert dense_schedule(30) == (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 25, 30)
    assert comparison_schedule(60) == (0, 5, 10, 15, 20, 30, 40, 50, 60)
    assert comparison_schedule(230)[-4:] == (175, 200, 225, 230) and len(comparison_schedule(230)) == 19
    assert comparison_schedule(7) == (0, 5, 7)
    assert step_plan(10, TrainConfig(batch_size=4)) == (3, 3, dense_schedule(3))
    assert step_plan(10, TrainConfig(batch_size=4), world_size=2)[1] == 2  # the partial batch is dropped
    with pytest.raises(DataError, match="empty"):
        step_plan(0, TrainConfig())
    with pytest.raises(DataError, match="more than one epoch"):
        step_plan(10, TrainConfig(batch_size=4, max_steps=4))
    with pytest.raises(DataError, match="eval_steps asks for step 9"):
        step_plan(40, TrainConfig(batch_size=4, max_steps=5, eval_steps=(0, 9)))
    with pytest.raises(DataError, match="not divisible"):
        step_plan(40, TrainConfig(batch_size=3), world_size=2)
    with pytest.raises(DataError, match="unknown training parameter"):
        TrainConfig.from_dict({"learning_rate": 1e-4})
    with pytest.raises(DataError, match="lr"):
        TrainConfig(lr="fast")
    with pytest.raises(DataError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(DataError, match="eval_steps"):
        TrainConfig(eval_steps=(0, -1))
    with pytest.raises(DataError, match="precision"):
        TrainConfig(precision="fp8")
