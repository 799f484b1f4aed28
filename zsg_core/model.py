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

- **Packing.** The items of a training step, of an evaluation row or of a cache row are laid end
  to end in one row (`Pack`), so every matmul sees ~1,000-2,000 tokens instead of one item's
  ~170. Each item keeps its own positions (0, 1, ...), and attention runs item by item
  (`packed_attention`: causal within an item, sliding-window where the model has one, never
  across items), so no item sees another and there is no padding at all. A step still consumes
  exactly the items [kB, (k+1)B) of the arranged list; only the layout of the matmul changes.
- **Attention by hand when training on CPU.** torch's CPU flash-attention backward costs ~6x its
  forward; a span's attention with a backward to follow is plain matmuls with the backward
  written out (`_SpanAttention`, fp32 scores and softmax as flash attention's), ~30% less
  attention time over real training steps. Evaluation and the cache keep flash attention, whose
  forward is the faster one.
- **Frozen weights cast once.** Under bf16 autocast torch casts every weight to bf16 at every
  call, except leaves that require grad. A frozen `nn.Linear` (the 26 bottom layers, the tied LM
  head) keeps a bf16 copy instead: the same kernel on the same values, without re-casting ~120M
  weights per forward.
- **The LM head only where a label is predicted** (~5-7% of tokens in our data), and likewise the
  last layer's query projection, attention, attention output projection and MLP
  (`_at_label_rows`, `packed_attention`): a position's output of the last layer feeds nothing but
  its own prediction, so only its keys and values are needed elsewhere. About a fifth of the
  trained top's work in the cpu profile.

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
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from .data import Record
from .prompt import IGNORE, encode
from .assets import TINY_MODELS, load_tokenizer, model_path
from .util import atomic_file, cache_dir, sha256_file

class ModelError(ValueError):
    """A model or an architecture that cannot be used this way."""


PACKED_ATTENTION = "zsg_packed"  # the attention implementation every model loaded here runs with
# Tokens per packed row in evaluation and the frozen cache: the fastest of 1,024 / 2,048 / 4,096 /
# 8,192 for one held-out evaluation on 2 cores (5.9 / 5.5 / 6.0 / 6.0 s); longer rows gain nothing
# because the matmuls are already large and the per-item attention grows with the row.
PACK_TOKENS = 2048
# The frozen bottom's outputs are stored in fp16 when the model's largest value on a probe instance
# stays below this, a quarter of fp16's largest finite value (room for instances that go higher).
FP16_HEADROOM = 2.0 ** 14
# Bump when a cache entry's computation changes (2: each entry independent of what is computed with
# it); older entries then sit in another folder and are never mixed with new ones.
CACHE_VERSION = 2


class _SpanAttention(torch.autograd.Function):
    """Softmax attention of one span written as plain matmuls, with its backward by hand; for
    training on CPU, where torch's flash-attention backward costs ~6x its forward (3.1 ms against
    0.5 ms for a 128-token item) and a step of the cpu profile spent ~24% of its time
    there. Scores and softmax are fp32 as in flash attention, the probabilities enter P @ V in the
    inputs' dtype as flash attention's do; the backward's products run in the inputs' dtype.
    Over the spans of 20 real training steps this is ~30% faster than flash forward + backward
    (benchmarks/README); in fp32 it is exact."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
                scale: float) -> torch.Tensor:
        """q, k, v of one dtype (`packed_attention` casts them as autocast would for sdpa); autocast
        is off inside, or it would round the fp32 scores to bf16."""
        with torch.autocast(q.device.type, enabled=False):
            scores = torch.matmul(q.float(), k.float().transpose(-1, -2)).mul_(scale)
            probs = scores.masked_fill_(~allowed, float("-inf")).softmax(-1).to(q.dtype)
            out = torch.matmul(probs, v)
        ctx.save_for_backward(q, k, v, probs, out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, probs, out = ctx.saved_tensors
        with torch.autocast(q.device.type, enabled=False):  # the same wherever the backward is called
            grad_out = grad_out.to(q.dtype)
            grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
            grad_probs = torch.matmul(grad_out, v.transpose(-1, -2)).float()
            row = (grad_out.float() * out.float()).sum(-1, keepdim=True)  # = sum_j P_ij dP_ij
            grad_scores = (probs.float() * (grad_probs - row)).mul_(ctx.scale).to(q.dtype)
            grad_q, grad_k = torch.matmul(grad_scores, k), torch.matmul(grad_scores.transpose(-1, -2), q)
        return grad_q, grad_k, grad_v, None, None


def packed_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     sliding_window: int | None = None, zsg_spans: Sequence[tuple[int, int, int, int]] | None = None,
                     **kwargs) -> tuple[torch.Tensor, None]:
    """Attention over a packed row, span by span: the queries [start, end) attend to the shared
    prefix [prefix_start, prefix_end) (empty for an item alone) and causally to themselves, within
    the sliding window on layers that have one; never to anything else, so an item's output is
    what it would be alone. Where the attention module carries `zsg_rows` (the last layer, set by
    `ResponseLoss` for one forward) only those query positions are computed and the others are
    zeros: their outputs feed nothing. With a backward to follow on CPU each span runs
    `_SpanAttention`, else torch's sdpa kernels. Called without `zsg_spans` (generation, any plain
    forward) it is transformers' own sdpa attention."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if zsg_spans is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      sliding_window=sliding_window, **kwargs)
    if kwargs.get("softcap") is not None:
        raise ModelError("packed attention does not support attention-logit soft-capping")
    # a backward will follow on CPU: the hand-written span attention, else torch's own kernels
    by_hand = query.requires_grad and query.device.type == "cpu" and not dropout
    if by_hand and torch.is_autocast_enabled("cpu"):  # one dtype for q, k, v, as autocast gives sdpa
        low = torch.get_autocast_dtype("cpu")  # (rotary embeddings leave q, k in fp32 and v in bf16)
        query, key, value = query.to(low), key.to(low), value.to(low)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    # the spans tile the row in order (`lay_out`); one split per tensor, not a slice per span: the
    # backward of a split is one concatenation, that of each slice a zero tensor of the whole row
    starts = [start for start, _, _, _ in zsg_spans]
    lengths = [end - start for start, end, _, _ in zsg_spans]
    if sum(lengths) != key.shape[2] or any(a[1] != b[0] for a, b in zip(zsg_spans, zsg_spans[1:])):
        raise ModelError("packed attention needs spans that tile the row in order, as `lay_out` makes them")
    keys = dict(zip(starts, key.split(lengths, 2)))
    values = dict(zip(starts, value.split(lengths, 2)))
    query_rows = getattr(module, "zsg_rows", None)
    if query_rows is None:
        queries = query.split(lengths, 2)
    else:  # only these rows (sorted: nonzero's order), gathered once and cut where each span begins
        bounds = torch.searchsorted(query_rows, torch.tensor(starts[1:], device=query_rows.device)).tolist()
        counts = [hi - lo for lo, hi in zip([0] + bounds, bounds + [len(query_rows)])]
        queries = query[:, :, query_rows].split(counts, 2)
        picked_rows = query_rows.split(counts)
    sdpa = nn.functional.scaled_dot_product_attention
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    outputs = []
    for i, (start, end, prefix_start, prefix_end) in enumerate(zsg_spans):
        shared, n, q = prefix_end - prefix_start, end - start, queries[i]
        if q.shape[2] == 0:
            continue
        k, v = keys[start], values[start]
        if shared:
            k = torch.cat([keys[prefix_start], k], 2)
            v = torch.cat([values[prefix_start], v], 2)
        if not by_hand and query_rows is None and not shared and (sliding_window is None or n <= sliding_window):
            outputs.append(sdpa(q, k, v, is_causal=True, dropout_p=dropout, scale=scaling))
            continue
        q_pos = (torch.arange(shared, shared + n, device=q.device) if query_rows is None
                 else picked_rows[i] - start + shared)[:, None]
        k_pos = torch.arange(shared + n, device=q.device)[None]
        allowed = k_pos <= q_pos
        if sliding_window is not None:  # q - kv < window, as transformers' sliding-window mask
            allowed &= q_pos - k_pos < sliding_window
        outputs.append(_SpanAttention.apply(q, k, v, allowed, scaling) if by_hand
                       else sdpa(q, k, v, attn_mask=allowed, dropout_p=dropout, scale=scaling))
    if query_rows is None:
        return torch.cat(outputs, 2).transpose(1, 2).contiguous(), None
    out = query.new_zeros(query.shape[:3] + (value.shape[-1],))
    if outputs:
        out = out.index_copy(2, query_rows, torch.cat(outputs, 2))
    return out.transpose(1, 2).contiguous(), None


