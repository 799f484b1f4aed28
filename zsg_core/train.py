"""Order-preserving supervised fine-tuning with dense held-out evaluation (paper.md 2.1, 2.4, 8).

One pass over an *arranged* list: global batch k is exactly items [kB, (k+1)B), on one process or
under `torchrun` / `accelerate launch` (each of n processes takes its contiguous B/n slice of
batch k). Nothing here shuffles: the items go through a plain sequential DataLoader that
`accelerate` shards, and the ids of every batch the model received are recorded (`batches`).

The paper's recipe: AdamW betas (0.9, 0.95), eps 1e-5, weight decay 0, gradient clipping at 1.0, no
warmup, cosine decay to 0.1 x lr over the whole epoch (`max_steps` may stop early: the paper also
only looked at the first part of its epoch). bf16 autocast over fp32 master weights where the hardware
computes bf16 natively and faster, fp32 elsewhere (`precision: auto`, zsg_core/precision.py).

Why an `accelerate` loop and not the `Trainer`: every requirement here is about what happens at
each step (which items, which lr, an evaluation of every held-out instance at chosen steps, a
resumable state), and a short loop states those directly; the Trainer would need a sampler, a
collator, a callback and a compute_loss override to say the same, and its own evaluation loop
does not produce per-instance tables. `accelerate` still does the distributed part: process
group, DDP wrapping, the sequential sampler's sharding, gathering.

Resuming: every `checkpoint_every` steps the trainable weights, optimizer, scheduler and the
tables so far are written atomically to `workdir/state/` (safetensors and JSON: no pickle, so a
planted file in a shared run store can never run code); `train` continues from it when it
exists, and a resumed run gives the same numbers as an uninterrupted one (tested).
"""
from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch

from .adaptive import BatchSampler
from .data import DataError, Record, from_known_fields
from .metrics import generate, heldout_loss, reward_scores, rouge_em
from .model import Item, TunedLM, process_state
from .precision import CHOICES, resolve
from .util import atomic_dir, damaged_files, file_digests, progress_bar

BETAS = (0.9, 0.95)
EPS = 1e-5
WEIGHT_DECAY = 0.0
GRAD_CLIP = 1.0
MIN_LR_RATIO = 0.1


def dense_schedule(max_steps: int) -> tuple[int, ...]:
    """Step 0, every 2 steps to 20, every 5 to 60, every 10 after, and the last step."""
    steps = set(range(0, min(20, max_steps) + 1, 2)) | set(range(20, min(60, max_steps) + 1, 5)) \
        | set(range(60, max_steps + 1, 10)) | {max_steps}
    return tuple(sorted(s for s in steps if s <= max_steps))


def comparison_schedule(max_steps: int) -> tuple[int, ...]:
    """Step 0, every 5 steps to 20, every 10 to 100, every 25 after, and the last: enough for a
    comparison read at one relative point and drawn as a curve (power comes from task splits,
    not from dense evaluation; see experiments)."""
    steps = set(range(0, min(20, max_steps) + 1, 5)) | set(range(20, min(100, max_steps) + 1, 10)) \
        | set(range(100, max_steps + 1, 25)) | {max_steps}
    return tuple(sorted(s for s in steps if s <= max_steps))


