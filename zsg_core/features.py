"""What "similar" means: the vectors every ordering compares, chosen by name (`FEATURES`).

The paper compares instances by a sentence encoder's embeddings. Later work points elsewhere, so
zsg offers three kinds, selected by name wherever similarity is measured (the arrangements,
`RunConfig.features`, E3's prefix measures, `zsg arrange --features`):

- **minilm**: the paper's all-MiniLM-L6-v2 on the instance's text (`embed`).
- **hidden**: the LM's own last hidden layer (after its final norm), mean-pooled over the
  instance's tokens as training reads them (template, prompt, answer, EOS), as RDS+ (Ivison et al.
  2025) pools the model's hidden states; then centred on the training pool's mean and
  L2-normalised. Centring matters: mean-pooled states share one large direction, so without it
  every pair looks alike by cosine. The last layer is the one RDS+ uses and the one nearest to
  the loss; with a frozen bottom (the cpu profile) it costs only the trained top's forward over
  the cached bottom outputs.
- **gradient**: as LESS (Xia et al. 2024), the gradient of an instance's mean answer loss with
  respect to the trained weights (every `nn.Linear` of the trained layers) after a short warm-up
  (`WARMUP_STEPS` steps on a seeded random order of the training list, through `train.train`),
  randomly projected and L2-normalised. The projection is Kronecker-factored per layer (LoGra,
  Choe et al. 2024): with input x_t and output gradient g_t at each token, a layer's weight
  gradient is sum_t g_t x_t^T, and P_out (sum_t g_t x_t^T) P_in^T = sum_t (P_out g_t)(P_in x_t)^T,
  so neither the full gradient nor a parameters x dimensions matrix is ever formed. Why not a
  library's projector: traker's and dattri's CPU projector (`BasicProjector`) multiplies the
  flattened per-instance gradient (14M numbers for the cpu profile's 4 trained layers) by a dense
  random matrix made in blocks of 100 columns (5.6 GB per block), ~57 GFLOP per instance at 4,096
  dimensions; their fast projectors (CUDA kernels, sjlt) need a GPU. Plain (SGD) gradients on
  both sides: LESS divides training gradients by Adam's second moment, which needs the
  unprojected gradient. The embeddings (tied to the LM head) are not part of the features.

**The held-out side** (`TEST_VIEWS`). The paper embeds a held-out instance with its reference
answer ("with-answer", the default here too). A user without labels has prompts only
("prompt-only"): minilm embeds the prompt, hidden pools the prompt's positions, gradient takes
the loss of the model's own greedy answer.

Every vector is cached on disk (`embed.VectorStore`) under what made it: the kind, the model's
weights, the cut, the precision, and for gradients the warm-up (its items, lr, batch) and the
projection; a second call computes nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .data import DataError, Record
from .embed import EmbedText, Encoder, VectorStore, embed_text
from .util import cache_dir, seeded_shuffle

FEATURES = ("minilm", "hidden", "gradient")
TEST_VIEWS = ("with-answer", "prompt-only")
WARMUP_STEPS = 10  # gradient: past the first steps, which teach the format (chapter 2: held-out loss falls fastest)
PROJECTION_DIM = 8192  # gradient: LESS's dimension, split evenly over the trained linear layers
PROJECTION_SEED = 0
WARMUP_SEED = 0  # gradient: the warm-up's random order (one for every arrangement built on them)
FEATURES_VERSION = 1  # bump when a kind's vectors change for the same inputs (part of the cache folder)

# Seconds this process has spent computing the LM's features, per kind (cached vectors cost
# nothing here): a run's manifest records what its arranging spent, the cost model prices it.
_COMPUTING: dict[str, float] = {}


def seconds_computing() -> dict[str, float]:
    """Seconds spent so far computing features that were not cached: per kind (hidden, gradient)
    where training vectors were computed, per "<kind> (held-out only)" where only held-out ones were."""
    return dict(_COMPUTING)


@dataclass(frozen=True)
class LMSource:
    """The model the LM features come from, as a run trains it: its name or folder, the frozen
    cut, the precision; and, for gradients, the warm-up's lr and batch size."""
    model: str = "smollm2-135m"
    frozen_layers: int = 0
    precision: str = "fp32"  # "bf16" autocast or "fp32" (resolved: never "auto")
    max_len: int | None = None
    lr: float = 1e-4
    batch_size: int = 8

    def __post_init__(self) -> None:
        # refused here, before a model is loaded (a batch of 0 divides by zero in the warm-up, an
        # infinite lr fills the gradients with NaN), by the rules the training config declares
        from .train import TrainConfig

        TrainConfig(lr=self.lr, batch_size=self.batch_size, frozen_layers=self.frozen_layers, precision=self.precision)


