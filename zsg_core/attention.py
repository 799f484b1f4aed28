"""Attention over a packed row: every item attends only to itself (and to a prefix it shares).

A packed row (`packing.Pack`) lays several items end to end; `packed_attention` runs attention
span by span (causal within an item, sliding-window where the model has one, never across items),
so no item sees another and there is no padding. Registered with transformers under
`PACKED_ATTENTION` (`register`), it is the attention implementation every model zsg loads runs with;
called without spans (generation, any plain forward) it is transformers' own sdpa attention.

Training on CPU, torch's flash-attention backward is slow on short spans; a span's
attention with a backward to follow is plain matmuls with the backward written out (`_SpanAttention`,
fp32 scores and softmax as flash attention's). Evaluation and the frozen cache keep flash attention,
whose forward is the faster one (`benchmarks/bench_train.py` times both paths; benchmarks/README.md).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

PACKED_ATTENTION = "zsg_packed"  # the attention implementation every model loaded here runs with


class ModelError(ValueError):
    """A model or an architecture that cannot be used this way (declared here, the lowest layer of
    the model's stack that can meet one; `model` raises it too)."""


class _SpanAttention(torch.autograd.Function):
    """Softmax attention of one span written as plain matmuls, with its backward by hand; for
    training on CPU, where torch's flash-attention backward is slow on short spans and
    dominated a training step's attention (measured when written; `benchmarks/bench_train.py`
    times whole steps, old path against new).
    Scores and softmax are fp32 as in flash attention, the probabilities enter P @ V in the
    inputs' dtype as flash attention's do; the backward's products run in the inputs' dtype. In
    fp32 it is exact."""
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
    from transformers.integrations.sdpa_attention import (
        repeat_kv,
        sdpa_attention_forward,
    )

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
    if not outputs:
        return query.new_zeros(query.shape[:3] + (value.shape[-1],)).transpose(1, 2).contiguous(), None
    # in the dtype attention ran in: under CUDA's autocast sdpa computes in bf16 while the queries
    # stay fp32 (the models' rotary embeddings and norms upcast them)
    gathered = torch.cat(outputs, 2)
    out = gathered.new_zeros(query.shape[:3] + (value.shape[-1],)).index_copy(2, query_rows, gathered)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make `PACKED_ATTENTION` an attention implementation transformers can load a model with; its
    mask for plain forwards is sdpa's (a packed forward builds no mask of its own)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_ATTENTION, sdpa_mask)
    if torch.cuda.is_available():
        # cuDNN's fused attention failed the first training step's backward on an H200 (torch 2.11,
        # CUDA 13: "mha_graph.execute(...).is_good()"; pytorch/pytorch#190321 reports the same
        # assertion there), leaving the CUDA context broken for every later run: sdpa picks among
        # the flash and memory-efficient kernels instead
        torch.backends.cuda.enable_cudnn_sdp(False)
