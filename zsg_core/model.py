"""The language model being tuned, split into a frozen bottom and a trained top.

A decoder-only LM is `embed -> layers[0..L) -> norm -> lm_head`. With `frozen_layers = F > 0`,
the embeddings and layers [0, F) never change, so their output for an instance (the residual
stream after layer F-1) is a fixed function of its tokens: it is computed once, stored on disk
(`$ZSG_CACHE/hidden/<weights>-c<version>-f<F>-<precision>/`, fp16, or fp32 for a model whose values exceed fp16, with a checksum) and shared by every
arrangement and every evaluation of the same model under the same precision. Each step then runs
only layers [F, L), the final norm and the LM head; only layers [F, L) are trained (the final
norm and the head, tied to the embeddings in SmolLM2, stay as they are). With F = 0 every
parameter is trained, as in the paper.

How the computation is laid out (exact for any F; the numbers equal one item at a time, tested):

- **Packing** (`packing`): the items of a step, an evaluation row or a cache row in one row, each
  attending only to itself (`attention.packed_attention`), with no padding.
- **Attention by hand when training on CPU** (`attention`): plain matmuls with the backward
  written out, where torch's flash-attention backward is slow on short spans
  (`benchmarks/bench_train.py`).
- **Frozen weights cast once** (`cast_once`): a frozen linear keeps its bf16 copy under autocast.
- **The LM head only where a label is predicted** (a small share of the tokens), and likewise the
  last layer's query projection, attention, attention output projection and MLP
  (`_at_label_rows`, `packed_attention`): a position's output of the last layer feeds nothing but
  its own prediction, so only its keys and values are needed elsewhere.

`ResponseLoss` is that computation as one module (what DDP wraps); `TunedLM` holds the model, its
tokenizer and the cache. `check` proves at start-up that bottom + top reproduce the whole
model's loss and that packing reproduces one item at a time, so an architecture this does not
fit fails loudly instead of training silently wrong.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import torch
from torch import nn

from .assets import ASSETS, TINY_MODELS, load_tokenizer, model_path, verified_files
from .attention import PACKED_ATTENTION, ModelError
from .attention import register as register_packed_attention
from .cast_once import cast_weights_once
from .data import Record
from .packing import PACK_TOKENS, Item, Pack, by_prefix, lay_out, padded, rows
from .precision import resolve
from .prompt import IGNORE, encode
from .util import atomic_file, cache_dir, sha256_file, show_progress

# The frozen bottom's outputs are stored in fp16 when the model's largest value on a probe instance
# stays below this, a quarter of fp16's largest finite value (room for instances that go higher).
FP16_HEADROOM = 2.0 ** 14
# Bump when a cache entry's computation changes (2: each entry independent of what is computed with
# it); older entries then sit in another folder and are never mixed with new ones.
CACHE_VERSION = 2


def process_state():
    """This process's place among the training processes (torchrun / accelerate launch set them)
    and its device. On a machine without a GPU the processes talk over gloo; accelerate only does
    that when told it runs on CPU."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def load_model(name: str, seed: int = 0) -> tuple[nn.Module, object]:
    """(model in fp32, tokenizer). Tiny models are random-init from `seed`; real ones pretrained."""
    from transformers import AutoModelForCausalLM

    register_packed_attention()
    tokenizer = load_tokenizer(name)
    if name in TINY_MODELS:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(_tiny_config(name, tokenizer), dtype=torch.float32,
                                                 attn_implementation=PACKED_ATTENTION)
    else:
        from transformers.utils import logging as hf_logging

        if not show_progress():  # no weight-loading bar per run in logs (make book, workers, notebooks)
            hf_logging.disable_progress_bar()
        model = AutoModelForCausalLM.from_pretrained(model_path(name), dtype=torch.float32,
                                                     attn_implementation=PACKED_ATTENTION)
    model.config.use_cache = False
    cast_weights_once(model)
    return model, tokenizer


def _tiny_config(name: str, tokenizer):
    """A few-layer config of a real architecture over the real SmolLM2 tokenizer."""
    from transformers import Gemma3TextConfig, LlamaConfig

    shared = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    if name == "tiny-llama":
        return LlamaConfig(**shared)
    # Gemma 3: sliding-window attention on all but every 2nd layer here (5 of 6 in the real one),
    # a window of 16 tokens so that ordinary instances cross it
    return Gemma3TextConfig(**shared, head_dim=16, sliding_window=16,
                            layer_types=["sliding_attention", "full_attention"] * 2)


