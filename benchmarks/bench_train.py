"""Training and evaluation speed of the real loop on a profile, against a bare loop, in one process.

    .venv/bin/python benchmarks/bench_train.py [--profile cpu] [--steps 20] [--frozen-layers F]

Prints one JSON object:
- train_tokens_per_s: `zsg_core.train.train` (accelerate, sequential sharded DataLoader, batch-id
  gathering, lr schedule, logging) over the first `steps` batches of a random arrangement;
- bare_tokens_per_s: a bare forward/backward/clip/AdamW loop over the same batches, same model
  set-up, no evaluation; loop_overhead = real loop time / bare loop time - 1 (target <= 10%);
  call_overhead_seconds: the rest of a `train` call (accelerate set-up, encoding, the split check);
- eval_tokens_per_s: held-out loss over every test instance (tokens through the model per second)
  and eval_seconds for one evaluation;
- cache_seconds: computing the frozen layers' outputs for the instances involved (once per
  dataset, shared by every arrangement; 0 when already cached);
- peak_rss_mib of the process.
Both loops start from the same weights after one warm-up step; the real loop runs with no evaluation.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch


def main() -> None:
    from zsg_core.book import load_profile
    from zsg_core.metrics import heldout_loss
    from zsg_core.model import TunedLM
    from zsg_core.runs import arranged_training_list, run_config, run_params
    from zsg_core.train import BETAS, EPS, GRAD_CLIP, train

    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--frozen-layers", type=int, default=None)
    args = parser.parse_args()

    params = run_params(load_profile(args.profile))
    params.update(arrangement="random", max_steps=args.steps, eval_steps=[], generate_steps=[])
    if args.frozen_layers is not None:
        params["frozen_layers"] = args.frozen_layers
    config = run_config(**params)
    arranged, test, _ = arranged_training_list(config)
    tc = config.train

    lm = TunedLM(config.model, tc.frozen_layers, config.split.max_len, seed=tc.seed)
    items = lm.items(arranged[: args.steps * tc.batch_size])
    test_items = lm.items(test)
    t = time.perf_counter()
    computed = lm.cache_bottom(list(items) + list(test_items))
    cache_seconds = time.perf_counter() - t
    start = {n: p.detach().clone() for n, p in lm.model.named_parameters() if p.requires_grad}
    params_ = lm.trainable_parameters()

    def reset() -> None:
        with torch.no_grad():
            for n, p in lm.model.named_parameters():
                if n in start:
                    p.copy_(start[n])

    def bare_loop(n_steps: int) -> float:
        """forward/backward per item, clip, AdamW: nothing else"""
        optimizer = torch.optim.AdamW(params_, lr=tc.lr, betas=BETAS, eps=EPS, weight_decay=0.0)
        lm.model.train()
        t0 = time.perf_counter()
        for k in range(n_steps):
            batch = items[k * tc.batch_size: (k + 1) * tc.batch_size]
            n_labels = sum(int((it.labels[1:] != -100).sum()) for it in batch)
            with lm.precision():
                for it in batch:
                    loss_sum, _ = lm.loss(lm.inputs(it), it.labels)
                    (loss_sum / n_labels).backward()
            torch.nn.utils.clip_grad_norm_(params_, GRAD_CLIP)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    bare_loop(1)  # warm-up: the first step of a process pays allocations; neither timed loop should
    reset()
    bare_seconds = bare_loop(args.steps)
    reset()
    t = time.perf_counter()
    result = train(lm, arranged, test, tc, log=lambda s: None)
    call_seconds = time.perf_counter() - t
    loop_seconds = result.stats["train_seconds"]
    tokens = int(result.train_log.tokens.sum())

    t = time.perf_counter()
    table = heldout_loss(lm, test, test_items)
    eval_seconds = time.perf_counter() - t
    eval_tokens = sum(len(it.ids) for it in test_items)
    print(json.dumps({
        "profile": args.profile, "model": config.model, "frozen_layers": tc.frozen_layers,
        "batch_size": tc.batch_size, "steps": args.steps, "train_tokens": tokens,
        "train_tokens_per_s": round(tokens / loop_seconds, 1), "bare_tokens_per_s": round(tokens / bare_seconds, 1),
        "seconds_per_step": round(loop_seconds / args.steps, 3),
        "loop_overhead": round(loop_seconds / bare_seconds - 1, 4),
        "call_overhead_seconds": round(call_seconds - loop_seconds, 2),
        "eval_instances": len(test_items), "eval_tokens": eval_tokens, "eval_seconds": round(eval_seconds, 2),
        "eval_tokens_per_s": round(eval_tokens / eval_seconds, 1), "eval_mean_loss": round(float(table.loss.mean()), 4),
        "cache_computed": computed, "cache_seconds": round(cache_seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    }, indent=1))


if __name__ == "__main__":
    main()