def check_kind(kind: str, test_view: str = "with-answer") -> None:
    if kind not in FEATURES:
        raise DataError(f"unknown feature kind {kind!r}; choose one of {', '.join(FEATURES)}")
    if test_view not in TEST_VIEWS:
        raise DataError(f"unknown test view {test_view!r}; choose one of {', '.join(TEST_VIEWS)}")


def compute(train: Sequence[Record], test: Sequence[Record], kind: str = "minilm", *, text: EmbedText = "all",
            test_view: str = "with-answer", source: LMSource | None = None, encoder: Encoder | None = None,
            cache: Path | None = None, log: Callable[[str], None] = print) -> tuple[np.ndarray, np.ndarray]:
    """(training features, held-out features), row i for record i, rows L2-normalised.

    `text` is minilm's (`embed.embed_text`); `source` is the LM of hidden and gradient (required
    for them); `cache` replaces `$ZSG_CACHE` as the root of their vector store (the LM's
    frozen-bottom outputs stay in the shared cache, as runs have them)."""
    check_kind(kind, test_view)
    if not train or not test:
        raise DataError("features need a non-empty training list and held-out set")
    if kind == "minilm":
        encoder = encoder or Encoder()
        x = encoder.encode([embed_text(r, text) for r in train])
        if test_view == "prompt-only":
            return x, encoder.encode([r.prompt for r in test])
        return x, encoder.encode([embed_text(r, text) for r in test])
    if source is None:
        raise DataError(f"{kind} features need the LM they come from (a model name or folder)")
    started = time.perf_counter()
    computed = _hidden if kind == "hidden" else _gradient
    x, t, fresh = computed(train, test, source, test_view, cache, log)
    if fresh:  # loading the LM to find everything cached is the run's fixed part, not the features'
        # the whole pool, or only a held-out view the pool's cached vectors lacked: priced apart
        name = kind if fresh == "pool" else f"{kind} (held-out only)"
        _COMPUTING[name] = _COMPUTING.get(name, 0.0) + time.perf_counter() - started
    if kind == "hidden":
        mean = x.mean(axis=0, keepdims=True)  # centred on the training pool: see the module's note
        return _normalised(x - mean), _normalised(t - mean)
    return _normalised(x), _normalised(t)


def _normalised(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def _lm(source: LMSource):
    from .model import TunedLM

    return TunedLM(source.model, source.frozen_layers, source.max_len, autocast=source.precision == "bf16")


def _store(lm, kind: str, extra: dict | None, cache: Path | None, log: Callable[[str], None]) -> VectorStore:
    """The cache folder for `kind` from this model's weights under this cut and precision."""
    spec = {"version": FEATURES_VERSION, **(extra or {})}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    name = f"{kind}-{lm.fingerprint[:16]}-f{lm.frozen_layers}-{lm.precision_name}-{digest}"
    return VectorStore((cache or cache_dir()) / "features" / name, log)


def _keys(items, prompt_only: bool) -> list[str]:
    return [it.key + ("/prompt-only" if prompt_only else "") for it in items]


# -- hidden states ---------------------------------------------------------------------------------

def _hidden(train, test, source: LMSource, test_view: str, cache, log) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(training vectors, held-out vectors, what had to be computed: "pool", "held-out" or None)"""
    lm = _lm(source)
    store = _store(lm, "hidden", None, cache, log)
    sides = [(lm.items(train), False), (lm.items(test), test_view == "prompt-only")]
    fresh = []
    for side, (items, prompt_only) in zip(("pool", "held-out"), sides):
        keys = _keys(items, prompt_only)
        todo = set(store.missing(keys))
        chosen = [it for it, k in zip(items, keys) if k in todo]
        if chosen:
            store.add(_keys(chosen, prompt_only), pooled_hidden(lm, chosen, prompt_only))
            fresh.append(side)
    x, t = (store.get(_keys(items, p)) for items, p in sides)
    return x, t, fresh[0] if fresh else None


def pooled_hidden(lm, items, prompt_only: bool = False) -> np.ndarray:
    """Mean over each item's positions (its prompt's only, up to the first answer token, with
    `prompt_only`) of the LM's last hidden layer; items run packed, each attending to itself."""
    import torch

    from .packing import PACK_TOKENS, by_prefix, first_label, rows

    lm.cache_bottom(items, log=lambda m: None)
    out: dict[int, np.ndarray] = {}
    was_training = lm.model.training
    lm.model.eval()
    try:
        with torch.no_grad(), lm.precision():
            for row in rows(sorted(items, key=by_prefix), PACK_TOKENS):
                pack = lm.pack(row)
                hidden = lm.top_states(pack).float()
                for item, states in zip(row, pack.item_rows(hidden)):
                    end = first_label(item) if prompt_only else len(states)
                    out[id(item)] = states[: max(end, 1)].mean(dim=0).cpu().numpy()
    finally:
        lm.model.train(was_training)
    return np.stack([out[id(it)] for it in items])


