"""Orders that watch the model while it trains: each a permutation of the training list, decided
batch by batch from what the model does on a validation set of the held-out tasks.

    order = make_order("adaptive-loss", nearest, batch_size=8, every=10, seed=0)
    batch = order.next_batch(probe)      # positions into the training list, for the next step

Every static order of the book is decided before the first step. These ask, at training time,
what the model needs next, through a `Probe` of the current weights (the run's validation
instances: `SplitConfig.val_per_task` per held-out task, never an instance the book evaluates on):

- **loss-driven rounds** (`adaptive-loss`, `LossRounds`): TMA's round robin over the held-out
  tasks (each task in turn takes its nearest remaining training instance), with the tasks visited
  from the highest validation loss to the lowest, re-ranked every `every` steps;
- **gradient-aligned** (`adaptive-gradient`, `GradientAligned`): every `every` steps, the next
  `every` batches are the remaining instances whose sketched gradient at the current weights
  (chapter 8's LESS-like features) aligns best with a held-out task's validation gradient, taken
  round robin over the tasks so that no family takes over (the concentration chapter 7 measures);
- **one-step lookahead** (`adaptive-lookahead`, `Lookahead`): at each step, among `candidates`
  batches drawn from the remaining instances, the one whose step lowers the validation loss most
  (each tried from the current weights, then undone): a reference for greedy batch choice, not a
  bound on every order (a longer horizon or more candidates could do better).

Each order hands out every position of the list exactly once (a permutation: what is trained is
the same multiset as any other order's, in another order), is reproducible from its seed given the
same probe answers, and records the steps at which it re-ranked (`reranked_at`). Its state is a
small JSON-able dict, so a run resumes mid-order. `BatchSampler` wraps one as a
`torch.utils.data.Sampler` of batches for a transformers or TRL trainer (see the README).
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np
from torch.utils.data import Sampler

from .data import DataError


class Probe(Protocol):
    """What an adaptive order may ask of the model at its current weights."""

    def validation_losses(self) -> dict[str, float]:
        """Each held-out task's mean loss on its validation instances."""

    def train_gradients(self, positions: Sequence[int]) -> np.ndarray:
        """Sketched gradients (rows) of the training instances at `positions`."""

    def validation_gradients(self) -> dict[str, np.ndarray]:
        """Each held-out task's mean sketched gradient over its validation instances."""

    def lookahead(self, positions: Sequence[int]) -> float:
        """The mean validation loss after one training step on `positions`, the step then undone."""


class AdaptiveOrder:
    """A permutation of range(n) handed out one batch at a time. Subclasses decide `_refill`: what
    comes next, from the probe, when the queue runs dry or a re-rank is due."""

    def __init__(self, n: int, batch_size: int, every: int, seed: int) -> None:
        if n < 1:
            raise DataError("the training list is empty: nothing to order")
        if batch_size < 1 or every < 1:
            raise DataError(f"batch_size and every must be at least 1, got {batch_size} and {every}")
        self.n, self.batch_size, self.every, self.seed = n, batch_size, every, seed
        self.used = np.zeros(n, dtype=bool)
        self.queue: list[int] = []  # positions decided but not yet handed out
        self.steps = 0  # batches handed out so far
        self.reranked_at: list[int] = []  # the steps (batches handed out before) at which it re-ranked

    @property
    def remaining(self) -> int:
        """Positions not handed out yet (those decided but still queued included)."""
        return self.n - int(self.used.sum()) + len(self.queue)

    def next_batch(self, probe: Probe) -> list[int]:
        """The positions of the next step's batch (fewer only at the end of the list)."""
        if not self.remaining:
            raise DataError("the order is exhausted: every position has been handed out")
        if self.steps % self.every == 0:
            self._rerank(probe)
            self.reranked_at.append(self.steps)
        batch: list[int] = []
        while len(batch) < self.batch_size:
            if not self.queue:
                if self.used.all():
                    break
                self._refill(probe)
            batch.append(self.queue.pop(0))
        self.steps += 1
        return batch

    def _take(self, position: int) -> None:
        if self.used[position]:
            raise AssertionError(f"position {position} handed out twice")
        self.used[position] = True
        self.queue.append(position)

    def record(self) -> dict[str, Any]:
        """What the run's manifest keeps of how the order decided."""
        return {"reranked_at": list(self.reranked_at)}

    def _rerank(self, probe: Probe) -> None:
        raise NotImplementedError

    def _refill(self, probe: Probe) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"used": np.flatnonzero(self.used).tolist(), "queue": list(self.queue), "steps": self.steps,
                "reranked_at": list(self.reranked_at)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.used[:] = False
        self.used[state["used"]] = True
        self.queue, self.steps, self.reranked_at = list(state["queue"]), state["steps"], list(state["reranked_at"])


