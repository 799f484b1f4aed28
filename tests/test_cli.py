"""The command line as a user meets it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from zsg_core.cli import main


def test_prepare_list_shows_every_asset(capsys):
    assert main(["prepare", "--list"]) == 0
    out = capsys.readouterr().out
    for name, license_ in [("bigbench", "Apache-2.0"), ("smollm2-135m", "Apache-2.0"), ("minilm-l6", "Apache-2.0"),
                           ("gemma-270m", "Gemma Terms of Use")]:
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert license_ in row and " MB " in row and (" yes " in row or " no " in row)
    assert "bigbench" in out and "yes" in next(line for line in out.splitlines() if line.startswith("bigbench"))


@pytest.mark.slow
def test_second_prepare_does_nothing_and_says_so():
    proc = subprocess.run([sys.executable, "-m", "zsg_core.cli", "prepare"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and all("verified, nothing to do" in line for line in lines)


def test_unknown_asset_is_a_clear_error(capsys):
    assert main(["prepare", "no-such-model"]) == 2
    assert "unknown asset 'no-such-model'" in capsys.readouterr().err


def test_split_refuses_to_overwrite(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["split", "--out", str(tmp_path)]) == 2
    assert "exists and is not empty, and is not a folder zsg split wrote" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_split_writes_the_default_split(tmp_path, capsys):
    assert main(["split", "--out", str(tmp_path / "s")]) == 0
    from zsg_core.data import load_jsonl

    train, test = load_jsonl(tmp_path / "s" / "train.jsonl"), load_jsonl(tmp_path / "s" / "test.jsonl")
    assert len({r.task for r in train}) >= 200 and len({r.task for r in test}) >= 30
    assert (tmp_path / "s" / "report.csv").exists()


@pytest.mark.slow
def test_embed_twice_encodes_nothing_the_second_time(tmp_path, fixtures):
    import numpy as np

    cmd = [sys.executable, "-m", "zsg_core.cli", "embed", str(fixtures / "flan_mini.json"), "--text", "first-turn"]
    first = subprocess.run(cmd + ["--out", str(tmp_path / "a.npy")], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(cmd + ["--out", str(tmp_path / "b.npy")], capture_output=True, text=True)
    assert "3 records" in second.stdout and "encoded 0 new texts" in second.stdout
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (3, 384) and np.array_equal(a, b)
    again = subprocess.run(cmd + ["--out", str(tmp_path / "b.npy")], capture_output=True, text=True)
    assert again.returncode == 2 and "exists; pass --force (force=True) to overwrite it" in again.stderr
    forced = subprocess.run(cmd + ["--out", str(tmp_path / "b.npy"), "--force"], capture_output=True, text=True)
    assert forced.returncode == 0 and np.array_equal(np.load(tmp_path / "b.npy"), a)  # its own output: replaced
    (tmp_path / "notes.txt").write_text("mine")
    refused = subprocess.run(cmd + ["--out", str(tmp_path / "notes.txt"), "--force"], capture_output=True, text=True)
    assert refused.returncode == 2 and "is not a .npy array file" in refused.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
