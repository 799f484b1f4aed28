"""The book as one planned computation: every run its chapters read, listed and costed before any trains.

    plan = book_plan("cpu")                    # the chapters' own calls, recorded (experiments.planning)
    print(render(plan, CostModel.fit(manifests())))   # what `zsg plan` prints
    train_missing(plan, executor)              # zsg_core.execute: in-process, worker processes or Ray

A run that several chapters read belongs to the first that reads it, in reading order. Chapter 6's
runs are sized from its pools' embeddings: until those are cached, planning counts them and names
the work they wait on (`experiments.Unsized`); `book_plan(size=True)` does that work first.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import toc
from .config import ProfileError, load_profile
from .costs import CostModel, needs_features
from .experiments import BOOK_RUNS, PlannedRun, Unsized, chapter_runs, planning
from .runs import is_complete, runs_dir


@dataclass
class Plan:
    profile: str
    chapters: list[str]  # the chapters planned, in reading order
    runs: list[PlannedRun]  # each run once, where it is first read
    unsized: dict[str, Unsized] = field(default_factory=dict)  # chapter -> the runs that wait on sizing work
    readers: dict[str, list[str]] = field(default_factory=dict)  # run key -> every chapter that reads it

    def stored(self, root: Path | None = None) -> set[str]:
        root = root or runs_dir()
        return {r.key for r in self.runs if is_complete(root / r.key)}

    def missing(self, root: Path | None = None) -> list[PlannedRun]:
        done = self.stored(root)
        return [r for r in self.runs if r.key not in done]


def book_plan(profile: str, chapters: list[str] | None = None, size: bool = False,
              changes: Mapping[str, Any] | None = None) -> Plan:
    """The runs the book's chapters (or those named) read under `profile`, with `changes` to its
    parameters (a variant of it: each must name a parameter the profile has). With `size`, work
    that decides runs (embedding TMA's pools) is done now, so that every run is listed."""
    params = load_profile(profile)
    unknown = sorted(set(changes or {}) - set(params))
    if unknown:
        raise ProfileError(f"profile {profile!r} has no parameter(s) {unknown} to change")
    params = {**params, **(changes or {})}
    names = [c for c in toc.chapters() if c in BOOK_RUNS]
    if chapters:
        unknown = sorted(set(chapters) - set(toc.chapters()))
        if unknown:
            raise toc.BookError(f"no chapter(s) {unknown}; the chapters are {toc.chapters()}")
        names = [c for c in names if c in chapters]
    plan = Plan(profile, names, [])
    for chapter in names:
        with planning(size) as recorder:
            try:
                chapter_runs(chapter, toc.chapter_parameters(chapter, params))
            except Unsized as wait:
                plan.unsized[chapter] = wait
        for r in recorder.runs:
            if r.key not in plan.readers:
                plan.runs.append(r)
            plan.readers.setdefault(r.key, [])
            if chapter not in plan.readers[r.key]:
                plan.readers[r.key].append(chapter)
    return plan


def predictions(plan: Plan, costs: CostModel, root: Path | None = None,
                stored: set[str] | None = None) -> dict[str, float | None]:
    """Predicted seconds of each missing run (key -> seconds, None where the model has no rate). A
    split's first missing run pays for the work its runs share, unless a stored run did it. `stored`
    replaces the store's runs with those keys (`set()`: the plan as predicted before any run)."""
    done = plan.stored(root) if stored is None else set(stored) & {r.key for r in plan.runs}
    warm = {_split_of(r) for r in plan.runs if r.key in done}
    computed = {_features_of(r) for r in plan.runs if r.key in done and _features_of(r)}
    out: dict[str, float | None] = {}
    for r in plan.runs:
        if r.key in done:
            continue
        first = _split_of(r) not in warm
        warm.add(_split_of(r))
        features = _features_of(r)
        out[r.key] = costs.predict(r.config, first_on_split=first, computes_features=bool(features) and features not in computed)
        if features:
            computed.add(features)
    return out


def _split_of(r: PlannedRun) -> tuple:
    """What a split's runs share: its texts' embeddings and frozen-layer cache entries."""
    c = r.config
    return json.dumps(c.split.identity(), sort_keys=True), c.model, c.train.frozen_layers, c.train.precision


def _features_of(r: PlannedRun) -> tuple | None:
    """What runs of a split measuring similarity on the same LM features share: those features."""
    kind = needs_features(r.config)
    return (*_split_of(r), kind) if kind else None


def duration(seconds: float | None) -> str:
    """"1h05m", "4m30s", or "?" for a time nobody can predict."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def render(plan: Plan, costs: CostModel, root: Path | None = None, every_run: bool = False) -> str:
    """The plan as text: per chapter its runs, how many are stored and the predicted time of the
    rest; with `every_run`, one line per run too; then the total."""
    done, predicted = plan.stored(root), predictions(plan, costs, root)
    lines = [f"plan for profile {plan.profile}: {len(plan.runs)} runs, {len(done)} stored; costs fitted on "
             f"{costs.fitted} stored runs on {costs.kind}"]
    total, unknown = 0.0, 0
    for chapter in plan.chapters:
        runs = [r for r in plan.runs if r.chapter == chapter]
        todo = [predicted[r.key] for r in runs if r.key not in done]
        known, blind = sum(s for s in todo if s is not None), sum(s is None for s in todo)
        total, unknown = total + known, unknown + blind
        cost = "-" if not todo else "?" if blind == len(todo) else duration(known) + (f" + {blind} unpredicted" if blind else "")
        lines.append(f"  {chapter:26s} {len(runs):3d} runs, {len(runs) - len(todo):3d} stored, {len(todo):3d} to train: {cost}")
        if chapter in plan.unsized:
            wait = plan.unsized[chapter]
            unknown += wait.runs
            lines.append(f"  {'':26s} +{wait.runs} runs of {wait.experiment}, sized once {wait.work}")
        if every_run:
            for r in runs:
                state = "stored" if r.key in done else duration(predicted[r.key])
                lines.append(f"      {r.key}  {r.experiment:22s} {r.label:22s} {r.seed_param} {r.seed:<3d} {state}")
    known = f"{duration(total)}, and " if total or not unknown else ""  # never "0m00s" for runs it cannot price
    lines.append(f"total to train: {known}{unknown} runs without a prediction (no stored run set up like them on "
                 "this machine kind)" if unknown else f"total to train: {duration(total)}")
    return "\n".join(lines)