@dataclass(frozen=True)
class TrainConfig:
    # A default that differs from the default profile (zsg_core/profiles/cpu.yaml) says why, in "why".
    lr: float = field(default=1e-4, metadata={"why": "a model-agnostic start; the cpu profile's 3e-4 was swept "
                                               "for 4 trained layers of SmolLM2 (benchmarks/results/lr_sweep_cpu.json)"})
    batch_size: int = 8
    max_steps: int | None = field(default=None, metadata={  # train the first max_steps steps of the epoch
        "why": "None trains the whole epoch, as the paper; the cpu profile stops early to fit 2 cores"})
    frozen_layers: int = field(default=0, metadata={  # F: layers [0, F) frozen and their outputs cached
        "why": "0 is full fine-tuning, as the paper; the cpu profile freezes 26 of SmolLM2's 30 layers for speed"})
    eval_steps: tuple[int, ...] | None = None  # None: dense_schedule(steps)
    generate_steps: tuple[int, ...] = field(default=(), metadata={
        "why": "generation is slow and only chapter 2 reads it, so a run generates only when asked"})
    generate_protocol: str = field(default="greedy", metadata={  # "paper": nucleus sampling on a fresh subset; "both"
        "why": "greedy is deterministic; the cpu profile adds the paper's sampled protocol for chapter 2"})
    generate_per_task: int = field(default=2, metadata={"why": "the cpu profile generates 1 per task to fit 2 cores"})
    max_new_tokens: int = field(default=64, metadata={"why": "the cpu profile caps answers at 24 tokens to fit 2 cores"})
    reward_model: str | None = None  # a local AutoModelForSequenceClassification folder; none ships here
    seed: int = 0  # flat name train_seed: the model's initial weights (random-init models), sampling
    precision: str = field(default="auto", metadata={  # "bf16" autocast over fp32 master weights, "fp32", "auto"
        "why": "auto is resolved at once to what this machine computes fastest (zsg_core.precision), so a "
               "config always holds the precision actually used"})

    def __post_init__(self) -> None:
        kinds = {"lr": float, "batch_size": int, "max_steps": (int, type(None)), "frozen_layers": int,
                 "reward_model": (str, type(None)),
                 "generate_protocol": str, "generate_per_task": int, "max_new_tokens": int, "seed": int,
                 "precision": str}
        for name, kind in kinds.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, kind if name != "lr" else (int, float)):
                hint = " (YAML reads 1e-4 as a string: write 1.0e-4)" if isinstance(v, str) and name == "lr" else ""
                raise DataError(f"training parameter {name} has the wrong type: {v!r}{hint}")
        for name in ("eval_steps", "generate_steps"):
            v = getattr(self, name)
            if v is None and name == "eval_steps":
                continue
            if not isinstance(v, (list, tuple)) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v):
                raise DataError(f"training parameter {name} must be a list of steps >= 0, got {v!r}")
            object.__setattr__(self, name, tuple(sorted(set(v))))
        for name in ("batch_size", "generate_per_task", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise DataError(f"training parameter {name} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):  # inf passes "> 0" and fails only at step 2
            raise DataError(f"training parameter lr must be positive and finite, got {self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise DataError(f"training parameter max_steps must be at least 1, got {self.max_steps}")
        if self.frozen_layers < 0:
            raise DataError(f"training parameter frozen_layers must be >= 0, got {self.frozen_layers}")
        if self.generate_protocol not in ("greedy", "paper", "both"):
            raise DataError(f"training parameter generate_protocol must be 'greedy', 'paper' or 'both', "
                            f"got {self.generate_protocol!r}")
        if self.precision not in CHOICES:
            raise DataError(f"training parameter precision must be one of {', '.join(CHOICES)}, got {self.precision!r}")
        # the precision actually used is part of a run's identity: "auto" never reaches a stored config
        object.__setattr__(self, "precision", resolve(self.precision))
        if not self.generate_steps:  # nothing is generated: how it would be is no part of the run's identity
            for name in ("generate_protocol", "generate_per_task", "max_new_tokens", "reward_model"):
                object.__setattr__(self, name, self.__dataclass_fields__[name].default)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return from_known_fields(cls, d, "training")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class TrainResult:
    """Tidy tables: one row per step (train_log), per step x held-out instance (eval_loss),
    per step x generated instance (generations), per step x trained item (batches)."""
    train_log: pd.DataFrame
    eval_loss: pd.DataFrame
    generations: pd.DataFrame
    batches: pd.DataFrame
    stats: dict[str, float] = field(default_factory=dict)


TABLES = ("train_log", "eval_loss", "generations", "batches")


def epoch_steps(n_items: int, batch_size: int) -> int:
    """Steps in one epoch of `n_items` in batches of `batch_size`, the last one partial."""
    return math.ceil(n_items / batch_size)


def step_plan(n_items: int, config: TrainConfig, world_size: int = 1) -> tuple[int, int, tuple[int, ...]]:
    """(steps to run, steps in the epoch = the schedule's horizon, evaluation steps)."""
    if n_items == 0:
        raise DataError("nothing to train on: the arranged list is empty")
    if config.batch_size % world_size:
        raise DataError(f"batch_size {config.batch_size} is not divisible by the {world_size} processes")
    epoch = epoch_steps(n_items, config.batch_size)
    if world_size > 1 and n_items % config.batch_size:
        epoch -= 1  # processes cannot share a partial last batch; it is dropped
        if epoch == 0:
            raise DataError(f"{n_items} items do not fill one batch of {config.batch_size} on {world_size} processes")
    steps = epoch if config.max_steps is None else config.max_steps
    if steps > epoch:
        raise DataError(f"max_steps {steps} is more than one epoch: {n_items} items make {epoch} batches of "
                        f"{config.batch_size}")
    evals = dense_schedule(steps) if config.eval_steps is None else config.eval_steps
    for name, chosen in (("eval_steps", evals), ("generate_steps", config.generate_steps)):
        if chosen and chosen[-1] > steps:
            raise DataError(f"{name} asks for step {chosen[-1]} but the run has {steps} steps")
    return steps, epoch, evals


def generation_seed(config: TrainConfig, order_seed: int, step: int) -> int:
    """The paper protocol's seed at `step` (its subset and its sampling): from the training seed,
    the order's seed and the step, so that runs that differ in their shuffle draw their own subsets
    and samples (independent units), and one run is the same whenever it is redone."""
    return (config.seed * 1_000_003 + order_seed) * 100_003 + step


def _generation_subset(test: Sequence[Record], config: TrainConfig, step: int, protocol: str,
                       order_seed: int = 0) -> list[int]:
    """Greedy: the first `generate_per_task` instances of each task, the same at every step.
    Paper: a fresh random subset of that size at every step, as gen_on_*.py did."""
    by_task: dict[str, list[int]] = {}
    for i, r in enumerate(test):
        by_task.setdefault(r.task, []).append(i)
    if protocol == "greedy":
        return [i for idx in by_task.values() for i in idx[: config.generate_per_task]]
    rng = random.Random(generation_seed(config, order_seed, step))
    return sorted(rng.sample(range(len(test)), min(len(test), config.generate_per_task * len(by_task))))


def _generations(lm: TunedLM, test: Sequence[Record], config: TrainConfig, step: int, order_seed: int) -> list[dict]:
    rows = []
    for protocol in ("greedy", "paper") if config.generate_protocol == "both" else (config.generate_protocol,):
        chosen = [test[i] for i in _generation_subset(test, config, step, protocol, order_seed)]
        prompts = [r.messages[0]["content"] for r in chosen]
        with lm.precision():
            preds = generate(lm.model, lm.tokenizer, prompts, config.max_new_tokens, protocol,
                             seed=generation_seed(config, order_seed, step))
        # No reward model ships on a registry: without one the column is empty, never a stand-in number.
        rewards = reward_scores(config.reward_model, prompts, preds) if config.reward_model else [None] * len(preds)
        for r, pred, reward in zip(chosen, preds, rewards):
            refs = list(r.references or ()) or [r.messages[1]["content"]]
            rows.append({"step": step, "protocol": protocol, "id": r.id, "task": r.task, "prediction": pred,
                         **rouge_em(pred, refs), "reward": None if reward is None else float(reward)})
    return rows


class NotFiniteError(ArithmeticError):
    """A loss that is NaN or infinite: the run stops and nothing of it is stored."""


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NotFiniteError(f"{what} is {value}: the run stops here and stores nothing (a model whose values "
                             "overflow the precision in use, or an lr that diverges)")
    return value


def _eval_rows(lm: TunedLM, test_items: Sequence[Item], test: Sequence[Record], step: int) -> list[dict]:
    table = heldout_loss(lm, test, test_items)
    _finite(float(table.loss.sum()), f"held-out loss at step {step}")
    return table.assign(step=step).to_dict("records")


def adamw(params: Sequence[torch.nn.Parameter], lr: float) -> torch.optim.AdamW:
    """The paper's AdamW, as torch's fused kernel where it has one for the parameters' device (one
    pass over each tensor instead of a dozen element-wise passes). The same update; the rounding
    of its fp32 arithmetic may differ."""
    fused = all(p.device.type in ("cpu", "cuda") for p in params) or None
    return torch.optim.AdamW(params, lr=lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY, fused=fused)


def _step(lm: TunedLM, loss_module, params: list, optimizer, batch_items: Sequence[Item], what: str) -> tuple[float, int]:
    """One optimizer step on `batch_items` (this process's slice of the batch, in order): one packed
    forward and backward, the paper's clipping, AdamW; (summed loss, labels). The schedule is the
    caller's to step: a lookahead tries steps it then undoes."""
    with lm.precision():
        loss_sums, label_counts, _ = loss_module(*lm.pack(batch_items).args())
        n_labels = int(label_counts.sum())
        (loss_sums.sum() / max(n_labels, 1)).backward()
    total = _finite(float(loss_sums.detach().sum()), what)
    torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, n_labels


@dataclass
class Adaptive:
    """An order decided while training (`zsg_core.adaptive`), what it watches, and how it sketches
    gradients (`features.projected_gradients`; only the gradient-aligned order asks)."""
    order: Any  # adaptive.AdaptiveOrder
    validation: Sequence[Record]  # the held-out tasks' validation instances, never the held-out set
    sketch: Callable[[TunedLM, Sequence[Item]], Any] | None = None


def _timed(method: Callable) -> Callable:
    """A probe's method, its time added to the probe's `seconds`."""
    def timed(self, *args):
        t0 = time.perf_counter()
        try:
            return method(self, *args)
        finally:
            self.seconds += time.perf_counter() - t0
    return timed


class EngineProbe:
    """`adaptive.Probe` on the engine's current weights. The time it spends is kept apart
    (`take_seconds`), so a run says what its order cost beside training."""

    def __init__(self, lm: TunedLM, items: Sequence[Item], validation: Sequence[Item], tasks: Sequence[str],
                 params: list, optimizer, loss_module, sketch: Callable | None) -> None:
        if not validation:
            raise DataError("an adaptive order needs validation instances of the held-out tasks: set val_per_task")
        self.lm, self.items, self.validation, self.tasks = lm, items, validation, list(tasks)
        self.params, self.optimizer, self.loss_module, self.sketch = params, optimizer, loss_module, sketch
        self.seconds = 0.0

    def take_seconds(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def _task_means(self, values: Sequence[Any]) -> dict[str, Any]:
        by_task: dict[str, list] = {}
        for task, value in zip(self.tasks, values):
            by_task.setdefault(task, []).append(value)
        return {task: sum(v) / len(v) for task, v in by_task.items()}

    @_timed
    def validation_losses(self) -> dict[str, float]:
        return self._task_means([loss for loss, _, _ in self.lm.item_losses(self.validation)])

    @_timed
    def train_gradients(self, positions: Sequence[int]):
        if self.sketch is None:
            raise DataError("this adaptive order reads gradients, but the run gave no way to sketch them")
        return self.sketch(self.lm, [self.items[p] for p in positions])

    @_timed
    def validation_gradients(self) -> dict[str, Any]:
        if self.sketch is None:
            raise DataError("this adaptive order reads gradients, but the run gave no way to sketch them")
        return self._task_means(list(self.sketch(self.lm, self.validation)))

    @_timed
    def lookahead(self, positions: Sequence[int]) -> float:
        """The mean validation loss after one step on `positions` at the current lr, then the step
        undone: the weights and the optimizer's state put back exactly."""
        weights = [p.detach().clone() for p in self.params]
        state = copy.deepcopy(self.optimizer.state_dict())
        _step(self.lm, self.loss_module, self.params, self.optimizer, [self.items[p] for p in positions], "a lookahead step")
        losses = [loss for loss, _, _ in self.lm.item_losses(self.validation)]
        with torch.no_grad():
            for p, w in zip(self.params, weights):
                p.copy_(w)
        self.optimizer.load_state_dict(state)
        return float(sum(losses) / len(losses))


def train(lm: TunedLM, arranged: Sequence[Record], test: Sequence[Record], config: TrainConfig,
          workdir: Path | None = None, log: Callable[[str], None] = print,
          on_step: Callable[[int], None] | None = None, checkpoint_every: int | None = None,
          order_seed: int = 0, adaptive: "Adaptive | None" = None) -> TrainResult:
    """Fine-tune `lm` on `arranged` in its order; evaluate on `test` at the chosen steps.
    With `adaptive`, the order is decided while training: each step's batch is
    `adaptive.order.next_batch(probe)`, positions into `arranged`, asked of the current weights
    (`EngineProbe`, on `adaptive.validation`); one process only.
    `order_seed` (the arrangement's seed) seeds the paper protocol's generations with the training
    seed (`generation_seed`).

    `workdir` holds the resumable state, written every `checkpoint_every` steps (default
    `checkpoint_interval(steps)`; no workdir: no checkpoints; how often is bookkeeping, not part of
    the run's identity). `on_step(step)` is
    called after each optimizer step (tests use it to interrupt a run).
    """
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from torch.utils.data import DataLoader
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    process_state()
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world = accelerator.num_processes
    steps, epoch, eval_steps = step_plan(len(arranged), config, world)
    checkpoint_every = checkpoint_every or checkpoint_interval(steps)
    lm.autocast = config.precision == "bf16"
    if adaptive is not None and world > 1:
        raise DataError("an adaptive order decides each batch in one process; train it without torchrun")
    # a static order trains on its first steps x batch_size items; an adaptive one may pick any
    items = lm.items(arranged if adaptive is not None else arranged[: steps * config.batch_size])
    test_items = lm.items(test)
    if not test_items:
        raise DataError("the held-out set is empty")
    validation_items = lm.items(adaptive.validation) if adaptive is not None else []
    t_cache, computed = time.perf_counter(), 0
    if accelerator.is_main_process:  # compute the frozen bottom's outputs once, then share them
        bar = progress_bar(len(items) + len(test_items), "frozen layers (cached once)")
        computed = lm.cache_bottom(list(items) + list(test_items) + validation_items, bar, log=log)
        if computed:
            log(f"cached the frozen layers' outputs of {computed} new instances")
        lm.check(test_items)
    accelerator.wait_for_everyone()
    lm.cache_bottom(list(items) + list(test_items) + validation_items, log=log)
    cache_seconds = time.perf_counter() - t_cache

    params = lm.trainable_parameters()
    optimizer = adamw(params, config.lr)
    # Not prepared by accelerate: its wrapper would step the schedule once per process.
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(optimizer, 0, epoch, min_lr_rate=MIN_LR_RATIO)
    loss_module = accelerator.prepare(lm.loss)
    loader = accelerator.prepare(DataLoader(range(len(items)), batch_size=config.batch_size // world,
                                            shuffle=False, collate_fn=list))

    probe = None if adaptive is None else EngineProbe(lm, items, validation_items, [r.task for r in adaptive.validation],
                                                      params, optimizer, loss_module, adaptive.sketch)
    tables: dict[str, list[dict]] = {t: [] for t in TABLES}
    start_step = 0
    # this call's (a resumed run: since resuming); evaluation and generation apart, as the plan's costs
    train_seconds, train_tokens, eval_seconds, generate_seconds, adapt_seconds = 0.0, 0, 0.0, 0.0, 0.0
    t1 = time.perf_counter()
    state_path = workdir / STATE if workdir is not None else None
    state = _load_state(state_path, log) if state_path is not None else None
    if state is not None:
        names = dict(lm.model.named_parameters())
        with torch.no_grad():
            for name, value in state["weights"].items():
                names[name].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        tables, start_step = state["tables"], state["step"]
        if adaptive is not None:
            adaptive.order.load_state_dict(state["order"])
        log(f"resuming from step {start_step} of {steps}")
    elif 0 in eval_steps and accelerator.is_main_process:
        tables["eval_loss"] += _eval_rows(lm, test_items, test, 0)
    eval_seconds += time.perf_counter() - t1
    if start_step == 0 and 0 in config.generate_steps and accelerator.is_main_process:
        t1 = time.perf_counter()
        tables["generations"] += _generations(lm, test, config, 0, order_seed)
        generate_seconds += time.perf_counter() - t1

    lm.model.train()
    bar = progress_bar(steps, "training", unit="step") if accelerator.is_main_process else None
    if bar is not None:
        bar.update(start_step)
    if adaptive is None:
        batches = accelerator.skip_first_batches(loader, start_step) if start_step else loader
    else:  # each batch decided when its step comes, from the weights the steps before left
        batches = BatchSampler(adaptive.order, probe, steps - start_step)
    for step, batch in enumerate(batches, start=start_step + 1):
        if step > steps:
            break
        t0 = time.perf_counter()
        if adaptive is not None:
            adapt_seconds += probe.take_seconds()
        batch_items = [items[i] for i in batch]
        lr = scheduler.get_last_lr()[0]
        total, n_labels = _step(lm, loss_module, params, optimizer, batch_items, f"training loss at step {step}")
        scheduler.step()
        n_tokens = sum(len(it.ids) for it in batch_items)
        # one (ids, loss sum, labels, tokens) per process, in rank order: rank r held slice r of batch k
        parts = gather_object([([it.id for it in batch_items], total, n_labels, n_tokens)])
        if accelerator.is_main_process:
            ids = [i for part in parts for i in part[0]]
            tables["batches"] += [{"step": step, "position": p, "id": i} for p, i in enumerate(ids)]
            step_seconds = time.perf_counter() - t0
            tables["train_log"].append({"step": step, "lr": lr,
                                        "loss": sum(p[1] for p in parts) / sum(p[2] for p in parts),
                                        "tokens": sum(p[3] for p in parts), "seconds": step_seconds})
            train_seconds += step_seconds
            train_tokens += tables["train_log"][-1]["tokens"]
            t1 = time.perf_counter()
            if step in eval_steps:
                tables["eval_loss"] += _eval_rows(lm, test_items, test, step)
            eval_seconds += time.perf_counter() - t1
            if step in config.generate_steps:
                t1 = time.perf_counter()
                tables["generations"] += _generations(lm, test, config, step, order_seed)
                generate_seconds += time.perf_counter() - t1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{tables['train_log'][-1]['loss']:.3f}")
            if state_path is not None and step % checkpoint_every == 0 and step < steps:
                _save_state(state_path, lm, optimizer, scheduler, tables, step,
                            adaptive.order.state_dict() if adaptive is not None else None)
        accelerator.wait_for_everyone()
        if on_step is not None:
            on_step(step)
    if bar is not None:
        bar.close()
    stats = {"train_seconds": round(train_seconds, 2), "train_tokens": train_tokens,
             "train_tokens_per_s": round(train_tokens / train_seconds, 1) if train_seconds else None,
             "eval_seconds": round(eval_seconds, 2), "generate_seconds": round(generate_seconds, 2),
             "cache_seconds": round(cache_seconds, 2), "cache_entries_computed": computed,
             "evaluations": len([s for s in eval_steps if s > start_step or start_step == 0]), "held_out": len(test_items),
             "steps": steps, "epoch_steps": epoch, "processes": world,
             **({"adapt_seconds": round(adapt_seconds, 2), **adaptive.order.record()} if adaptive is not None else {})}
    return TrainResult(**{t: pd.DataFrame(tables[t], columns=_COLUMNS[t]) for t in TABLES}, stats=stats)


_COLUMNS = {
    "train_log": ["step", "lr", "loss", "tokens", "seconds"],
    "eval_loss": ["step", "id", "task", "loss", "tokens", "eos_loss"],
    "generations": ["step", "protocol", "id", "task", "prediction", "rouge1", "rougeL", "exact_match", "reward"],
    "batches": ["step", "position", "id"],
}


CHECKPOINT_EVERY = 25  # steps between checkpoints of a long run


def checkpoint_interval(steps: int) -> int:
    """Steps between checkpoints: every `CHECKPOINT_EVERY`, and at least once halfway through a
    shorter run, so that every run of two steps or more can resume (the smoke profile's 10-step
    runs exercise the same resume path as the book's)."""
    return max(1, min(CHECKPOINT_EVERY, steps // 2))


STATE = "state"  # the resumable state's folder in a run's workdir
LEGACY_STATE = "state.pt"  # an older zsg's pickled checkpoint in a run's folder: never unpickled, removed
_STATE_FILES = ["weights.safetensors", "optimizer.safetensors", "state.json"]  # checksums.json covers them


def _load_state(folder: Path, log: Callable[[str], None]) -> dict | None:
    """The checkpoint to resume from; None (start over) if there is none, it cannot be read or a
    file no longer matches the sha256 recorded with it. Only data formats are read (safetensors,
    JSON): nothing in a run store is ever executed."""
    from safetensors.torch import load_file

    legacy = folder.parent / LEGACY_STATE
    if legacy.exists():
        log(f"ignoring {legacy} (a pickle checkpoint, which zsg no longer loads); removed it")
        legacy.unlink()
    if not folder.exists():
        return None
    try:
        recorded = json.loads((folder / "checksums.json").read_text())
        if bad := damaged_files(folder, recorded) + [n for n in _STATE_FILES if n not in recorded]:
            raise ValueError(f"{', '.join(bad)} do not match the checksums recorded with them")
        meta = json.loads((folder / "state.json").read_text())
        optimizer = load_file(folder / "optimizer.safetensors")
        state: dict[int, dict[str, Any]] = {}
        for key, value in optimizer.items():
            index, name = key.split("/", 1)
            state.setdefault(int(index), {})[name] = value
        return {"step": meta["step"], "weights": load_file(folder / "weights.safetensors"),
                "optimizer": {"state": state, "param_groups": meta["param_groups"]},
                "scheduler": meta["scheduler"], "tables": meta["tables"], "order": meta.get("order")}
    except Exception as e:  # written atomically, so only outside damage gets here
        log(f"checkpoint {folder} is damaged or unreadable ({type(e).__name__}: {e}); removed it, starting this run over")
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _save_state(folder: Path, lm: TunedLM, optimizer, scheduler, tables: dict, step: int,
                order: dict | None = None) -> None:
    """The trainable weights and the optimizer's tensors as safetensors, the rest as JSON, in one
    folder that appears whole or not at all."""
    from safetensors.torch import save_file

    weights = {n: p.detach().contiguous() for n, p in lm.model.named_parameters() if p.requires_grad}
    opt = optimizer.state_dict()
    tensors = {f"{i}/{name}": v.contiguous() for i, s in opt["state"].items() for name, v in s.items()}
    with atomic_dir(folder) as tmp:
        save_file(weights, tmp / "weights.safetensors")
        save_file(tensors, tmp / "optimizer.safetensors")
        (tmp / "state.json").write_text(json.dumps({"step": step, "param_groups": opt["param_groups"],
                                                    "scheduler": scheduler.state_dict(), "tables": tables,
                                                    "order": order}))
        (tmp / "checksums.json").write_text(json.dumps(file_digests(tmp, _STATE_FILES)))
