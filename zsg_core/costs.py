"""What a run will cost, fitted on what stored runs cost: never a typed figure.

    model = CostModel.fit(manifests())          # stored runs' manifests on this CPU kind (or GPU)
    seconds = model.predict(config, first_on_split=True)

A run's wall time is the sum of parts its manifest records: a fixed part (arranging, loading the
model, writing the results), training steps, held-out evaluations, generations, the frozen-layer
cache entries it computes (an instance's entry is computed by the first run that reads it: the
model uses the share of reads that were new in the stored runs), and, for a split's first run,
loading the split and embedding its texts; an order decided while training adds its probe of the
model per step (`adapt_seconds`, a rate per set-up and method: its re-ranks' cost depends on the
method); and the first run that measures similarity on the LM's own features (hidden states,
gradients) of a split computes them (`features_seconds`, per set-up and kind; a later run of
another held-out view computes only the held-out side, recorded apart as "<kind> (held-out only)", and is
priced as if it computed none).
Each rate is the median over the manifests of runs set
up the same way (model, frozen layers, batch size, precision), so one odd run does not move it. A set-up no stored run has is
predicted from nothing: `predict` says None, and the plan counts it as unknown.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .arrange import get_method
from .config import RunConfig
from .features import FEATURES
from .precision import capability
from .runs import is_complete, runs_dir
from .split import SplitConfig, is_cached, load_split
from .train import dense_schedule, epoch_steps
from .util import cache_dir

SetUp = tuple[str, int, int, str]  # model, frozen layers, batch size, precision


def set_up(config: RunConfig) -> SetUp:
    t = config.train
    return config.model, t.frozen_layers, t.batch_size, t.precision


def machine_kind(machine: dict[str, Any]) -> str:
    """The kind of hardware a manifest's timings mean something on: the CPU capability, or the GPU."""
    if machine.get("device") == "cuda":
        return f"cuda:{machine.get('name')}"
    return f"cpu:{machine.get('cpu_capability')}"


def manifests(root: Path | None = None) -> list[dict[str, Any]]:
    """Every complete run's manifest (with its config) in the run store; unreadable ones skipped
    (the store names damage when a run is read; a prediction does not need every run)."""
    out = []
    for folder in sorted((root or runs_dir()).glob("*")):
        if not is_complete(folder):
            continue
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            manifest["config"] = RunConfig.from_dict(json.loads((folder / "config.json").read_text()))
        except Exception:
            continue
        out.append(manifest)
    return out


def planned_steps(config: RunConfig) -> int | None:
    """Training steps of a run: `max_steps`, or the last evaluation of a whole-epoch run that names
    its schedule (TMA's one-pass runs), or for any other whole-epoch run its split's epoch (the
    orders of such runs permute the split's training list), where the split is cached; else None."""
    t = config.train
    if t.max_steps is not None:
        return t.max_steps
    if t.eval_steps:
        return max(t.eval_steps)
    return _epoch(config.split, config.model, t.batch_size)


_EPOCHS: dict[tuple, int] = {}  # (cache folder, split, model, batch size) -> steps: a split is read once


def _epoch(split: SplitConfig, model: str, batch_size: int) -> int | None:
    key = (cache_dir(), split, model, batch_size)
    if key not in _EPOCHS:
        if not is_cached(split, model):
            return None  # computing a split is the caller's choice (`load_split`), not a prediction's
        _EPOCHS[key] = epoch_steps(len(load_split(split, model, log=lambda m: None).train), batch_size)
    return _EPOCHS[key]


def _evaluations(config: RunConfig, steps: int) -> int:

    schedule = dense_schedule(steps) if config.train.eval_steps is None else config.train.eval_steps
    return len([s for s in schedule if s <= steps])


def _generated(config: RunConfig) -> int:
    """Answers a run generates: per generation step, each held-out task's prompts under each protocol."""
    t = config.train
    protocols = 2 if t.generate_protocol == "both" else 1
    return len(t.generate_steps) * config.split.test_tasks * t.generate_per_task * protocols


def _held_out(config: RunConfig) -> int:
    return config.split.test_tasks * config.split.test_per_task


