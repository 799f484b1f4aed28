"""Adaptive orders (issue 35): permutations of the training list, reproducible from their seed,
re-ranked on the schedule they declare, resumable; each decides from what its probe says."""
from __future__ import annotations

import json

import numpy as np
import pytest
from torch.utils.data import DataLoader

from zsg_core.adaptive import BatchSampler, GradientAligned, Lookahead, LossRounds
from zsg_core.data import DataError

N, B, TASKS = 23, 4, ["bb/a", "bb/b", "bb/c"]


class FakeProbe:
    """Answers from fixed tables, and counts what it was asked (and at which `clock`)."""

    def __init__(self, losses=None, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.grads = rng.normal(size=(N, 6))
        self.targets = {t: rng.normal(size=6) for t in TASKS}
        self.losses = losses or (lambda clock: {t: float(i) for i, t in enumerate(TASKS)})
        self.clock, self.asked = 0, []

    def validation_losses(self):
        self.asked.append(("losses", self.clock))
        return self.losses(self.clock)

    def train_gradients(self, positions):
        self.asked.append(("grads", self.clock))
        return self.grads[list(positions)]

    def validation_gradients(self):
        return self.targets

    def lookahead(self, positions):
        self.asked.append(("lookahead", self.clock))
        return float(sum(positions))  # the batch of the smallest positions lowers the loss most


def nearest(seed: int = 0) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {t: rng.permutation(N).tolist() for t in TASKS}


ORDERS = {
    "loss": lambda seed: LossRounds(nearest(), B, every=3, seed=seed),
    "gradient": lambda seed: GradientAligned(N, TASKS, B, every=2, seed=seed, candidates=10),
    "lookahead": lambda seed: Lookahead(N, B, candidates=3, seed=seed),
}


def hand_out(order, probe) -> list[list[int]]:
    batches = []
    while order.remaining:
        batches.append(order.next_batch(probe))
        probe.clock += 1
    return batches


@pytest.mark.parametrize("name", ORDERS)
def test_every_order_is_a_permutation_reproducible_from_its_seed(name):
    batches = hand_out(ORDERS[name](0), FakeProbe())
    flat = [p for b in batches for p in b]
    assert sorted(flat) == list(range(N)) and all(len(b) == B for b in batches[:-1])
    assert hand_out(ORDERS[name](0), FakeProbe()) == batches  # same seed, same answers: the same order
    with pytest.raises(DataError, match="exhausted"):
        ORDERS[name](0).__class__.next_batch(_exhausted(ORDERS[name](0)), FakeProbe())


def _exhausted(order):
    hand_out(order, FakeProbe())
    return order


@pytest.mark.parametrize("name", ["gradient", "lookahead"])
def test_a_seed_draws_other_candidates(name):
    assert hand_out(ORDERS[name](0), FakeProbe()) != hand_out(ORDERS[name](1), FakeProbe())


def test_loss_rounds_rerank_every_k_steps_and_put_the_worst_task_first():
    # the losses change at clock 3: task c is worst before, task a after
    probe = FakeProbe(lambda clock: {"bb/a": 1.0 if clock < 3 else 9.0, "bb/b": 2.0, "bb/c": 3.0 if clock < 3 else 0.0})
    order = LossRounds(nearest(), B, every=3)
    batches = hand_out(order, probe)
    assert order.reranked_at == [0, 3, 6, 9, 12, 15][: len(order.reranked_at)] and len(order.reranked_at) == -(-len(batches) // 3)
    assert [c for what, c in probe.asked if what == "losses"] == order.reranked_at  # asked only on the schedule
    lists = nearest()
    assert batches[0][:3] == [lists["bb/c"][0], lists["bb/b"][0], lists["bb/a"][0]]  # a round: worst task first
    # from step 3 on, rounds start with task a's nearest remaining instance
    flat = [p for b in batches for p in b]
    first_round_after = flat[flat.index(batches[3][0]):]
    assert order.ranking[0] == "bb/a" and first_round_after


def test_gradient_aligned_takes_each_tasks_best_aligned_instances_in_turn():
    probe = FakeProbe()
    order = GradientAligned(N, TASKS, B, every=100, candidates=None)  # one re-rank decides everything
    batches = hand_out(order, probe)
    unit = probe.grads / np.linalg.norm(probe.grads, axis=1, keepdims=True)
    best = {t: int(np.argmax(unit @ (v / np.linalg.norm(v)))) for t, v in probe.targets.items()}
    assert batches[0][0] == best["bb/a"]  # the tasks in name order, each its best remaining instance
    assert order.reranked_at == [0]


def test_gradient_aligned_shares_its_picks_evenly_among_tasks_over_reranks():
    """A re-rank of 4 picks over 3 tasks cannot split evenly; the next re-rank resumes the round
    where it stopped, so that no task (the first by name) takes one more at every re-rank."""
    probe = FakeProbe()
    probe.grads = np.eye(3)[np.arange(N) % 3]  # instance i aligns with task i % 3 alone
    probe.targets = {t: np.eye(3)[i] for i, t in enumerate(TASKS)}
    order = GradientAligned(N, TASKS, B, every=1, candidates=None)
    picks = [p for _ in range(3) for p in order.next_batch(probe)]
    assert np.bincount(np.array(picks) % 3, minlength=3).tolist() == [4, 4, 4]


def test_lookahead_trains_on_the_candidate_whose_step_lowers_the_validation_loss_most():
    order = Lookahead(N, B, candidates=3, seed=0)
    batches = hand_out(order, FakeProbe())
    assert all(min(tried) == pytest.approx(float(sum(b))) for tried, b in zip(order.tried, batches))
    assert order.reranked_at == list(range(len(batches)))
    assert order.record() == {"reranked_at": order.reranked_at, "tried": order.tried}  # the run's manifest keeps them
    assert all(len(t) > 1 for t in order.tried) and len(order.tried) < len(batches)  # the tail is not tried: no choice


@pytest.mark.parametrize("name", ORDERS)
def test_an_order_resumes_from_its_state_mid_list(name):
    whole = hand_out(ORDERS[name](0), FakeProbe())
    first, probe = ORDERS[name](0), FakeProbe()
    head = [first.next_batch(probe) for _ in range(2)]
    probe.clock = 2
    resumed = ORDERS[name](0)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))  # through JSON, as a checkpoint holds it
    assert head + hand_out(resumed, probe) == whole