# -- gradients ---------------------------------------------------------------------------------------

def _gradient(train, test, source: LMSource, test_view: str, cache, log) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(training vectors, held-out vectors, what had to be computed: "pool", "held-out" or None)"""
    from .train import TrainConfig
    from .train import train as train_lm

    lm = _lm(source)
    warm = seeded_shuffle(train, WARMUP_SEED)[: WARMUP_STEPS * source.batch_size]
    spec = {"warmup": hashlib.sha256("\n".join(r.id for r in warm).encode()).hexdigest()[:16],
            "steps": WARMUP_STEPS, "lr": source.lr, "batch_size": source.batch_size,
            "dim": PROJECTION_DIM, "projection_seed": PROJECTION_SEED}
    store = _store(lm, "gradient", spec, cache, log)
    train_items, test_items = lm.items(train), lm.items(test)
    prompt_only = test_view == "prompt-only"
    todo = store.missing(_keys(train_items, False) + _keys(test_items, prompt_only))
    fresh = None if not todo else "pool" if set(todo) & set(_keys(train_items, False)) else "held-out"
    if todo:
        todo = set(todo)
        steps = min(WARMUP_STEPS, math.ceil(len(warm) / source.batch_size))
        config = TrainConfig(lr=source.lr, batch_size=source.batch_size, max_steps=steps, eval_steps=(),
                             frozen_layers=source.frozen_layers, precision=source.precision)
        log(f"gradient features: warming up {steps} steps on a random order, then {len(todo)} instances")
        train_lm(lm, warm, test, config, log=log)  # the real training path: the model as a run trains it
        chosen = [it for it in train_items if it.key in todo]
        if chosen:
            store.add(_keys(chosen, False), projected_gradients(lm, chosen))
        wanted = [(it, r) for it, r in zip(test_items, test) if _keys([it], prompt_only)[0] in todo]
        if wanted:
            scored = [it for it, _ in wanted]
            if prompt_only:  # the model's own greedy answer stands in for the missing reference
                scored = lm.items(_self_answered(lm, [r for _, r in wanted]))
            store.add(_keys([it for it, _ in wanted], prompt_only), projected_gradients(lm, scored))
    return store.get(_keys(train_items, False)), store.get(_keys(test_items, prompt_only)), fresh


def _self_answered(lm, records: Sequence[Record], max_new_tokens: int = 64) -> list[Record]:
    """Each record's prompt with the model's own greedy answer, cut to fit the model's max_len."""
    from .metrics import generate
    from .prompt import encode

    with lm.precision():
        answers = generate(lm.model, lm.tokenizer, [r.prompt for r in records], max_new_tokens)
    out = []
    for r, answer in zip(records, answers):
        def answered(text: str) -> Record:
            return Record(r.id, r.task, [r.messages[0], {"role": "assistant", "content": text}])
        ids = lm.tokenizer(answer, add_special_tokens=False)["input_ids"]
        while ids and lm.max_len is not None and len(encode(answered(answer), lm.tokenizer)[0]) > lm.max_len:
            ids = ids[:-1]  # the reference fitted, so the prompt does: shorten the answer until it fits too
            answer = lm.tokenizer.decode(ids)
        out.append(answered(answer))
    return out


def trained_linears(lm) -> list[tuple[str, object]]:
    """The `nn.Linear` layers whose weights training changes, in module order."""
    from torch import nn

    return [(name, m) for name, m in lm.loss.top.named_modules()
            if isinstance(m, nn.Linear) and m.weight.requires_grad]