def _median(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclass
class CostModel:
    kind: str  # the machine kind the manifests came from (`machine_kind`)
    fitted: int  # manifests the rates come from
    fixed: dict[SetUp, float] = field(default_factory=dict)  # seconds outside steps, evaluations, generations, cache
    step: dict[SetUp, float] = field(default_factory=dict)  # seconds per training step
    evaluation: dict[SetUp, float] = field(default_factory=dict)  # seconds per held-out instance evaluated
    generation: dict[SetUp, float] = field(default_factory=dict)  # seconds per answer generated
    cache_entry: dict[SetUp, float] = field(default_factory=dict)  # seconds per frozen-layer cache entry computed
    # of the instances a run reads (its steps' and the held-out set), the share not cached by the runs before it
    cache_new: dict[SetUp, float] = field(default_factory=dict)
    first_on_split: dict[SetUp, float] = field(default_factory=dict)  # a split's first run's extra: loading, embedding
    adapt: dict[tuple[SetUp, str], float] = field(default_factory=dict)  # (set-up, method) -> seconds of probing per step
    features: dict[tuple[SetUp, str], float] = field(default_factory=dict)  # (set-up, kind) -> seconds computing a split's

    @classmethod
    def fit(cls, stored: list[dict[str, Any]], kind: str | None = None) -> "CostModel":
        """Rates from the manifests of `kind` (default: this machine's) that record every part."""
        kind = kind or machine_kind(capability())
        usable = [m for m in stored if machine_kind(m.get("machine", {})) == kind and "texts_embedded" in m
                  and m.get("steps") and m.get("processes", 1) == 1]
        model = cls(kind, len(usable))
        if not usable:
            return model
        groups: dict[SetUp, list[dict]] = {}
        for m in usable:
            groups.setdefault(set_up(m["config"]), []).append(m)
        for key, ms in groups.items():
            model.step[key] = _median(m["train_seconds"] / m["steps"] for m in ms)
            model.evaluation[key] = _median(m["eval_seconds"] / (m["evaluations"] * m["held_out"])
                                            for m in ms if m.get("evaluations") and m.get("held_out"))
            rate = _median(m["generate_seconds"] / _generated(m["config"]) for m in ms if _generated(m["config"]))
            if rate is not None:
                model.generation[key] = rate
            rate = _median(m["cache_seconds"] / m["cache_entries_computed"] for m in ms if m["cache_entries_computed"])
            if rate is not None:
                model.cache_entry[key] = rate
            read = sum(_cache_reads(m["config"], m["steps"]) for m in ms)
            model.cache_new[key] = sum(m["cache_entries_computed"] for m in ms) / read if read else 0.0
            rest = {id(m): m["wall_seconds"] - m["train_seconds"] - m["eval_seconds"] - m["generate_seconds"]
                    - m["cache_seconds"] - m.get("adapt_seconds", 0.0) - sum(m.get("features_seconds", {}).values())
                    for m in ms}
            # a held-out view computed alone ("<kind> (held-out only)") is priced as none: not fitted
            for kind in {k for m in ms for k in m.get("features_seconds", {})} & set(FEATURES):
                model.features[key, kind] = _median(m["features_seconds"][kind] for m in ms
                                                    if kind in m.get("features_seconds", {}))
            for method in {m["config"].arrangement for m in ms if "adapt_seconds" in m}:
                model.adapt[key, method] = _median(m["adapt_seconds"] / m["steps"] for m in ms
                                                   if m["config"].arrangement == method and "adapt_seconds" in m)
            later = [m for m in ms if not m["texts_embedded"]]
            first = [m for m in ms if m["texts_embedded"]]
            model.fixed[key] = _median(rest[id(m)] for m in later) if later else _median(rest.values())
            if first:
                model.first_on_split[key] = _median(rest[id(m)] - model.fixed[key] for m in first)
        return model

    def predict(self, config: RunConfig, first_on_split: bool = False, computes_features: bool = False) -> float | None:
        """Predicted wall seconds of `config` on this machine kind; None where a part has no rate.
        `computes_features`: no run before it computed its split's LM features (`needs_features`)."""
        key, steps = set_up(config), planned_steps(config)
        if steps is None or key not in self.step:
            return None
        seconds = self.fixed[key] + steps * self.step[key]
        if get_method(config.arrangement).adaptive:
            if (key, config.arrangement) not in self.adapt:
                return None  # no stored run of this method: its probing cost is unknown
            seconds += steps * self.adapt[key, config.arrangement]
        seconds += _evaluations(config, steps) * _held_out(config) * (self.evaluation.get(key) or 0.0)
        seconds += _cache_reads(config, steps) * self.cache_new.get(key, 0.0) * self.cache_entry.get(key, 0.0)
        if _generated(config):
            if key not in self.generation:
                return None
            seconds += _generated(config) * self.generation[key]
        if first_on_split:
            seconds += self.first_on_split.get(key, 0.0)
        if computes_features and needs_features(config):
            if (key, config.features) not in self.features:
                return None  # no stored run computed this kind's features: their cost is unknown
            seconds += self.features[key, config.features]
        return seconds


def needs_features(config: RunConfig) -> str | None:
    """The kind of LM features (hidden, gradient) a run's arranging computes, if its split lacks them."""
    return config.features if get_method(config.arrangement).features and config.features != "minilm" else None


def _cache_reads(config: RunConfig, steps: int) -> int:
    """Instances whose frozen-layer outputs a run reads: those of its steps and the held-out set."""
    return steps * config.train.batch_size + _held_out(config) if config.train.frozen_layers else 0
