"""The run store under a second fault pass: a run served only under its own key, nothing left by a
refused run, the same numbers from any frozen-cache history, provenance that is zsg's own, and the
default checkpoint reached by the smoke profile's runs (so their kill-and-resume path is the book's).
On the tiny random-init Llama over the real data."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from zsg_core.config import load_profile, run_config, run_params
from zsg_core.data import DataError
from zsg_core.runs import MisfiledRun, load, run, stored

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`

SMOKE = dict(model="tiny-llama", train_per_task=4, test_per_task=2, max_len=256, batch_size=4, lr=1e-3,
             frozen_layers=2, max_steps=4, eval_steps=[0, 4])
QUIET = dict(log=lambda s: None)


def _config(**over):
    return run_config(**{**SMOKE, "arrangement": "random", **over})


def _copy_run(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)


def test_a_run_copied_under_another_key_is_named_withdrawn_and_redone(tmp_path):
    """A folder synced or copied into another run's place would serve another lr's numbers."""
    a, b = _config(lr=1e-3), _config(lr=5e-4)
    ra = run(a, root=tmp_path, **QUIET)
    _copy_run(ra.folder, tmp_path / b.key())
    messages: list[str] = []
    assert stored(b, root=tmp_path, log=messages.append) is None
    assert any(f"stored under key {b.key()} but its manifest is run {a.key()}'s" in m for m in messages), messages
    with pytest.raises(MisfiledRun, match=f"stored under key {b.key()}"):
        load(tmp_path / b.key())
    rb = run(b, root=tmp_path, log=messages.append)  # withdrawn and trained as itself
    assert not rb.from_store and rb.config == b and rb.manifest["key"] == b.key()
    assert not rb.train_log.loss.equals(ra.train_log.loss)
    assert run(b, root=tmp_path, **QUIET).from_store  # and now served


def test_a_manifest_edited_to_match_its_new_folder_is_caught_by_the_config(tmp_path):
    a, b = _config(lr=1e-3), _config(lr=5e-4)
    ra = run(a, root=tmp_path, **QUIET)
    moved = tmp_path / b.key()
    _copy_run(ra.folder, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    (moved / "manifest.json").write_text(json.dumps({**manifest, "key": b.key()}))
    with pytest.raises(MisfiledRun, match=f"its config is run {a.key()}'s"):
        load(moved)


@pytest.mark.parametrize("bad", [dict(model="bogus"), dict(frozen_layers=99), dict(arrangement="tma-nft", tma_budget=10**6),
                                 dict(max_steps=10**6)])
def test_a_refused_run_leaves_no_folder_and_no_lock(tmp_path, bad):
    with pytest.raises(Exception) as refused:
        run(_config(**bad), root=tmp_path, **QUIET)
    from zsg_core.assets import AssetError

    assert isinstance(refused.value, (AssetError, DataError, ValueError)), refused.value  # named, not a crash
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_a_run_the_disk_has_no_room_for_is_refused_before_training(tmp_path, monkeypatch):
    from zsg_core import runs

    monkeypatch.setattr(runs.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    trained: list[int] = []
    with pytest.raises(DataError, match=r"not enough free space for a run \(needs about \d+ MB, 0 MB free\)"):
        run(_config(), root=tmp_path, on_step=trained.append, **QUIET)
    assert trained == [] and (not tmp_path.exists() or list(tmp_path.iterdir()) == [])


def test_a_pickle_left_in_a_complete_run_is_removed_unread(tmp_path):
    done = run(_config(), root=tmp_path, **QUIET)
    (done.folder / "state.pt").write_bytes(b"\x80\x04 a pickle that must never be loaded")
    again = run(_config(), root=tmp_path, **QUIET)
    assert again.from_store and not (done.folder / "state.pt").exists()


def test_a_run_is_the_same_bits_whatever_filled_the_frozen_cache(tmp_path, monkeypatch):
    """One config trained after its split's instances were cached in small groups, in reverse,
    equals the same config trained on an empty cache (bf16, where packing moves the rounding)."""
    from zsg_core import model
    from zsg_core.runs import run_split

    config = _config(precision="bf16")
    monkeypatch.setattr(model, "cache_dir", lambda: tmp_path / "cache-empty")
    fresh = run(config, root=tmp_path / "a", **QUIET)
    monkeypatch.setattr(model, "cache_dir", lambda: tmp_path / "cache-history")
    split = run_split(config)
    lm = model.TunedLM(config.model, config.train.frozen_layers, config.split.max_len, autocast=True)
    records = list(split.test) + list(split.train)
    for end in range(len(records), 0, -3):
        lm.cache_bottom(lm.items(records[max(0, end - 3):end]), log=lambda s: None)
    other = run(config, root=tmp_path / "b", **QUIET)
    assert other.eval_loss.equals(fresh.eval_loss)
    assert other.train_log.loss.equals(fresh.train_log.loss)


@pytest.mark.slow
def test_an_installed_zsg_never_records_the_enclosing_repository(tmp_path):
    """zsg installed inside someone's git project (a venv in it, a vendored copy) records its
    version, not the project's commit; a source checkout of zsg records its own commit."""
    project = tmp_path / "someone-elses-project"
    site = project / "venv" / "site-packages"
    shutil.copytree(Path(__file__).parents[1] / "zsg_core", site / "zsg_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(project), "-c", "user.email=u@x", "-c", "user.name=u"]
    subprocess.run(git + ["init", "-q"], check=True)
    (project / "README").write_text("not zsg")
    subprocess.run(git + ["add", "README"], check=True)
    subprocess.run(git + ["commit", "-qm", "theirs"], check=True)
    code = "import json; from zsg_core.runs import _git_state; print(json.dumps(_git_state()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(site)}, cwd=project)
    assert json.loads(out.stdout) == {"git_commit": None, "git_dirty": None}
    own = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    head = subprocess.run(["git", "-C", str(Path(__file__).parents[1]), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:  # a source checkout of zsg (CI's clone is one)
        assert json.loads(own.stdout)["git_commit"] == head.stdout.strip()


@pytest.mark.slow
def test_the_smoke_profile_reaches_a_checkpoint_and_resumes_from_it(tmp_path):
    """The smoke profile's own run, with the default checkpoint interval, killed after its first
    checkpoint, resumes from it (not from scratch) to the uninterrupted numbers."""
    params = {**run_params(load_profile("smoke")), "arrangement": "random", "generate_steps": []}
    config = run_config(**params)
    steps = config.train.max_steps
    code = (f"import os; from zsg_core.config import run_config; from zsg_core.runs import run; "
            f"c = run_config(**{params!r}); "
            f"run(c, root=__import__('pathlib').Path({str(tmp_path)!r}), log=lambda s: None, "
            f"on_step=lambda s: s == {steps - 1} and os.kill(os.getpid(), 9))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    messages: list[str] = []
    resumed = run(config, root=tmp_path, log=messages.append)
    from zsg_core.train import checkpoint_interval

    at = checkpoint_interval(steps) * ((steps - 1) // checkpoint_interval(steps))
    assert 0 < at < steps and any(f"resuming from step {at} of {steps}" in m for m in messages), messages
    clean = run(config, root=tmp_path / "clean", **QUIET)
    assert resumed.eval_loss.equals(clean.eval_loss) and resumed.batches.equals(clean.batches)