def projections(lm, dim: int = PROJECTION_DIM, seed: int = PROJECTION_SEED) -> dict[str, tuple]:
    """Per trained linear layer, (P_out, P_in): k x out and k x in Gaussian matrices (scaled by
    1/sqrt(k) each, so inner products are preserved in expectation), k = floor(sqrt(dim / layers))."""
    import torch

    layers = trained_linears(lm)
    if not layers:
        raise DataError("the model has no trained linear layers to take gradients of")
    k = max(1, math.isqrt(dim // len(layers)))
    generator = torch.Generator().manual_seed(seed)
    return {name: (torch.randn(k, m.out_features, generator=generator) / math.sqrt(k),
                   torch.randn(k, m.in_features, generator=generator) / math.sqrt(k)) for name, m in layers}


def projected_gradients(lm, items, dim: int = PROJECTION_DIM, seed: int = PROJECTION_SEED,
                        tokens_per_row: int | None = None) -> np.ndarray:
    """Per item, the Kronecker-projected gradient of its mean answer loss with respect to every
    trained linear layer's weight, concatenated (layers x k x k numbers). Items run packed without
    shared prefixes, so each position's gradient belongs to one item alone."""
    import torch

    from .packing import PACK_TOKENS, rows
    from .prompt import IGNORE

    proj = projections(lm, dim, seed)
    layers = trained_linears(lm)
    seen: dict[str, tuple] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            seen[name] = (inputs[0], output)
        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in layers]
    lm.cache_bottom(items, log=lambda m: None)
    out: dict[int, np.ndarray] = {}
    was_training = lm.model.training
    lm.model.eval()  # no dropout: the gradient of the loss the model computes
    try:
        for row in rows(list(items), tokens_per_row or PACK_TOKENS):
            pack = lm.pack(row, share_prefixes=False)
            seen.clear()
            with lm.precision():
                sums, counts, _ = lm.loss(*pack.args())
                objective = (sums / counts.clamp(min=1)).sum()  # each item's mean answer loss
            outputs = [seen[name][1] for name, _ in layers]
            grads = torch.autograd.grad(objective, outputs)  # only what the outputs need: no weight gradients
            # the last layer runs only at the label positions (model.ResponseLoss): its MLP's linears see those rows alone
            labelled = pack.segments[pack.targets != IGNORE]
            parts = []
            for (name, _), g in zip(layers, grads):
                p_out, p_in = proj[name]
                a = g[0].float() @ p_out.T  # (positions it ran at, k)
                b = seen[name][0][0].detach().float() @ p_in.T
                # a linear inside the last layer's MLP saw only the label rows; any other saw the row
                segments = {len(pack.segments): pack.segments, len(labelled): labelled}.get(len(a))
                if segments is None:
                    raise DataError(f"{name} ran at {len(a)} positions of a {len(pack.segments)}-position row")
                per_item = torch.zeros(len(row), a.shape[1], b.shape[1])
                per_item.index_add_(0, segments, a[:, :, None] * b[:, None, :])
                parts.append(per_item.reshape(len(row), -1))
            for item, v in zip(row, torch.cat(parts, dim=1)):
                out[id(item)] = v.numpy()
    finally:
        for h in handles:
            h.remove()
        lm.model.train(was_training)
    return np.stack([out[id(it)] for it in items])


def cost(train: Sequence[Record], test: Sequence[Record], kinds: Sequence[str], source: LMSource,
         encoder: Encoder | None = None) -> pd.DataFrame:
    """What computing each kind costs: `compute` on `train` and `test` in a fresh, temporary
    vector store (the LM's frozen-bottom outputs as runs have them cached; MiniLM's model loaded
    beforehand), and again on the first half of `train`: the difference is the cost per instance,
    the rest is fixed (the LM's load; gradient's warm-up). Gradient's warm-up is the same in both
    only when the half holds its WARMUP_STEPS batches; below that the whole cost is counted per
    instance (no fixed part: an upper bound for larger sets). Columns kind, instances, seconds,
    fixed seconds, seconds per 1,000 (the part per instance), bytes on disk per instance; `cost_of`
    scales a row."""
    import tempfile

    def timed(kind: str, sample: Sequence[Record], root: Path) -> float:
        fresh = None
        if kind == "minilm":
            fresh = Encoder(encoder.model_name if encoder else "minilm-l6", cache=root / "embeddings")
            fresh._st()  # the model load is not the encoding
        t0 = time.perf_counter()
        compute(sample, test, kind, source=source, encoder=fresh, cache=root, log=lambda m: None)
        return time.perf_counter() - t0

    half = train[: len(train) // 2]
    if not half:
        raise DataError("measuring the cost takes at least 2 training instances")
    rows = []
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            timed(kind, train[:2], root / "first")  # first-call costs (imports, thread pools) are no one's
            seconds_half, seconds = timed(kind, half, root / "half"), timed(kind, train, root / "whole")
            folder = root / "whole" / ("embeddings" if kind == "minilm" else "features")
            size = sum(f.stat().st_size for f in folder.rglob("*.npz") if kind == "minilm" or f.parent.name.startswith(kind))
        n = len(train) + len(test)
        same_fixed = kind != "gradient" or len(half) >= WARMUP_STEPS * source.batch_size
        per_instance = max(seconds - seconds_half, 0.0) / (len(train) - len(half)) if same_fixed else seconds / n
        rows.append({"kind": kind, "instances": n, "seconds": seconds,
                     "fixed seconds": max(seconds - per_instance * n, 0.0),
                     "seconds per 1,000": per_instance * 1000, "bytes per instance": size / n})
    return pd.DataFrame(rows)


def cost_of(row: Mapping, instances: int) -> float:
    """Seconds a row of `cost` predicts for computing `instances` at once."""
    return row["fixed seconds"] + row["seconds per 1,000"] * instances / 1000
