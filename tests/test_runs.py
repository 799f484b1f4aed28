"""The run store: content-addressed, complete-or-not, killed runs resumed, determinism, the CLI.
On the smoke profile's split (tiny random-init Llama over the real data)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from zsg_core.config import RunConfig, run_config
from zsg_core.data import DataError
from zsg_core.runs import is_complete, load, run

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`

SMOKE = dict(model="tiny-llama", train_per_task=4, test_per_task=2, max_len=256, batch_size=4, lr=1e-3,
             frozen_layers=2)
QUIET = dict(log=lambda s: None)


def _config(**over) -> RunConfig:
    return run_config(**{**SMOKE, "arrangement": "random", "max_steps": 6, **over})


def test_a_complete_run_is_read_back_not_redone(tmp_path):
    config = _config()
    first = run(config, root=tmp_path, **QUIET)
    assert is_complete(first.folder) and first.folder.name == config.key()
    assert sorted(p.name for p in first.folder.iterdir()) == sorted(
        ["batches.parquet", "complete", "config.json", "eval_loss.parquet", "generations.parquet",
         "manifest.json", "train_log.parquet"])  # no checkpoint left behind

    def never(step):
        raise AssertionError("a complete run must not train again")

    again = run(config, root=tmp_path, on_step=never, **QUIET)
    assert again.eval_loss.equals(first.eval_loss)
    assert RunConfig.from_dict(json.loads((first.folder / "config.json").read_text())) == config
    m = first.manifest
    assert m["steps"] == 6 and m["wall_seconds"] > 0 and m["versions"]["torch"] and m["train_tokens_per_s"] > 0


def test_same_config_twice_gives_identical_losses(tmp_path):
    a = run(_config(), root=tmp_path / "a", **QUIET)
    b = run(_config(), root=tmp_path / "b", **QUIET)
    assert a.eval_loss.equals(b.eval_loss) and a.train_log.loss.equals(b.train_log.loss)


def test_order_changes_the_key_and_the_results(tmp_path):
    a, b = _config(arrangement="nft"), _config(arrangement="fft")
    assert a.key() != b.key()
    ra, rb = run(a, root=tmp_path, **QUIET), run(b, root=tmp_path, **QUIET)
    assert list(ra.batches.id) != list(rb.batches.id)
    assert set(ra.eval_loss.id) == set(rb.eval_loss.id)  # the same held-out set


def _kill_at(config: RunConfig, root: Path, step: int) -> subprocess.CompletedProcess:
    code = (f"import os, json; from zsg_core.config import RunConfig; from zsg_core.runs import run; "
            f"c = RunConfig.from_dict(json.loads({json.dumps(json.dumps(config.to_dict()))})); "
            f"run(c, root=__import__('pathlib').Path({str(root)!r}), log=lambda s: None, checkpoint_every=2, "
            f"on_step=lambda s: s == {step} and os.kill(os.getpid(), 9))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TQDM_DISABLE": "1"})


@pytest.mark.parametrize("kill_step, resumes_from", [(5, 4), (1, None)])
@pytest.mark.slow
def test_a_killed_run_is_never_complete_and_is_finished_by_the_next_call(tmp_path, kill_step, resumes_from):
    config = _config()
    proc = _kill_at(config, tmp_path, kill_step)
    assert proc.returncode == -signal.SIGKILL
    folder = tmp_path / config.key()
    assert folder.exists() and not is_complete(folder)
    with pytest.raises(DataError, match="not a complete run"):
        load(folder)
    assert (folder / "state").exists() == (resumes_from is not None)
    messages: list[str] = []
    finished = run(config, root=tmp_path, log=messages.append, checkpoint_every=2)
    assert is_complete(folder)
    assert any(f"resuming from step {resumes_from}" in m for m in messages) == (resumes_from is not None)
    uninterrupted = run(config, root=tmp_path / "clean", **QUIET)
    assert finished.eval_loss.equals(uninterrupted.eval_loss)
    assert finished.batches.equals(uninterrupted.batches)


def test_run_parameters_are_validated_by_name():
    with pytest.raises(DataError, match="unknown run parameter 'learning_rate'"):
        run_config(learning_rate=1e-4)
    with pytest.raises(DataError, match="unknown arrangement method 'sorted'"):
        run_config(arrangement="sorted")
    with pytest.raises(DataError, match="max_len must be an integer"):
        run_config(max_len="long")
    with pytest.raises(DataError, match="unknown run parameter"):
        RunConfig.from_dict({"modle": "x"})


def test_run_parameters_are_declared_once_and_defaults_say_why_they_differ():
    """One flat namespace over the three configs; each default that differs from the default
    profile carries its reason, and a flat config round-trips."""
    from zsg_core.config import PARAMETERS, flat_params, load_profile, run_params

    cpu = run_params(load_profile("cpu"))
    def same(a, b):
        return list(a) == list(b) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b
    differs = {n for n, v in cpu.items() if not same(PARAMETERS[n].default, v)}
    assert differs and all(PARAMETERS[n].why for n in differs), sorted(n for n in differs if not PARAMETERS[n].why)
    assert {"split_seed", "train_seed", "arrangement_seed", "tma_budget"} <= set(PARAMETERS)
    assert "seed" not in PARAMETERS and "budget" not in PARAMETERS  # each seed and size named for what it is
    c = run_config(**cpu, arrangement="tma-rt", arrangement_seed=2, tma_budget=480)
    assert run_config(**flat_params(c)) == c and c.budget == 480
    # a tma_budget cannot change an order that selects nothing: no part of its identity
    assert run_config(**cpu, arrangement="nft").key() == run_config(**{**cpu, "tma_budget": 480}, arrangement="nft").key()


def test_a_fixed_order_ignores_its_seed_and_a_shuffle_does_not():
    assert _config(arrangement="cluster", arrangement_seed=3).key() == _config(arrangement="cluster").key()
    assert _config(arrangement="random", arrangement_seed=3).key() != _config(arrangement="random").key()
    # likewise, generation settings only count when something is generated
    assert _config(generate_protocol="both", max_new_tokens=5).key() == _config().key()
    assert _config(generate_steps=[0], max_new_tokens=5).key() != _config(generate_steps=[0]).key()


@pytest.mark.slow
def test_cli_train_runs_and_reports(tmp_path):
    env = {**os.environ, "ZSG_RUNS": str(tmp_path), "TQDM_DISABLE": "1"}
    zsg = Path(sys.executable).with_name("zsg")
    args = [str(zsg), "train", "--profile", "smoke", "--arrangement", "cluster", "--set", "max_steps=3",
            "--set", "eval_steps=[0,3]", "--set", "generate_steps=[]"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "held-out loss:" in proc.stdout and f"results: {tmp_path}" in proc.stdout
    from zsg_core.precision import resolve
    assert f"precision {resolve('auto')} (auto; " in proc.stdout  # the precision used, and why
    shown = subprocess.run(args + ["--print-config"], capture_output=True, text=True, env=env, timeout=300)
    printed = json.loads(shown.stdout)
    assert printed["params"]["max_steps"] == 3 and printed["params"]["arrangement"] == "cluster"  # flat names
    assert printed["config"]["train"]["precision"] in ("bf16", "fp32")  # what a run stores: never "auto"
    assert (tmp_path / printed["key"] / "complete").exists()  # the run just made is the one it names
    config_file = tmp_path / printed["key"] / "config.json"
    again = subprocess.run([str(zsg), "train", "--config", str(config_file)], capture_output=True, text=True,
                           env=env, timeout=300)
    assert again.returncode == 0 and f"results: {tmp_path / printed['key']}" in again.stdout
    assert "served from the run store (trained " in again.stdout  # not shown as if it had just trained
    bad = subprocess.run(args[:2] + ["--set", "lr=-1"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "lr must be positive" in bad.stderr
    typo = subprocess.run(args[:2] + ["--set", "learning_rate=1e-4"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert typo.returncode == 2 and "unknown run parameter 'learning_rate'" in typo.stderr


def test_round_ranges_are_validated_and_named_only_when_set():
    assert "rounds" not in _config().to_dict()  # runs stored before the field existed keep their keys
    c = _config(arrangement="tma-min", rounds=[0, 2])
    assert c.rounds == (0, 2) and c.to_dict()["rounds"] == [0, 2] and c.key() != _config(arrangement="tma-min").key()
    assert RunConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c  # survives config.json
    with pytest.raises(DataError, match="rounds applies to tma-min, tma-max only, not 'nft'"):
        _config(arrangement="nft", rounds=[0, 2])
    with pytest.raises(DataError, match=r"\[first, end\)"):
        _config(arrangement="tma-min", rounds=[3, 3])


def test_a_method_whose_order_changed_gets_new_run_keys(monkeypatch):
    """Bumping a method's version retires its stored runs (they hold the old order) and no other's."""
    from dataclasses import replace

    from zsg_core import arrange

    tma_key, nft_key = run_config(arrangement="tma-nft", tma_budget=40).key(), run_config(arrangement="nft").key()
    monkeypatch.setitem(arrange.METHODS, "tma-nft", replace(arrange.METHODS["tma-nft"], version=3))
    assert run_config(arrangement="tma-nft", tma_budget=40).key() != tma_key
    assert run_config(arrangement="nft").key() == nft_key