def _register_packed_attention() -> None:
    """Make `PACKED_ATTENTION` an attention implementation transformers can load a model with; its
    mask for plain forwards is sdpa's (a packed forward builds no mask of its own)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_ATTENTION, sdpa_mask)


def _linear_with_weight_cast_once(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`nn.Linear.forward`, except that under bf16 autocast a frozen weight is cast to bf16 once
    and kept (autocast itself re-casts every weight at every call unless it requires grad), and an
    input outside autograd is cast once for all the projections that read it (`_input_in_bf16`).
    Same kernel, same bf16 values: the result is identical, only the casts are saved."""
    device = x.device.type
    if not torch.is_autocast_enabled(device) or torch.get_autocast_dtype(device) != torch.bfloat16:
        return nn.functional.linear(x, self.weight, self.bias)
    if self.weight.requires_grad:  # autocast casts the weight (once per forward: it requires grad)
        return nn.functional.linear(_input_in_bf16(x), self.weight, self.bias)
    stamp = (self.weight.data_ptr(), self.weight._version)  # a weight changed in place is cast again
    cast = self.__dict__.get("_bf16_cast")
    if cast is None or cast[0] != stamp:
        bias = None if self.bias is None else self.bias.detach().to(torch.bfloat16)
        cast = self.__dict__["_bf16_cast"] = (stamp, self.weight.detach().to(torch.bfloat16), bias)
    return nn.functional.linear(_input_in_bf16(x), cast[1], cast[2])