def test_the_sampler_decides_each_batch_when_the_loader_asks_for_it():
    probe = FakeProbe()
    order = LossRounds(nearest(), B, every=1)
    seen = []
    for step, batch in enumerate(DataLoader(list(range(N)), batch_sampler=BatchSampler(order, probe, steps=4))):
        seen.append(batch.tolist())
        probe.clock = step + 1  # the model changed: the next batch is decided after it
    assert [c for what, c in probe.asked if what == "losses"] == [0, 1, 2, 3]
    assert len(seen) == 4 and len({p for b in seen for p in b}) == 4 * B


def test_bad_orders_are_refused():
    with pytest.raises(DataError, match="rank every training position"):
        LossRounds({"bb/a": [0, 1, 1]}, B, every=1)
    with pytest.raises(DataError, match="no held-out task"):
        LossRounds({}, B, every=1)
    with pytest.raises(DataError, match="at least 1"):
        Lookahead(N, B, candidates=0)
    with pytest.raises(DataError, match="empty"):
        GradientAligned(0, TASKS, B, every=1)


SMOKE = dict(model="tiny-llama", train_per_task=4, test_per_task=2, max_len=256, batch_size=4, lr=1e-3,
             frozen_layers=2, precision="fp32", val_per_task=1, max_steps=4, eval_steps=[0, 4])


@pytest.mark.parametrize("method, every, reranks", [("adaptive-loss", 2, [0, 2]), ("adaptive-gradient", 2, [0, 2]),
                                                    ("adaptive-lookahead", 1, [0, 1, 2, 3])])
@pytest.mark.slow
def test_the_engine_trains_what_the_order_decides_and_never_looks_at_the_held_out_set(tmp_path, method, every, reranks):
    from zsg_core.config import run_config
    from zsg_core.runs import run, run_split

    config = run_config(**SMOKE, arrangement=method, adapt_every=every, adapt_pool=24, lookahead_batches=2)
    result = run(config, root=tmp_path / "a", log=lambda s: None)
    split = run_split(config)
    received = result.batches.sort_values(["step", "position"]).id.tolist()
    assert len(received) == 4 * 4 and len(set(received)) == len(received)  # a permutation's prefix: nothing twice
    assert set(received) <= {r.id for r in split.train}
    assert result.manifest["reranked_at"] == reranks  # on the schedule the order declares
    assert set(result.eval_loss.id) == {r.id for r in split.test}  # evaluated on the held-out set only...
    assert not {r.id for r in split.validation} & set(result.eval_loss.id)  # ...which the validation set never touches
    again = run(config, root=tmp_path / "b", log=lambda s: None)  # from its seed: the same decisions, the same batches
    assert again.batches.equals(result.batches) and again.eval_loss.equals(result.eval_loss)
    if method != "adaptive-loss":  # its decisions are the data's and the model's alone: it takes no seed
        other = run(run_config(**SMOKE, arrangement=method, adapt_every=every, adapt_pool=24, lookahead_batches=2,
                               arrangement_seed=1), root=tmp_path / "c", log=lambda s: None)
        assert other.batches.id.tolist() != result.batches.id.tolist()


def test_an_adaptive_run_needs_validation_instances_and_cannot_be_written_as_a_list(tmp_path):
    from zsg_core.config import run_config
    from zsg_core.export import arrange_file

    with pytest.raises(DataError, match="set val_per_task"):
        run_config(**{**SMOKE, "val_per_task": 0}, arrangement="adaptive-loss")
    static = run_config(**SMOKE, arrangement="rt", adapt_every=3)  # the adaptive parameters are no part of a static run
    assert static.adapt_every == 10 and static.split.val_per_task == 0
    assert static.key() == run_config(**{**SMOKE, "val_per_task": 0}, arrangement="rt").key()
    with pytest.raises(DataError, match="decided while training"):
        arrange_file(tmp_path / "train.jsonl", tmp_path / "test.jsonl", tmp_path / "out.jsonl", "adaptive-loss")


@pytest.mark.slow
def test_an_interrupted_adaptive_run_resumes_the_same_order(tmp_path):
    from zsg_core.config import run_config
    from zsg_core.runs import run

    config = run_config(**SMOKE, arrangement="adaptive-loss", adapt_every=1)
    whole = run(config, root=tmp_path / "whole", log=lambda s: None)

    class Stop(Exception):
        pass

    def stop_at_3(step):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        run(config, root=tmp_path / "cut", log=lambda s: None, on_step=stop_at_3, checkpoint_every=2)
    resumed = run(config, root=tmp_path / "cut", log=lambda s: None)  # from the checkpoint at step 2
    assert resumed.batches.equals(whole.batches) and resumed.eval_loss.equals(whole.eval_loss)
    assert resumed.manifest["reranked_at"] == whole.manifest["reranked_at"] == [0, 1, 2, 3]