class LossRounds(AdaptiveOrder):
    """TMA's rounds over the held-out tasks, the task with the highest validation loss first.
    `nearest[task]`: every training position, nearest to that task's validation instances first."""

    def __init__(self, nearest: Mapping[str, Sequence[int]], batch_size: int, every: int, seed: int = 0) -> None:
        lists = {t: np.asarray(v, dtype=np.int64) for t, v in sorted(nearest.items())}
        if not lists:
            raise DataError("no held-out task to order for: the split has no validation instances")
        n = len(next(iter(lists.values())))
        if any(sorted(v.tolist()) != list(range(n)) for v in lists.values()):
            raise DataError("each held-out task must rank every training position exactly once")
        super().__init__(n, batch_size, every, seed)
        self.lists, self.pointer = lists, {t: 0 for t in lists}
        rng = np.random.default_rng(seed)
        self.ranking = [list(lists)[i] for i in rng.permutation(len(lists))]  # until the first measurement

    def _rerank(self, probe: Probe) -> None:
        losses = probe.validation_losses()
        missing = set(self.lists) - set(losses)
        if missing:
            raise DataError(f"the probe gave no validation loss for {sorted(missing)}")
        # highest loss first; ties keep the previous ranking's order (a stable sort)
        self.ranking = sorted(self.ranking, key=lambda t: -losses[t])

    def _refill(self, probe: Probe) -> None:
        """One round: each task, in ranking order, takes its nearest remaining position."""
        for task in self.ranking:
            ranked, i = self.lists[task], self.pointer[task]
            while i < len(ranked) and self.used[ranked[i]]:
                i += 1
            self.pointer[task] = i
            if i < len(ranked):
                self._take(int(ranked[i]))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pointer": dict(self.pointer), "ranking": list(self.ranking)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.pointer, self.ranking = dict(state["pointer"]), list(state["ranking"])


class GradientAligned(AdaptiveOrder):
    """Every `every` steps, the next `every` batches by gradient alignment with the held-out tasks'
    validation gradients, round robin over the tasks. `candidates` caps how many remaining
    instances' gradients are taken per re-rank (a seeded sample of them; None: all)."""

    def __init__(self, n: int, tasks: Sequence[str], batch_size: int, every: int, seed: int = 0,
                 candidates: int | None = None) -> None:
        super().__init__(n, batch_size, every, seed)
        if not tasks:
            raise DataError("no held-out task to order for: the split has no validation instances")
        self.tasks = sorted(tasks)
        self.candidates = candidates
        self.rng = np.random.default_rng(seed)
        # the task whose turn comes next: each re-rank resumes the round robin where the last one
        # stopped, or the first tasks by name would take one more pick at every re-rank
        self.turn = 0

    def _rerank(self, probe: Probe) -> None:
        for position in self.queue:  # what the last re-rank decided and was not handed out goes back
            self.used[position] = False
        self.queue = []
        free = np.flatnonzero(~self.used)
        if self.candidates is not None and len(free) > self.candidates:
            free = np.sort(self.rng.choice(free, self.candidates, replace=False))
        grads = _unit(probe.train_gradients(free.tolist()))
        targets = probe.validation_gradients()
        scores = grads @ _unit(np.stack([targets[t] for t in self.tasks])).T  # (candidates, tasks)
        order = np.argsort(-scores, axis=0, kind="stable")  # per task, its candidates best first
        pointer = [0] * len(self.tasks)
        picked = np.zeros(len(free), dtype=bool)
        want = min(self.every * self.batch_size, len(free))
        while len(self.queue) < want:
            j = self.turn
            while picked[order[pointer[j], j]]:
                pointer[j] += 1
            picked[order[pointer[j], j]] = True
            self._take(int(free[order[pointer[j], j]]))
            self.turn = (j + 1) % len(self.tasks)

    def _refill(self, probe: Probe) -> None:
        self._rerank(probe)  # the decided batches ran out before the next re-rank: decide more now
        self.reranked_at.append(self.steps)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self.rng.bit_generator.state, "turn": self.turn}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.bit_generator.state, self.turn = state["rng"], state["turn"]