_last_input_cast: list = [None]  # (input, its version, its bf16 copy): the latest input cast


def _input_in_bf16(x: torch.Tensor) -> torch.Tensor:
    """`x` in bf16, reusing the copy made for the previous linear when it read the same, unchanged
    tensor: q/k/v, and gate/up, read one normalised input, which autocast would cast once per
    projection (3% of the frozen cache's time). Only for inputs outside autograd (the frozen
    bottom, evaluation); the entry keeps its input alive, so a reused address cannot fool it."""
    if x.dtype == torch.bfloat16 or x.requires_grad:
        return x.to(torch.bfloat16)
    last = _last_input_cast[0]
    if last is not None and last[0] is x and last[1] == x._version:
        return last[2]
    cast = x.to(torch.bfloat16)
    _last_input_cast[0] = (x, x._version, cast)
    return cast


def process_state():
    """This process's place among the training processes (torchrun / accelerate launch set them)
    and its device. On a machine without a GPU the processes talk over gloo; accelerate only does
    that when told it runs on CPU."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def load_model(name: str, seed: int = 0) -> tuple[nn.Module, object]:
    """(model in fp32, tokenizer). Tiny models are random-init from `seed`; real ones pretrained."""
    from transformers import AutoModelForCausalLM

    _register_packed_attention()
    tokenizer = load_tokenizer(name)
    if name in TINY_MODELS:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(_tiny_config(name, tokenizer), dtype=torch.float32,
                                                 attn_implementation=PACKED_ATTENTION)
    else:
        from transformers.utils import logging as hf_logging

        from .util import show_progress

        if not show_progress():  # no weight-loading bar per run in logs (make book, workers, notebooks)
            hf_logging.disable_progress_bar()
        model = AutoModelForCausalLM.from_pretrained(model_path(name), dtype=torch.float32,
                                                     attn_implementation=PACKED_ATTENTION)
    model.config.use_cache = False
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.forward = types.MethodType(_linear_with_weight_cast_once, module)
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
                spans: Sequence[tuple[int, int, int, int]], n_items: int,
                final_token: bool = False) -> tuple[torch.Tensor, ...]:
        """(summed loss, label count) per item of the row (the fields of a `Pack`, in order); with
        `final_token`, also each item's loss on its last label alone: the EOS that ends its answer
        (`prompt.encode` never truncates), which weighs 1/count in the item's mean."""
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
        if not final_token:
            return losses, counts
        # `chosen` ascends and each item's labels are contiguous, so an item's last label is the
        # last position of its segment among them
        last = torch.zeros(n_items, dtype=torch.long, device=logits.device).scatter_reduce(
            0, item, torch.arange(len(item), device=logits.device), reduce="amax", include_self=False)
        final = torch.where(counts > 0, token_loss[last], torch.full_like(losses, float("nan")))
        return losses, counts, final


@dataclass(frozen=True)
class Item:
    """One encoded instance: its position in the list it came from, ids, labels, and cache key."""
    index: int
    id: str
    ids: torch.Tensor
    labels: torch.Tensor
    key: str

    @property
    def targets(self) -> torch.Tensor:
        """The label each position predicts (the next token's), IGNORE at the last position."""
        return torch.cat([self.labels[1:], self.labels.new_full((1,), IGNORE)])


MIN_SHARED_PREFIX = 16  # tokens; shorter common prefixes are not worth a span of their own


