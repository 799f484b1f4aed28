"""Which precision a run computes in: bf16 autocast where the hardware does bf16 natively and
faster, fp32 elsewhere (`precision: auto`, the default).

bf16 autocast over fp32 master weights is faster than fp32 on a CPU with AVX512-BF16 or AMX, but
on a CPU without them torch emulates bf16 and the same product is many times *slower* than fp32
(seen on an AVX2 machine; the bf16 speed-up on an AVX512-BF16 one is in benchmarks/README,
"Training speed"). So the choice is made from two facts:

1. the capability: the CPU's flags (`avx512_bf16`, `amx_bf16` on Linux; `FEAT_BF16` on Apple
   silicon) or, on a GPU, `torch.cuda.is_bf16_supported(including_emulation=False)`;
2. one short measured check: a bf16 product must beat the fp32 one by `MIN_SPEEDUP`.

The decision is recorded per machine in `$ZSG_CACHE/precision.json` (keyed by CPU model, flags,
torch version and device), so every process on a machine makes the same choice and runs keep one
identity. `resolve("auto")` returns the concrete "bf16" or "fp32"; that is what a run's config
stores, so the precision actually used is part of its identity and is printed by `zsg train`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from .data import DataError
from .util import atomic_file, cache_dir, device_type

CHOICES = ("auto", "bf16", "fp32")
MIN_SPEEDUP = 1.25  # bf16 must be this much faster than fp32 to be chosen (the check is noisy)
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def choose(native_bf16: bool, bf16_speedup: float | None) -> str:
    """The rule: bf16 only where the hardware computes it natively *and* it measured faster."""
    if native_bf16 and bf16_speedup is not None and bf16_speedup >= MIN_SPEEDUP:
        return "bf16"
    return "fp32"


def _cpu_facts() -> tuple[str, list[str]]:
    """(CPU model name, its bf16 flags) from the operating system; empty where it does not say."""
    if Path("/proc/cpuinfo").exists():
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                      if line.lower().startswith(("model name", "cpu model"))), platform.processor())
        flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                          if line.startswith(("flags", "Features"))), []))
        return model, [f for f in _BF16_FLAGS if f in flags] + (["bf16"] if "bf16" in flags else [])
    if platform.system() == "Darwin":  # Apple silicon reports FEAT_BF16 through sysctl
        def sysctl(key: str) -> str:
            run = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True)
            return run.stdout.strip() if run.returncode == 0 else ""
        return sysctl("machdep.cpu.brand_string") or platform.machine(), \
            ["FEAT_BF16"] if sysctl("hw.optional.arm.FEAT_BF16") == "1" else []
    return platform.processor() or platform.machine(), []


def capability() -> dict[str, Any]:
    """What the hardware says about bf16, without measuring anything."""
    if device_type() == "cuda":
        name = torch.cuda.get_device_name()
        return {"device": "cuda", "name": name, "native_bf16": torch.cuda.is_bf16_supported(including_emulation=False),
                "flags": []}
    model, flags = _cpu_facts()
    return {"device": "cpu", "name": model, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": bool(flags), "flags": flags, "threads": torch.get_num_threads()}


def measure_speedup(device: str = "cpu", repeats: int = 5) -> float:
    """fp32 time / bf16-autocast time of the same product (576 x 1536, the shape of SmolLM2's MLP,
    over 512 tokens): the best of `repeats`, after a warm-up; a fraction of a second where bf16 is native."""
    a = torch.randn(512, 576, device=device)
    w = torch.randn(1536, 576, device=device)

    def best(autocast: bool) -> float:
        times = []
        for _ in range(repeats + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
                torch.nn.functional.linear(a, w)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return min(times[1:])

    return best(False) / best(True)


def _machine_key(facts: dict[str, Any]) -> str:
    """The hardware and torch, not settings: processes with other thread counts (torchrun sets
    OMP_NUM_THREADS=1) share one decision, so they never train in different precisions."""
    hardware = {k: v for k, v in facts.items() if k != "threads"}
    text = json.dumps({**hardware, "torch": torch.__version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def decision() -> dict[str, Any]:
    """This machine's auto decision with the facts behind it; measured once per machine and kept
    in `$ZSG_CACHE/precision.json`, so that every process on it chooses the same."""
    facts = capability()
    key = _machine_key(facts)
    path = cache_dir() / "precision.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), dict) and known[key].get("precision") in ("bf16", "fp32"):
        return known[key]
    # without native bf16 there is nothing to gain, and emulated bf16 is too slow to time quickly
    speedup = measure_speedup(facts["device"]) if facts["native_bf16"] else None
    made = {**facts, "bf16_speedup": None if speedup is None else round(speedup, 2),
            "precision": choose(facts["native_bf16"], speedup), "decided": time.strftime("%Y-%m-%d %H:%M:%S")}
    known = {k: v for k, v in known.items() if isinstance(v, dict)}
    known[key] = made
    with atomic_file(path) as f:
        f.write(json.dumps(known, indent=1))
    return made


def resolve(requested: str) -> str:
    """The concrete precision for a requested one: "bf16" and "fp32" as given, "auto" decided."""
    if requested not in CHOICES:

        raise DataError(f"precision must be one of {', '.join(CHOICES)}, got {requested!r}")
    return decision()["precision"] if requested == "auto" else requested


def describe(precision: str) -> str:
    """One line for logs and the book: the precision in use and why."""
    d = decision()
    where = d.get("cpu_capability", d["device"])
    basis = f"{d['name']}, {where}, bf16 " + ("native" if d["native_bf16"] else "not native")
    if d.get("bf16_speedup") is not None:
        basis += f", bf16 measured {d['bf16_speedup']}x fp32"
    how = "auto" if precision == d["precision"] else f"set by hand; auto would choose {d['precision']}"
    return f"{precision} ({how}; {basis})"
