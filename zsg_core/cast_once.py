"""Frozen weights cast to bf16 once, not at every call.

Under bf16 autocast torch casts every weight to bf16 at every call, except leaves that require
grad. A frozen `nn.Linear` (the bottom layers, the tied LM head) keeps a bf16 copy instead: the
same kernel on the same values, without re-casting ~120M weights per forward. `cast_weights_once`
patches every linear of a model; the result is identical, only the casts are saved.
"""
from __future__ import annotations

import types

import torch
from torch import nn


def cast_weights_once(model: nn.Module) -> None:
    """Give every `nn.Linear` of `model` the cast-once forward (on the instance: parameter names
    and checkpoints stay as they are)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.forward = types.MethodType(_linear_with_weight_cast_once, module)


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
    projection (a measurable share of the frozen cache's time: `benchmarks/bench_train.py`). Only
    for inputs outside autograd (the frozen bottom, evaluation); the entry keeps its input alive, so
    a reused address cannot fool it."""
    if x.dtype == torch.bfloat16 or x.requires_grad:
        return x.to(torch.bfloat16)
    last = _last_input_cast[0]
    if last is not None and last[0] is x and last[1] == x._version:
        return last[2]
    cast = x.to(torch.bfloat16)
    _last_input_cast[0] = (x, x._version, cast)
    return cast