@dataclass(frozen=True)
class Pack:
    """Items laid end to end in one row: the arguments of one `ResponseLoss` forward.

    Items that begin with the same tokens (instances of one task share its definition: 41% of the
    held-out tokens of the cpu profile's split) share one copy of that prefix: it is computed once
    and each item's own tokens attend to it. The prefix stops before the first position that
    predicts a label, so every loss term still comes from an item's own tokens."""
    inputs: torch.Tensor     # (1, T) token ids, or (1, T, hidden) frozen-bottom outputs
    positions: torch.Tensor  # (1, T): each token's position within its own item
    targets: torch.Tensor    # (T,): the label each position predicts, IGNORE where none
    segments: torch.Tensor   # (T,): which item each position's loss belongs to
    spans: list[tuple[int, int, int, int]]  # attention: (start, end, prefix_start, prefix_end)
    placed: list[tuple[int, int, int, int]]  # item i = row[prefix_start:prefix_end] + row[start:end]

    def args(self) -> tuple:
        return self.inputs, self.positions, self.targets, self.segments, self.spans, len(self.placed)

    def item_rows(self, row: torch.Tensor) -> list[torch.Tensor]:
        """Each item's part of a per-position tensor of this row (e.g. hidden states), in item order."""
        return [torch.cat([row[ps:pe], row[s:e]]) for s, e, ps, pe in self.placed]

    @staticmethod
    def item_targets(args: tuple) -> list[tuple[int, ...]]:
        """The targets of each item in a forward's arguments (how tests see what the model got),
        in the order the items were given, whatever the layout."""
        targets, segments, n = args[2], args[3], args[5]
        return [tuple(targets[segments == i].tolist()) for i in range(n)]


def _first_label(item: Item) -> int:
    labelled = (item.labels != IGNORE).nonzero(as_tuple=True)[0]
    return int(labelled[0]) if len(labelled) else len(item.ids)


def _shared_prefixes(items: Sequence[Item], share: bool = True) -> list[tuple[int, list[int]]]:
    """Groups of items (indices) with the length of the prefix they share; 0 for an item alone.
    A prefix is shared only if at least `MIN_SHARED_PREFIX` tokens long and it ends before the
    position that predicts any member's first label. `share=False`: every item alone."""
    if not share:
        return [(0, [i]) for i in range(len(items))]
    by_head: dict[tuple[int, ...], list[int]] = {}
    for i, item in enumerate(items):
        head = tuple(item.ids[:MIN_SHARED_PREFIX].tolist()) if len(item.ids) > MIN_SHARED_PREFIX else (i,)
        by_head.setdefault(head, []).append(i)
    groups: list[tuple[int, list[int]]] = []
    for members in by_head.values():
        first = items[members[0]].ids
        shared = min(_first_label(items[i]) for i in members) - 1
        for i in members[1:]:
            other = items[i].ids
            n = min(shared, len(other))
            differ = (first[:n] != other[:n]).nonzero(as_tuple=True)[0]
            shared = int(differ[0]) if len(differ) else n
        if len(members) > 1 and shared >= MIN_SHARED_PREFIX:
            groups.append((shared, members))
        else:
            groups += [(0, [i]) for i in members]
    return groups


def lay_out(items: Sequence[Item], inputs: Sequence[torch.Tensor], share_prefixes: bool = True) -> Pack:
    """`items` in one row, with `inputs[i]` the input of item i (its ids, or its cached bottom
    output), on the inputs' device; shared prefixes once (see `Pack`), unless `share_prefixes` is
    False (every position then belongs to one item alone: per-item gradients need that)."""
    device = inputs[0].device
    pieces, positions, targets, segments = [], [], [], []
    spans: list[tuple[int, int, int, int]] = []
    placed: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * len(items)
    cursor = 0

    def put(values: torch.Tensor, first_position: int, item_targets: torch.Tensor, owner: int) -> tuple[int, int]:
        nonlocal cursor
        n = len(values)
        pieces.append(values)
        positions.append(torch.arange(first_position, first_position + n))
        targets.append(item_targets)
        segments.append(torch.full((n,), owner, dtype=torch.long))
        cursor += n
        return cursor - n, cursor

    for shared, members in _shared_prefixes(items, share_prefixes):
        prefix = (cursor, cursor)
        if shared:
            prefix = put(inputs[members[0]][:shared], 0, items[members[0]].targets[:shared], members[0])
            spans.append((*prefix, cursor - shared, cursor - shared))  # the prefix: causal, alone
        for i in members:
            start, end = put(inputs[i][shared:], shared, items[i].targets[shared:], i)
            spans.append((start, end, *prefix))
            placed[i] = (start, end, *prefix)
    return Pack(inputs=torch.cat(pieces)[None], positions=torch.cat(positions)[None].to(device),
                targets=torch.cat(targets).to(device), segments=torch.cat(segments).to(device),
                spans=spans, placed=placed)