def fingerprint(name: str, model: nn.Module) -> str:
    """Identity of the starting weights: the weight files' sha256 for real models, the config and
    a checksum of every parameter for tiny ones (cheap: they are tiny)."""
    if name in TINY_MODELS:
        h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
        for p in model.state_dict().values():
            h.update(p.detach().float().numpy().tobytes())
        return h.hexdigest()

    files = sorted(model_path(name).glob("*.safetensors"))
    if not files:
        raise ModelError(f"{model_path(name)} has no .safetensors weights")
    # a prepared asset's files were verified against the sha256 recorded at conversion: use those
    recorded = verified_files(name) if name in ASSETS else None
    digests = [recorded[f.name]["sha256"] if recorded else sha256_file(f) for f in files]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def _decoder(model: nn.Module) -> nn.Module:
    inner = getattr(model, "model", None)
    if inner is None or not isinstance(getattr(inner, "layers", None), nn.ModuleList) or not hasattr(model, "lm_head"):
        raise ModelError(f"{type(model).__name__} is not a decoder-only LM of the form model.layers + lm_head")
    return inner


def _view(decoder: nn.Module, layers: slice, final_norm: bool) -> nn.Module:
    """The same decoder restricted to some of its layers, sharing every parameter with it."""
    view = copy.copy(decoder)
    view._modules = dict(decoder._modules)
    view._parameters = dict(decoder._parameters)
    view._buffers = dict(decoder._buffers)
    view.layers = nn.ModuleList(list(decoder.layers)[layers])
    view.config = copy.deepcopy(decoder.config)
    view.config.num_hidden_layers = len(view.layers)
    if getattr(view.config, "layer_types", None):  # sliding/full attention per layer (Gemma 3)
        view.config.layer_types = list(view.config.layer_types)[layers]
    if not final_norm:
        view.norm = nn.Identity()
    return view


def _tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def _write_hidden(path: Path, hidden: torch.Tensor) -> None:
    from safetensors.torch import save

    with atomic_file(path, "wb") as f:
        f.write(save({"hidden": hidden}, metadata={"sha256": _tensor_sha256(hidden)}))


def _read_hidden(path: Path, length: int) -> torch.Tensor:
    """A cached bottom output, checked against the checksum it was stored with and its length."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        want, hidden = (f.metadata() or {}).get("sha256"), f.get_tensor("hidden")
    if want is None or _tensor_sha256(hidden) != want:
        raise ValueError("its values do not match the sha256 stored with them")
    if hidden.dim() != 2 or hidden.shape[0] != length:
        raise ValueError(f"shape {tuple(hidden.shape)} does not fit an instance of {length} tokens")
    return hidden


def _at_label_rows(module: nn.Module) -> None:
    """Let `module` (per-position: an MLP, an output projection) run only at the positions in its
    `zsg_rows` (a 1-d index into the row, set by `ResponseLoss` for one forward), returning zeros
    elsewhere; with `zsg_rows` None it is unchanged. Patched on the instance, once, so parameter
    names and checkpoints stay as they are."""
    if "zsg_rows" in module.__dict__:
        return
    whole = module.forward
    module.zsg_rows = None

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        rows = module.zsg_rows
        if rows is None:
            return whole(x, *args, **kwargs)
        out = whole(x[:, rows], *args, **kwargs)
        return out.new_zeros(*x.shape[:-1], out.shape[-1]).index_copy(1, rows, out)

    module.forward = forward


class ItemLosses(NamedTuple):
    """What `ResponseLoss` returns for a packed row: one value per item."""
    sums: torch.Tensor  # summed cross-entropy over the item's labels (response tokens + EOS)
    counts: torch.Tensor  # how many labels
    final: torch.Tensor  # the loss on the last label (the EOS) alone


class ResponseLoss(nn.Module):
    """Summed cross-entropy over the response tokens (+EOS) of each item of a packed row, and
    their counts. Input is token ids (frozen_layers = 0) or the cached output of the frozen bottom,
    laid out by `Pack`."""
    def __init__(self, model: nn.Module, frozen_layers: int):
        super().__init__()
        decoder = _decoder(model)
        n = len(decoder.layers)
        if not 0 <= frozen_layers < n:
            raise ModelError(f"frozen_layers must be in [0, {n - 1}] for a {n}-layer model, got {frozen_layers}")
        self.top = _view(decoder, slice(frozen_layers, n), final_norm=True) if frozen_layers else decoder
        self.lm_head = model.lm_head
        self.frozen_layers = frozen_layers
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        last = self.top.layers[-1]
        attention = getattr(last, "self_attn", None)
        self.label_rows_only = [m for m in (getattr(last, "mlp", None), getattr(attention, "q_proj", None),
                                            getattr(attention, "o_proj", None)) if isinstance(m, nn.Module)]
        for m in self.label_rows_only:
            _at_label_rows(m)
        if isinstance(attention, nn.Module):  # `packed_attention` computes only these rows' queries
            attention.zsg_rows = None
            self.label_rows_only.append(attention)

    def forward(self, inputs: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor, segments: torch.Tensor,
                spans: Sequence[tuple[int, int, int, int]], n_items: int) -> "ItemLosses":
        """Per item of the row (the fields of a `Pack`, in order): its summed loss, its label
        count, and its loss on its last label alone, the EOS that ends its answer (`prompt.encode`
        never truncates), which weighs 1/count in the item's mean (NaN for an item without labels)."""
        key = "inputs_embeds" if self.frozen_layers else "input_ids"
        chosen = (targets != IGNORE).nonzero(as_tuple=True)[0]
        for m in self.label_rows_only:
            m.zsg_rows = chosen
        try:
            hidden = self.top(**{key: inputs}, position_ids=positions, use_cache=False,
                              zsg_spans=spans).last_hidden_state[0]
        finally:
            for m in self.label_rows_only:
                m.zsg_rows = None
        logits = self.lm_head(hidden[chosen]).float()  # the head only where a label is predicted
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        token_loss = nn.functional.cross_entropy(logits, targets[chosen], reduction="none")
        item = segments[chosen]
        losses = torch.zeros(n_items, device=logits.device).index_add(0, item, token_loss)
        counts = torch.bincount(item, minlength=n_items)
        # `chosen` ascends and each item's labels are contiguous, so an item's last label is the
        # last position of its segment among them
        last = torch.zeros(n_items, dtype=torch.long, device=logits.device).scatter_reduce(
            0, item, torch.arange(len(item), device=logits.device), reduce="amax", include_self=False)
        final = torch.where(counts > 0, token_loss[last], torch.full_like(losses, float("nan")))
        return ItemLosses(losses, counts, final)



