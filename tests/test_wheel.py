"""The wheel a user installs: built from this checkout, installed into a fresh virtual environment
(not on top of the project's), it declares what it needs and `zsg` runs there: it lists the
prepared assets, arranges a file and trains a smoke run from the profile the wheel ships.

It resolves the wheel's declared dependencies from the package index as a user's `pip install`
would (pip's cache makes it quick after `make`): a dependency the wheel forgets fails here."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from zsg_core.data import Record, write_jsonl

ROOT = Path(__file__).parents[1]
SOURCES = ["pyproject.toml", "README.md", "requirements.txt", "requirements-book.txt", "requirements-test.txt"]


@pytest.mark.slow
def test_the_wheel_runs_in_a_fresh_environment(tmp_path):
    source = tmp_path / "source"  # built from a copy: the build's own folders stay out of the checkout
    source.mkdir()
    for name in SOURCES:
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "zsg_core", source / "zsg_core", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                          str(source)], check=True, capture_output=True, text=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("zsg-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    installed = subprocess.run(pip + ["--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile",
                                      str(wheel)], capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    zsg = str(venv / "bin" / "zsg")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import zsg_core; print(zsg_core.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(venv) in where.stdout, where  # the installed copy, not this checkout
    assert {"zsg_core/profiles/cpu.yaml", "zsg_core/profiles/smoke.yaml"} <= set(zipfile.ZipFile(wheel).namelist())
    env["ZSG_RUNS"] = str(tmp_path / "runs")
    records = [Record(f"{task}-{i}", task, [{"role": "user", "content": f"Question {i} about {task}?"},
                                            {"role": "assistant", "content": f"Answer {i}."}])
               for task in ("cooking", "maths") for i in range(3)]
    write_jsonl(records, tmp_path / "train.jsonl")
    write_jsonl([Record("held", "travel", [{"role": "user", "content": "Do I need a visa?"},
                                           {"role": "assistant", "content": "It depends."}])], tmp_path / "test.jsonl")
    arrange = ["arrange", "--train", "train.jsonl", "--test", "test.jsonl", "--method", "round-robin", "--out", "rr.jsonl"]
    # the smoke profile ships inside the wheel: a run from the installed copy, on the prepared assets
    train = ["train", "--profile", "smoke", "--set", "max_steps=2", "--set", "eval_steps=[0,2]", "--set", "generate_steps=[]"]
    for args in (["--help"], ["prepare", "--list"], arrange, train):
        proc = subprocess.run([zsg, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert proc.returncode == 0, (args, proc.stderr[-3000:])
        assert args[0] != "prepare" or "smollm2-135m" in proc.stdout
    assert "held-out loss:" in proc.stdout