def _by_prefix(item: Item) -> tuple[int, ...]:
    """A sort key that puts items with a common beginning next to each other."""
    return tuple(item.ids[:64].tolist())


def rows(items: Sequence[Item], tokens: int) -> list[list[Item]]:
    """Consecutive items grouped into rows of at most `tokens` tokens (a longer item: a row alone)."""
    out: list[list[Item]] = []
    width = 0
    for item in items:
        if not out or width + len(item.ids) > tokens:
            out.append([])
            width = 0
        out[-1].append(item)
        width += len(item.ids)
    return out


def _padded(pack: Pack, width: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int, int]]]:
    """(token ids, positions, spans) of a packed row of ids filled up to `width` tokens by a span
    of its own (token 0, attended by nothing else; its output is dropped)."""
    fill = width - pack.inputs.shape[1]
    if fill <= 0:
        return pack.inputs, pack.positions, pack.spans
    end = pack.inputs.shape[1]
    inputs = torch.cat([pack.inputs, pack.inputs.new_zeros((1, fill))], 1)
    positions = torch.cat([pack.positions, torch.arange(fill, device=pack.positions.device)[None]], 1)
    return inputs, positions, [*pack.spans, (end, width, end, end)]


class TunedLM:
    """A model, its tokenizer, the frozen/trained split and the cache of bottom outputs."""

    def __init__(self, name: str, frozen_layers: int = 0, max_len: int | None = None, seed: int = 0,
                 autocast: bool | None = None, hidden_cache: Path | None = None):
        """`autocast`: bf16 autocast on or off; None decides as `precision: auto` does."""
        if autocast is None:
            from .precision import resolve

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
        output computed under bf16 autocast differs from the fp32 one (enough to move one
        instance's loss by up to ~0.05), so the two are never mixed. Outputs stored in fp32 (a model
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
            inputs, positions, spans = _padded(pack, PACK_TOKENS)
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
    def item_losses(self, items: Sequence[Item], tokens_per_row: int = PACK_TOKENS,
                    final_token: bool = False) -> list[tuple]:
        """(mean loss over response tokens + EOS, their count) per item, in eval mode, and with
        `final_token` the loss of the item's last label (its EOS) third. Items run packed in rows
        of `tokens_per_row` tokens, those with a common beginning side by side so that they share
        it; each item attends only to itself and its prefix, so its loss does not depend on its row
        (equal to one at a time; tested)."""
        was_training = self.model.training
        self.model.eval()
        self.loss.eval()  # the loss module too: hooks on it see an evaluation, not a training step
        out: list[tuple] = [(0.0, 0)] * len(items)
        order = sorted(range(len(items)), key=lambda i: (_by_prefix(items[i]), i))
        done = 0  # how many of `order` the rows so far held
        try:
            with self.precision():
                for row in rows([items[i] for i in order], tokens_per_row):
                    sums, counts, *final = self.loss(*self.pack(row).args(), final_token=final_token)
                    lasts = final[0].tolist() if final_token else [None] * len(row)
                    for position, total, n, last in zip(order[done:], sums.tolist(), counts.tolist(), lasts):
                        out[position] = (total / max(n, 1), n) + ((last,) if final_token else ())
                    done += len(row)
        finally:
            self.model.train(was_training)
            self.loss.train(was_training)
        return out

    @torch.no_grad()
    def check(self, items: Sequence[Item], tolerance: float = 0.01) -> float:
        """Start-up checks on a few items, both in fp32 (`ModelError` if one fails):
        - the whole model's loss is finite;
        - bottom + top reproduce the whole model's loss, with the cut stored as the cache stores it (~1e-3; above `tolerance` the architecture does not fit the cut);
        - a packed row reproduces each item run alone (~1e-6; above 1e-3 the model's attention
          does not honour zsg's per-item attention and packing would mix items).
        The bottom is computed afresh, not read from the cache: a cached entry was computed under
        bf16 autocast, which alone moves one instance's loss by up to ~0.05. Returns the largest
        split gap (0 without a frozen bottom)."""
        items = list(items)[:3]
        was_training = self.model.training
        self.model.eval()
        self.loss.eval()  # a check, not a training step: hooks and counters on the loss see eval mode
        whole = ResponseLoss(self.model, 0)

        def losses(loss: ResponseLoss, items: list[Item], inputs: list[torch.Tensor]) -> list[float]:
            sums, counts = loss(*lay_out(items, inputs).args())
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