class TunedLM:
    """A model, its tokenizer, the frozen/trained split and the cache of bottom outputs."""
    def __init__(self, name: str, frozen_layers: int = 0, max_len: int | None = None, seed: int = 0,
                 autocast: bool | None = None, hidden_cache: Path | None = None):
        """`autocast`: bf16 autocast on or off; None decides as `precision: auto` does."""
        if autocast is None:

            autocast = resolve("auto") == "bf16"
        self.name, self.max_len, self.autocast = name, max_len, autocast
        self.model, self.tokenizer = load_model(name, seed)
        self.model.to(process_state().device)  # this process's GPU under torchrun, else the CPU
        self.frozen_layers = frozen_layers
        self.loss = ResponseLoss(self.model, frozen_layers)
        decoder = _decoder(self.model)
        self.bottom = _view(decoder, slice(0, frozen_layers), final_norm=False) if frozen_layers else None
        trained = set(id(p) for layer in list(decoder.layers)[frozen_layers:] for p in layer.parameters())
        if frozen_layers == 0:  # full fine-tuning, as the paper
            trained = set(id(p) for p in self.model.parameters())
        for p in self.model.parameters():
            p.requires_grad_(id(p) in trained)
        self.fingerprint = fingerprint(name, self.model)
        self._hidden: dict[tuple[str, str], torch.Tensor] = {}  # (precision, item key) -> bottom output
        self._hidden_root = hidden_cache or cache_dir() / "hidden"
        self.cache_dtype = self._cache_dtype() if frozen_layers else None

    @torch.no_grad()
    def _cache_dtype(self) -> torch.dtype:
        """How the bottom's outputs are stored: fp16 where this model's residual stream fits it with
        room to spare, fp32 where it does not. SmolLM2's stays in the hundreds; Gemma 3's reaches
        ~1e5 at an instance's first positions, beyond fp16's largest finite value (65,504), where
        fp16 would store infinities. Decided on one fixed probe instance (the large values come
        from the first positions, which every instance has); `cache_bottom` still refuses to store
        a value the dtype cannot hold."""
        probe = self.items([Record("probe", "probe", [{"role": "user", "content": "Say hello."},
                                                        {"role": "assistant", "content": "Hello."}])])[0]
        with self.precision():
            out = self.bottom(input_ids=probe.ids[None].to(self.device), use_cache=False).last_hidden_state
        return torch.float16 if float(out.abs().max()) < FP16_HEADROOM else torch.float32

    @property
    def precision_name(self) -> str:
        return "bf16" if self.autocast else "fp32"

    @property
    def cache_folder(self) -> Path:
        """Where the bottom outputs live: one folder per starting weights, cut and precision. An
        output computed under bf16 autocast differs from the fp32 one (enough to move an instance's
        loss visibly), so the two are never mixed. Outputs stored in fp32 (a model
        whose residual stream does not fit fp16) have a folder of their own."""
        stored = "" if self.cache_dtype in (None, torch.float16) else "-stored-fp32"
        return self._hidden_root / f"{self.fingerprint[:16]}-c{CACHE_VERSION}-f{self.frozen_layers}-{self.precision_name}{stored}"

    def precision(self):
        return torch.autocast("cpu" if self.device.type == "cpu" else self.device.type, dtype=torch.bfloat16,
                              enabled=self.autocast)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def items(self, records: Sequence[Record]) -> list[Item]:
        out = []
        for i, r in enumerate(records):
            ids, labels = encode(r, self.tokenizer, self.max_len)
            key = hashlib.sha1(json.dumps(ids).encode()).hexdigest()
            out.append(Item(i, r.id, torch.tensor(ids), torch.tensor(labels), key))
        return out

    # -- the frozen bottom's outputs -----------------------------------------------------------

    def pack(self, items: Sequence[Item], share_prefixes: bool = True) -> Pack:
        """`items` end to end in one row, with their inputs (ids, or cached bottom outputs)."""
        return lay_out(items, [self.inputs(it) for it in items], share_prefixes)

    @torch.no_grad()
    def cache_bottom(self, items: Sequence[Item], progress=None, log: Callable[[str], None] = print) -> int:
        """Compute and store the bottom outputs the cache lacks; returns how many were computed.
        The missing items run packed (`bottom_outputs`), each a function of its item alone, so an
        entry is the same bits whatever filled the cache before it (tested).
        Entries are safetensors files carrying the sha256 of their values: a damaged one is
        named through `log`, dropped and computed again, never used."""
        if not self.frozen_layers:
            return 0
        missing: dict[str, Item] = {}
        damaged: list[str] = []
        for item in items:
            entry = (self.precision_name, item.key)
            if entry in self._hidden or item.key in missing:
                continue
            path = self.cache_folder / f"{item.key}.safetensors"
            if path.exists():
                try:
                    self._hidden[entry] = _read_hidden(path, len(item.ids))
                    continue
                except Exception as e:  # a damaged file is recomputed, never trusted
                    damaged.append(f"{path.name} ({e})")
                    path.unlink(missing_ok=True)
            missing[item.key] = item
        if damaged:  # one line, however many: a damaged disk can mean hundreds of entries
            log(f"frozen-layer cache {self.cache_folder}: {len(damaged)} damaged "
                f"entr{'y' if len(damaged) == 1 else 'ies'} removed and computed again (first: {damaged[0]})")
        for item, value in self.bottom_outputs(list(missing.values())):  # written row by row as they come
            entry = (self.precision_name, item.key)
            stored = value.to(self.cache_dtype).cpu().contiguous()
            if not torch.isfinite(stored).all():  # never store what cannot be read back as it was
                raise ModelError(f"{self.name}: the frozen bottom's output for instance {item.id} is not finite "
                                 f"stored as {self.cache_dtype} (largest |value| {float(value.abs().max()):.4g})")
            self._hidden[entry] = stored
            _write_hidden(self.cache_folder / f"{item.key}.safetensors", self._hidden[entry])
            if progress is not None:
                progress.update(1)
        return len(missing)

    @torch.no_grad()
    def bottom_outputs(self, items: Sequence[Item]) -> Iterator[tuple[Item, torch.Tensor]]:
        """(item, the frozen bottom's output for it), computed now; nothing is read from or written
        to the cache. Each output is a function of its item alone, whatever is computed with it:
        items run in rows padded to exactly `PACK_TOKENS` tokens (the matmuls' shapes never depend
        on the neighbours) and share no prefix (a shared prefix sends an item's attention through
        another kernel, and which items share one depends on which are missing together;
        benchmarks/bench_cache.py measures both ways). Bit-identical to the item computed alone, and
        across fill histories (tested)."""
        for row in rows(sorted(items, key=lambda it: it.key), PACK_TOKENS):
            pack = lay_out(row, [it.ids.to(self.device) for it in row], share_prefixes=False)
            inputs, positions, spans = padded(pack, PACK_TOKENS)
            with self.precision():
                hidden = self.bottom(input_ids=inputs, position_ids=positions, zsg_spans=spans,
                                     use_cache=False).last_hidden_state[0]
            yield from zip(row, pack.item_rows(hidden))

    def top_states(self, pack: Pack) -> torch.Tensor:
        """The last hidden states (after the final norm) over a packed row: the trained top run on
        its inputs, as `ResponseLoss` runs it before the head (features read them)."""
        key = "inputs_embeds" if self.frozen_layers else "input_ids"
        return self.loss.top(**{key: pack.inputs}, position_ids=pack.positions, use_cache=False,
                             zsg_spans=pack.spans).last_hidden_state[0]

    def inputs(self, item: Item) -> torch.Tensor:
        if not self.frozen_layers:
            return item.ids.to(self.device)
        entry = (self.precision_name, item.key)
        if entry not in self._hidden:
            self.cache_bottom([item])
        return self._hidden[entry].to(self.device, torch.float32)

    # -- evaluation ------------------------------------------------------------------------------

    @torch.no_grad()
    def item_losses(self, items: Sequence[Item], tokens_per_row: int = PACK_TOKENS) -> list[tuple[float, int, float]]:
        """(mean loss over response tokens + EOS, their count, the loss of the EOS alone) per item,
        in eval mode. Items run packed in rows of `tokens_per_row` tokens, those with a common
        beginning side by side so that they share it; each item attends only to itself and its
        prefix, so its loss does not depend on its row (equal to one at a time; tested)."""
        was_training = self.model.training
        self.model.eval()
        self.loss.eval()  # the loss module too: hooks on it see an evaluation, not a training step
        out: list[tuple[float, int, float]] = [(0.0, 0, math.nan)] * len(items)
        order = sorted(range(len(items)), key=lambda i: (by_prefix(items[i]), i))
        done = 0  # how many of `order` the rows so far held
        try:
            with self.precision():
                for row in rows([items[i] for i in order], tokens_per_row):
                    sums, counts, final = self.loss(*self.pack(row).args())
                    for position, total, n, last in zip(order[done:], sums.tolist(), counts.tolist(), final.tolist()):
                        out[position] = (total / max(n, 1), n, last)
                    done += len(row)
        finally:
            self.model.train(was_training)
            self.loss.train(was_training)
        return out

    @torch.no_grad()
    def check(self, items: Sequence[Item], tolerance: float = 0.01) -> float:
        """Start-up checks on a few items, both in fp32 (`ModelError` if one fails):
        - the whole model's loss is finite;
        - bottom + top reproduce the whole model's loss, with the cut stored as the cache stores it
          (above `tolerance` the architecture does not fit the cut);
        - a packed row reproduces each item run alone (above 1e-3 the model's attention
          does not honour zsg's per-item attention and packing would mix items).
        The bottom is computed afresh, not read from the cache: a cached entry was computed under
        bf16 autocast, which alone moves an instance's loss more than these checks allow. Returns the
        largest split gap (0 without a frozen bottom)."""
        items = list(items)[:3]
        was_training = self.model.training
        self.model.eval()
        self.loss.eval()  # a check, not a training step: hooks and counters on the loss see eval mode
        whole = ResponseLoss(self.model, 0)

        def losses(loss: ResponseLoss, items: list[Item], inputs: list[torch.Tensor]) -> list[float]:
            sums, counts, _ = loss(*lay_out(items, inputs).args())
            return [float(t) / max(int(n), 1) for t, n in zip(sums, counts)]

        try:
            ids = [it.ids.to(self.device) for it in items]
            alone = [losses(whole, [it], [x])[0] for it, x in zip(items, ids)]
            if not all(math.isfinite(v) for v in alone):
                raise ModelError(f"{self.name}: the whole model's loss is not finite on {[it.id for it in items]}: {alone}")
            split_gap = 0.0
            if self.frozen_layers:
                for item, x, reference in zip(items, ids, alone):
                    cut = self.bottom(input_ids=x[None], use_cache=False).last_hidden_state[0]
                    gap = abs(losses(self.loss, [item], [cut.to(self.cache_dtype).to(torch.float32)])[0] - reference)
                    split_gap = max(split_gap, gap)
                    if not gap <= tolerance:  # a NaN gap fails too
                        raise ModelError(f"{self.name}: bottom/top split changes the loss by {gap:.4f} (> {tolerance}); "
                                         f"this architecture does not fit the frozen-bottom cache, use frozen_layers=0")
            gap = max(abs(a - b) for a, b in zip(losses(whole, items, ids), alone))
            if not gap <= 1e-3:
                raise ModelError(f"{self.name}: packing items into one row changes their loss by {gap:.2e}; this "
                                 f"architecture's attention ignores zsg's per-item attention ({PACKED_ATTENTION})")
            return split_gap
        finally:
            self.model.train(was_training)
            self.loss.train(was_training)
