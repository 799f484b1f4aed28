"""`precision: auto`: bf16 only where the hardware computes it natively and it measured faster;
decided once per machine; what a config stores is the precision actually used."""
from __future__ import annotations

import json

import pytest

from zsg_core import precision
from zsg_core.data import DataError
from zsg_core.train import TrainConfig


def test_the_rule_on_both_kinds_of_hardware():
    assert precision.choose(native_bf16=True, bf16_speedup=2.8) == "bf16"  # AVX512-BF16 / AMX, measured faster
    assert precision.choose(native_bf16=True, bf16_speedup=1.05) == "fp32"  # native but no faster here
    assert precision.choose(native_bf16=False, bf16_speedup=None) == "fp32"  # AVX2: bf16 emulated, never chosen
    assert precision.choose(native_bf16=False, bf16_speedup=3.0) == "fp32"  # a fast timing alone is not enough


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A fake machine: its capability and its bf16 timing, and a fresh decision cache."""
    monkeypatch.setenv("ZSG_CACHE", str(tmp_path))

    def set_up(native: bool, speedup: float, name: str = "Test CPU"):
        measured: list[str] = []  # the devices timed from now on
        facts = {"device": "cpu", "name": name, "cpu_capability": "AVX512" if native else "AVX2",
                 "native_bf16": native, "flags": ["avx512_bf16"] if native else [], "threads": 2}
        monkeypatch.setattr(precision, "capability", lambda: facts)
        monkeypatch.setattr(precision, "measure_speedup", lambda device: measured.append(device) or speedup)
        precision.decision.cache_clear()
        return measured

    yield set_up
    precision.decision.cache_clear()


def test_avx512_bf16_machine_gets_bf16_and_an_avx2_one_fp32(machine, tmp_path):
    measured = machine(native=True, speedup=2.8)
    assert precision.resolve("auto") == "bf16" and measured == ["cpu"]
    assert TrainConfig().precision == "bf16"  # the config holds the precision used, never "auto"
    assert "bf16 native, bf16 measured 2.8x fp32" in precision.describe("bf16")

    measured = machine(native=False, speedup=3.0, name="Laptop CPU")
    assert precision.resolve("auto") == "fp32" and measured == []  # emulated bf16 is not even timed
    assert TrainConfig().precision == "fp32" and TrainConfig(precision="bf16").precision == "bf16"
    assert "set by hand" in precision.describe("bf16")
    assert len(json.loads((tmp_path / "precision.json").read_text())) == 2  # one decision per machine


def test_the_decision_is_made_once_per_machine(machine, tmp_path):
    measured = machine(native=True, speedup=2.0)
    assert precision.resolve("auto") == "bf16"
    measured = machine(native=True, speedup=1.0)  # a new process on the same machine, a noisier timing
    assert precision.resolve("auto") == "bf16" and measured == []  # read back, not measured again
    (tmp_path / "precision.json").write_text("{not json")  # a damaged record is measured afresh
    measured = machine(native=True, speedup=1.0)
    assert precision.resolve("auto") == "fp32" and measured == ["cpu"]


def test_unknown_precision_is_refused():
    with pytest.raises(DataError, match="precision"):
        precision.resolve("fp8")
    with pytest.raises(DataError, match="precision"):
        TrainConfig(precision="half")


def test_this_machines_measured_check_runs():
    """The real check on this machine: a positive ratio, in well under a second."""
    assert precision.measure_speedup("cpu", repeats=2) > 0
