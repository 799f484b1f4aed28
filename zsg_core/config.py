"""What a run is: its config, the flat parameter namespace over it, and the profiles that set it.

    run_config(**params) -> RunConfig    # flat names (a profile, papermill, `zsg train --set`)
    load_profile("cpu") -> dict          # profiles/<name>.yaml, with the profile it extends

A run is everything that determines its numbers: the model, the data split, the arrangement and
the training parameters (`RunConfig`, hashed into its key by `RunConfig.key`). Storing and
training runs is `runs`; this module needs neither, so the CLI and the plan read parameters and
profiles without importing the store or the book runner.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .arrange import get_method
from .assets import ASSETS, TINY_MODELS
from .data import DataError, from_known_fields
from .features import check_kind
from .similarity import SimilarityError
from .split import SplitConfig
from .train import TrainConfig
from .util import without_late_defaults

# Bump when training or evaluation changes what a config produces (3: packed rows, generation batched
# by length; 4: frozen-cache entries independent of what filled the cache, so a config's numbers no
# longer depend on which runs came before it; and WSD's weight defined for centred features, which
# changes the hidden-feature WSD orders, MiniLM's not; 5: the held-out table records each instance's EOS
# loss, which a run stored before cannot give; and the paper protocol's generations seeded by the
# order's seed too, so shuffles are independent units). Not bumped for changes that compute the same function
# and move only bf16 rounding the same way for every run (benchmarks/README, "Training speed"): the
# last layer at label rows only, training's hand-written span attention and the fused AdamW. A run's
# manifest names the commit that trained it.
RUN_VERSION = 5
PROFILES = Path(__file__).resolve().parent / "profiles"  # package data: a wheel ships them
# The profiles zsg ships: their keys are the chapters' parameters a custom profile may set too.
SHIPPED_PROFILES = ("smoke", "cpu", "cpu-full", "gpu")


class ProfileError(DataError):
    """A profile that cannot be read, or that sets a parameter nothing declares."""


@dataclass(frozen=True)
class RunConfig:
    model: str = "smollm2-135m"
    split: SplitConfig = SplitConfig()
    arrangement: str = "random"  # a name in zsg_core.arrange.METHODS
    arrangement_seed: int = 0  # the shuffle of the seeded methods (random / rt / tma-rt)
    budget: int | None = field(default=None, metadata={  # flat name tma_budget: instances TMA selects
        "why": "None selects the whole pool (Algorithm 1 as written); a profile sizes the selection for its runs"})
    embed_text: str | None = None  # None: the paper's choice per method
    train: TrainConfig = TrainConfig()
    rounds: tuple[int, int] | None = None  # tma-min/tma-max: train on rounds [a, b) only (E8)
    features: str = "minilm"  # what "similar" means for the orders that measure it (zsg_core.features)
    test_view: str = "with-answer"  # held-out features with the reference answer, or from the prompt only
    adapt_every: int = 10  # adaptive-loss / adaptive-gradient: steps between re-rankings
    adapt_pool: int | None = field(default=None, metadata={  # adaptive-gradient: instances sketched per re-rank
        "why": "None sketches every remaining instance; a profile caps it to what its machine affords"})
    lookahead_batches: int = 4  # adaptive-lookahead: candidate batches tried at each step

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise DataError(f"run parameter model must be a model name or folder, got {self.model!r}")
        if not isinstance(self.arrangement_seed, int) or isinstance(self.arrangement_seed, bool):
            raise DataError(f"run parameter arrangement_seed must be an integer, got {self.arrangement_seed!r}")
        try:
            method = get_method(self.arrangement)
            # A parameter that cannot change this run is no part of its identity: a fixed order's
            # seed (one run, not n), and a profile's tma_budget for an order that selects nothing.
            if not method.seeded:
                object.__setattr__(self, "arrangement_seed", 0)
            if not method.takes_tma_budget:
                object.__setattr__(self, "budget", None)
            method.check(self.budget, self.rounds, self.embed_text)
        except SimilarityError as e:
            raise DataError(f"run parameters: {e}") from None

        check_kind(self.features, self.test_view)
        if not method.features:  # an order that measures no similarity: its features are no part of it
            object.__setattr__(self, "features", "minilm")
            object.__setattr__(self, "test_view", "with-answer")
        if self.features != "minilm":  # the text MiniLM would embed does not reach the LM's features
            object.__setattr__(self, "embed_text", None)
        if self.rounds is not None:
            object.__setattr__(self, "rounds", tuple(self.rounds))
        self._check_adaptive(method)

    def _check_adaptive(self, method) -> None:
        """The adaptive orders' parameters: checked for those orders, no part of any other run."""
        for name, least, none_ok in (("adapt_every", 1, False), ("adapt_pool", 1, True), ("lookahead_batches", 1, False)):
            value = getattr(self, name)
            if value is None and none_ok:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise DataError(f"run parameter {name} must be an integer >= {least}{' or None' if none_ok else ''}, "
                                f"got {value!r}")
        if not method.adaptive:
            for f in ("adapt_every", "adapt_pool", "lookahead_batches"):
                object.__setattr__(self, f, next(x for x in fields(self) if x.name == f).default)
            if self.split.val_per_task:  # a static order never reads the validation set: the same run
                object.__setattr__(self, "split", replace(self.split, val_per_task=0))
        elif not self.split.val_per_task:
            raise DataError(f"run parameters: {self.arrangement} watches the held-out tasks while training and "
                            "reads their validation instances: set val_per_task (e.g. 2)")

    def to_dict(self) -> dict[str, Any]:
        d = without_late_defaults({f.name: getattr(self, f.name) for f in fields(self)},
                                  {"rounds": None, "features": "minilm", "test_view": "with-answer",
                                   "adapt_every": 10, "adapt_pool": None, "lookahead_batches": 4})
        if "rounds" in d:
            d["rounds"] = list(d["rounds"])
        return {**d, "split": self.split.identity(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        if isinstance(d.get("split"), dict):
            d["split"] = SplitConfig.from_dict(d["split"])
        if isinstance(d.get("train"), dict):
            d["train"] = TrainConfig.from_dict(d["train"])
        return from_known_fields(cls, d, "run")

    def key(self) -> str:
        """Hash of the config (and, for a model given as a folder, of its weight files' names, sizes
        and times: the same path with new weights is a new run; assets are pinned by sha256)."""
        identity: dict[str, Any] = {"config": self.to_dict(), "version": RUN_VERSION}
        if get_method(self.arrangement).version != 1:  # a method whose order changed: new runs, not old ones
            identity["arrangement_version"] = get_method(self.arrangement).version
        if self.model not in ASSETS and self.model not in TINY_MODELS:
            identity["weights"] = [(p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                   for p in sorted(Path(self.model).expanduser().glob("*.safetensors"))]
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the run parameters: one flat namespace over the three configs ---------------------------------
# Profiles, papermill parameters, `zsg train --set` and `run_config` all name a run's parameters by
# these flat names. Types, defaults and validation live on the config fields (`SplitConfig`,
# `TrainConfig`, `RunConfig`); a default that differs from the default profile says why in its
# field's metadata ("why"; tests/test_runs.py holds every such default to it).

@dataclass(frozen=True)
class Parameter:
    name: str  # the flat name
    section: str  # "split", "train" or "run": the config that holds it
    field: str  # its field there
    default: Any
    why: str | None  # why the default differs from the default profile's value, if it does


# Flat names that differ from their field's: each seed is named for what it seeds, and the TMA
# selection size for what it selects. Fields keep their names, so stored runs keep their keys.
RENAMED = {("split", "seed"): "split_seed", ("train", "seed"): "train_seed", ("run", "budget"): "tma_budget"}


def _declare() -> dict[str, Parameter]:
    out: dict[str, Parameter] = {}
    for section, cls in (("split", SplitConfig), ("train", TrainConfig), ("run", RunConfig)):
        for f in fields(cls):
            if f.name in ("split", "train"):  # RunConfig's nested configs: their fields are listed above
                continue
            name = RENAMED.get((section, f.name), f.name)
            assert name not in out, f"run parameter {name} is declared twice"
            out[name] = Parameter(name, section, f.name, f.default, f.metadata.get("why"))
    return out


PARAMETERS: dict[str, Parameter] = _declare()


def run_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The run parameters among `params` (a profile, a chapter's globals); the rest are not a run's."""
    return {k: v for k, v in params.items() if k in PARAMETERS}


def run_config(**params: Any) -> RunConfig:
    """A RunConfig from flat parameters (a profile plus overrides); an unknown name is an error."""
    nested: dict[str, dict[str, Any]] = {"split": {}, "train": {}, "run": {}}
    for name, value in params.items():
        if name not in PARAMETERS:
            raise DataError(f"unknown run parameter {name!r}; known: {', '.join(sorted(PARAMETERS))}")
        p = PARAMETERS[name]
        nested[p.section][p.field] = value
    return RunConfig(split=SplitConfig(**nested["split"]), train=TrainConfig.from_dict(nested["train"]), **nested["run"])


def flat_params(config: RunConfig) -> dict[str, Any]:
    """The flat parameters of a config: `run_config(**flat_params(c)) == c`."""
    holders = {"split": config.split, "train": config.train, "run": config}
    return {name: getattr(holders[p.section], p.field) for name, p in PARAMETERS.items()}


def load_profile(name: str, _asked_by: tuple[str, ...] = ()) -> dict:
    """A profile's parameters (`profiles/<name>.yaml`), with those of the profile it `extends:`
    beneath its own. A missing profile names the profile that asked for it; a YAML error names the
    file and line; a chain of `extends:` that comes back on itself names the chain."""
    import yaml

    path = PROFILES / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
        asker = f", which {PROFILES / _asked_by[-1]}.yaml extends" if _asked_by else ""
        raise ProfileError(f"no profile {name!r}{asker} (profiles: {known})")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(params, dict):
        raise ProfileError(f"{path}: a profile is a mapping of parameter names to values")
    if "extends" in params:  # another profile's parameters, with this one's on top
        base = params.pop("extends")
        if base == name or not isinstance(base, str):
            raise ProfileError(f"{path}: extends must name another profile, got {base!r}")
        chain = (*_asked_by, name)
        if base in chain:
            raise ProfileError(f"{path}: extends {base!r}, which comes back to it: {' -> '.join((*chain, base))}")
        params = {**load_profile(base, chain), **params}
    return params


def check_profile_keys(name: str, params: dict) -> None:
    """Refuse a profile key that is neither a run parameter nor a chapter parameter (a key one of
    the shipped profiles sets), so that a typo is named instead of dropped. The book runner checks
    against the chapters' own declarations; this check needs no book sources (an installed zsg)."""
    shipped = [load_profile(p) for p in SHIPPED_PROFILES if (PROFILES / f"{p}.yaml").exists()]
    unknown = sorted(set(params) - set(PARAMETERS).union(*shipped))
    if unknown:
        raise ProfileError(f"profile {name!r} ({PROFILES / name}.yaml) sets {', '.join(map(repr, unknown))}: neither a "
                        f"run parameter nor a chapter parameter (run parameters: {', '.join(sorted(PARAMETERS))})")
