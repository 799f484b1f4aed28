"""The language model being tuned, split into a frozen bottom and a trained top.

A decoder-only LM is `embed -> layers[0..L) -> norm -> lm_head`. With `frozen_layers = F > 0`,
the embeddings and layers [0, F) never change, so their output for an instance (the residual
stream after layer F-1) is a fixed function of its tokens: it is computed once, stored on disk
(`$ZSG_CACHE/hidden/<weights>-f<F>-<precision>/`, fp16, with a checksum) and shared by every
arrangement and every evaluation of the same model under the same precision. Each step then runs only layers [F, L), the final norm and the LM head; only layers
[F, L) are trained (the final norm and the head, tied to the embeddings in SmolLM2, stay as they
are). With F = 0 every parameter is trained, as in the paper. Two more savings, exact for any F:

- items are run one at a time with no padding (gradients accumulate over the batch; the loss is
  the batch's mean over labelled tokens, as in one padded forward), which on this CPU is faster
  than any padded batch;
- the LM head runs only at the positions that predict a label (~7% of tokens in our data).

`ResponseLoss` is that computation as one module (what DDP wraps); `TunedLM` holds the model, its
tokenizer and the cache. `check_split` proves at start-up that bottom + top reproduce the whole
model's loss, so an architecture this does not fit fails loudly instead of training silently
wrong.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .data import Record
from .prompt import IGNORE, encode
from .assets import TINY_MODELS, load_tokenizer, model_path
from .util import atomic_file, cache_dir, sha256_file

class ModelError(ValueError):
    """A model or an architecture that cannot be used this way."""


def process_state():
    """This process's place among the training processes (torchrun / accelerate launch set them)
    and its device. On a machine without a GPU the processes talk over gloo; accelerate only does
    that when told it runs on CPU."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def load_model(name: str, seed: int = 0) -> tuple[nn.Module, object]:
    """(model in fp32, tokenizer). Tiny models are random-init from `seed`; real ones pretrained."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = load_tokenizer(name)
    if name == "tiny-llama":
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             tie_word_embeddings=True)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_path(name), dtype=torch.float32)
    model.config.use_cache = False
    return model, tokenizer


def fingerprint(name: str, model: nn.Module) -> str:
    """Identity of the starting weights: the weight files' sha256 for real models, the config and
    a checksum of every parameter for tiny ones (cheap: they are tiny)."""
    if name in TINY_MODELS:
        h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
        for p in model.state_dict().values():
            h.update(p.detach().float().numpy().tobytes())
        return h.hexdigest()
    from .assets import ASSETS, verified_files

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


class ResponseLoss(nn.Module):
    """Summed cross-entropy over the response tokens (+EOS) of one unpadded item, and their count.

    Input is the token ids (frozen_layers = 0) or the cached output of the frozen bottom.
    """

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

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One item: (summed loss, label count)."""
        losses, counts = self.rows([inputs], [labels])
        return losses[0], counts[0]

    def rows(self, inputs: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Several items right-padded into one batch: per-row summed loss and label count.
        (Training runs items one by one: no padding at all; evaluation batches similar lengths.)"""
        width = max(len(x) for x in inputs)
        first = inputs[0]
        batch = first.new_zeros((len(inputs), width) + tuple(first.shape[1:]))
        targets = labels[0].new_full((len(inputs), width), IGNORE)
        mask = torch.zeros((len(inputs), width), dtype=torch.long, device=first.device)
        for i, (x, y) in enumerate(zip(inputs, labels)):
            batch[i, : len(x)], targets[i, : len(y)], mask[i, : len(x)] = x, y, 1
        key = "inputs_embeds" if self.frozen_layers else "input_ids"
        hidden = self.top(**{key: batch}, attention_mask=mask if len(inputs) > 1 else None,
                          use_cache=False).last_hidden_state
        targets = targets[:, 1:]
        row, col = (targets != IGNORE).nonzero(as_tuple=True)
        logits = self.lm_head(hidden[row, col]).float()  # the head only where a label is predicted
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        token_loss = nn.functional.cross_entropy(logits, targets[row, col], reduction="none")
        losses = torch.zeros(len(inputs), device=logits.device).index_add(0, row, token_loss)
        return losses, torch.bincount(row, minlength=len(inputs))


@dataclass(frozen=True)
class Item:
    """One encoded instance: its position in the list it came from, ids, labels, and cache key."""
    index: int
    id: str
    ids: torch.Tensor
    labels: torch.Tensor
    key: str


class TunedLM:
    """A model, its tokenizer, the frozen/trained split and the cache of bottom outputs."""

    def __init__(self, name: str, frozen_layers: int = 0, max_len: int | None = None, seed: int = 0,
                 autocast: bool = True, hidden_cache: Path | None = None):
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

    @property
    def precision_name(self) -> str:
        return "bf16" if self.autocast else "fp32"

    @property
    def cache_folder(self) -> Path:
        """Where the bottom outputs live: one folder per starting weights, cut and precision. An
        output computed under bf16 autocast differs from the fp32 one (enough to move one
        instance's loss by up to ~0.05), so the two are never mixed."""
        return self._hidden_root / f"{self.fingerprint[:16]}-f{self.frozen_layers}-{self.precision_name}"

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

    @torch.no_grad()
    def cache_bottom(self, items: Sequence[Item], progress=None, log: Callable[[str], None] = print) -> int:
        """Compute and store the bottom outputs the cache lacks; returns how many were computed.
        Each item is computed alone, so its cached value never depends on what it was run with.
        Entries are safetensors files carrying the sha256 of their values: a damaged one is
        named through `log`, dropped and computed again, never used."""
        if not self.frozen_layers:
            return 0
        done = 0
        for item in items:
            entry = (self.precision_name, item.key)
            if entry in self._hidden:
                continue
            path = self.cache_folder / f"{item.key}.safetensors"
            if path.exists():
                try:
                    self._hidden[entry] = _read_hidden(path, len(item.ids))
                    continue
                except Exception as e:  # a damaged file is recomputed, never trusted
                    log(f"frozen-layer cache entry {path} is damaged ({e}); removed it, computing it again")
                    path.unlink(missing_ok=True)
            with self.precision():
                hidden = self.bottom(input_ids=item.ids[None].to(self.device), use_cache=False).last_hidden_state[0]
            self._hidden[entry] = hidden.to(torch.float16).cpu().contiguous()
            _write_hidden(path, self._hidden[entry])
            done += 1
            if progress is not None:
                progress.update(1)
        return done

    def inputs(self, item: Item) -> torch.Tensor:
        if not self.frozen_layers:
            return item.ids.to(self.device)
        entry = (self.precision_name, item.key)
        if entry not in self._hidden:
            self.cache_bottom([item])
        return self._hidden[entry].to(self.device, torch.float32)

    # -- evaluation ------------------------------------------------------------------------------

    @torch.no_grad()
    def item_losses(self, items: Sequence[Item], batch_size: int = 8) -> list[tuple[float, int]]:
        """(mean loss over response tokens + EOS, their count) per item, in eval mode. Items are
        batched by length (padding is then small; ~1.7x faster than one by one on this CPU);
        a fixed list always gets the same batches, so its losses are reproducible."""
        was_training = self.model.training
        self.model.eval()
        out: list[tuple[float, int]] = [(0.0, 0)] * len(items)
        order = sorted(range(len(items)), key=lambda i: (len(items[i].ids), i))
        try:
            with self.precision():
                for start in range(0, len(order), batch_size):
                    chosen = order[start: start + batch_size]
                    sums, counts = self.loss.rows([self.inputs(items[i]) for i in chosen],
                                                  [items[i].labels.to(self.device) for i in chosen])
                    for i, total, n in zip(chosen, sums.tolist(), counts.tolist()):
                        out[i] = (total / max(n, 1), n)
        finally:
            self.model.train(was_training)
        return out

    @torch.no_grad()
    def check_split(self, item: Item, tolerance: float = 0.01) -> float:
        """|loss through bottom + top - loss of the whole model| on one item, both in fp32 with the
        cut stored in fp16 as the cache stores it (~1e-3); an error above `tolerance` means the
        architecture does not fit the cut. The bottom is computed afresh here, not read from the
        cache: a cached entry was computed under bf16 autocast, which alone moves one instance's
        loss by up to ~0.05 and would make this check depend on which item it got."""
        if not self.frozen_layers:
            return 0.0
        was_training = self.model.training
        self.model.eval()
        self.loss.eval()  # a check, not a training step: hooks and counters on the loss see eval mode
        try:
            ids, labels = item.ids.to(self.device), item.labels.to(self.device)
            cut = self.bottom(input_ids=ids[None], use_cache=False).last_hidden_state[0].to(torch.float16)
            split_total, split_n = self.loss(cut.to(torch.float32), labels)
            total, n = ResponseLoss(self.model, 0)(ids, labels)
        finally:
            self.model.train(was_training)
            self.loss.train(was_training)
        gap = abs(float(split_total) / max(int(split_n), 1) - float(total) / max(int(n), 1))
        if gap > tolerance:
            raise ModelError(f"{self.name}: bottom/top split changes the loss by {gap:.4f} (> {tolerance}); this "
                             f"architecture does not fit the frozen-bottom cache, use frozen_layers=0")
        return gap