class Lookahead(AdaptiveOrder):
    """At each step, of `candidates` disjoint random batches from the remaining instances, the one
    whose step lowers the validation loss most (every=1: it decides at every step)."""

    def __init__(self, n: int, batch_size: int, candidates: int = 4, seed: int = 0) -> None:
        super().__init__(n, batch_size, 1, seed)
        if candidates < 1:
            raise DataError(f"candidates must be at least 1, got {candidates}")
        self.candidates = candidates
        self.rng = np.random.default_rng(seed)
        self.tried: list[list[float]] = []  # per step, each candidate's validation loss after its step

    def _rerank(self, probe: Probe) -> None:
        free = np.flatnonzero(~self.used)
        k = min(self.candidates, len(free) // self.batch_size)
        if k <= 1:  # one whole batch to draw (or only the list's tail): nothing to choose, nothing to try
            for position in (self.rng.permutation(free)[: self.batch_size] if k else free).tolist():
                self._take(int(position))
            return
        # whole batches only, so that every step takes exactly `batch_size`
        drawn = self.rng.permutation(free)[: k * self.batch_size]
        options = [sorted(drawn[i:i + self.batch_size].tolist()) for i in range(0, len(drawn), self.batch_size)]
        losses = [probe.lookahead(batch) for batch in options]
        self.tried.append(losses)
        for position in options[int(np.argmin(losses))]:
            self._take(position)

    def record(self) -> dict[str, Any]:
        return {**super().record(), "tried": [list(t) for t in self.tried]}

    def _refill(self, probe: Probe) -> None:  # a batch is decided at every step: only the list's tail lands here
        for position in np.flatnonzero(~self.used).tolist():
            self._take(position)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self.rng.bit_generator.state, "tried": self.tried}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.bit_generator.state, self.tried = state["rng"], [list(t) for t in state["tried"]]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class BatchSampler(Sampler[list[int]]):
    """An adaptive order as a `torch.utils.data.Sampler` of batches (`DataLoader(dataset,
    batch_sampler=BatchSampler(order, probe, steps))`): each batch is decided when the loader asks
    for it, so from the weights of the steps before. A loader that fetches ahead (accelerate's,
    inside transformers' Trainer, fetches one batch ahead) decides each batch one step earlier."""

    def __init__(self, order: AdaptiveOrder, probe: Probe, steps: int) -> None:
        self.order, self.probe, self.steps = order, probe, steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            yield self.order.next_batch(self.probe)

    def __len__(self) -> int:
        return self.steps


def nearest_by_task(train: np.ndarray, validation: np.ndarray, tasks: Sequence[str]) -> dict[str, list[int]]:
    """Per held-out task, every training position, the most similar first: cosine to the task's
    nearest validation instance (TMA's nearness, per task). `tasks[j]` is validation row j's task."""
    if len(validation) != len(tasks):
        raise DataError(f"{len(tasks)} task labels for {len(validation)} validation vectors")
    similarity = _unit(train) @ _unit(validation).T
    labels = np.asarray(tasks)
    return {task: np.argsort(-similarity[:, labels == task].max(axis=1), kind="stable").tolist()
            for task in sorted(set(tasks))}
