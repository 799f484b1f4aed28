"""The gpu profile in miniature on the CPU, through `zsg train` (the code path a GPU user runs):
full fine-tuning (frozen_layers 0) of a Gemma 3 architecture, batch 16, sequences to 1,024 tokens,
the paper's sampled generation, a few steps over a few tasks. The real Gemma-3-270m on the same
path: benchmarks/gpu_miniature.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from zsg_core.config import load_profile

MINIATURE = {"model": "tiny-gemma3", "test_tasks": 4, "train_per_task": 2, "test_per_task": 2, "max_steps": 2,
             "generate_steps": "[0,2]", "generate_per_task": 1, "max_new_tokens": 4}


@pytest.mark.slow
def test_the_gpu_profile_runs_in_miniature(tmp_path):
    gpu = load_profile("gpu")
    assert gpu["frozen_layers"] == 0 and gpu["batch_size"] == 16 and gpu["max_len"] == 1024  # what is exercised
    env = {**os.environ, "ZSG_RUNS": str(tmp_path), "TQDM_DISABLE": "1"}
    zsg = Path(sys.executable).with_name("zsg")
    args = [str(zsg), "train", "--profile", "gpu"] + [a for k, v in MINIATURE.items() for a in ("--set", f"{k}={v}")]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(proc.stdout.split("results: ")[-1].strip())
    config = json.loads((folder / "config.json").read_text())
    assert config["train"]["frozen_layers"] == 0 and config["train"]["batch_size"] == 16
    assert config["split"]["max_len"] == 1024 and config["train"]["generate_protocol"] == "both"
    batches = pd.read_parquet(folder / "batches.parquet")
    assert len(batches) == 32 and list(batches.step) == [1] * 16 + [2] * 16
    evals = pd.read_parquet(folder / "eval_loss.parquet")
    assert set(evals.step) == {0, 2} and evals.loss.notna().all()  # the dense schedule of 2 steps
    generations = pd.read_parquet(folder / "generations.parquet")
    assert set(generations.protocol) == {"greedy", "paper"} and set(generations.step) == {0, 2}
