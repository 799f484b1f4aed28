"""The engine's speed, old path against new, side by side in one process, with each one's share of
this machine's matmul peak in the precision in use.

    .venv/bin/python benchmarks/bench_train.py [--profile cpu] [--steps 20] [--cache-items 60] [--rounds 5] [--out FILE]

Prints one JSON object (and writes it to --out):
- machine: CPU kind (`torch.backends.cpu.get_cpu_capability()`), threads, the precision in use and
  why (`zsg_core.precision`), and the matmul peak measured here in that precision (2048^2 products);
- train: the old path (each item of a batch alone through torch's flash attention, gradients
  accumulated; frozen weights re-cast by autocast at every call; torch's default AdamW) and the new
  one (the batch packed in one row, per-item attention written out with its backward by hand,
  frozen weights cast once, fused AdamW), each as a bare forward/backward/clip/AdamW loop over the same
  `steps` batches from the same weights: tokens/s, seconds per step, FLOP/s (counted by torch's
  FlopCounterMode on one step) and share of peak (the two alternate `rounds` times over the same
  batches; each figure is the median round's, the speed-up the median of the rounds', each listed);
  the per-step training losses of the two paths
  and their largest difference; `zsg_core.train.train` over the same batches, timed in every
  round too, and its loop overhead against the new bare loop (target <= 10%; medians, each round listed);
- eval: one held-out evaluation, old (length-sorted padded batches of 8) against new (packed rows
  of PACK_TOKENS tokens, shared task prefixes), and each one's largest per-instance loss
  difference from every instance run alone;
- cache: the frozen bottom for `cache_items` instances, old (one at a time) against new (packed);
- generation: one prompt per held-out task, greedy, 64 new tokens, old (batches of 8 in the given
  order) against new (shortest first, large batches), and how many answers agree;
- step_profile: where the time of one new training step goes (share per op, torch profiler).
Both training paths start from the same weights after one warm-up step each.
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import time
from pathlib import Path

import torch
from report import report
from torch import nn


def matmul_peak(autocast: bool) -> float:
    """FLOP/s of a 2048^2 product in the precision in use, best of 5."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    times = []
    for _ in range(6):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            a @ b
        times.append(time.perf_counter() - t)
    return 2 * 2048 ** 3 / min(times[1:])


@contextlib.contextmanager
def recast_every_call(model: nn.Module):
    """The old engine: plain nn.Linear.forward, so autocast re-casts frozen weights at every call."""
    patched = [m for m in model.modules() if isinstance(m, nn.Linear) and "forward" in m.__dict__]
    saved = [m.__dict__.pop("forward") for m in patched]
    try:
        yield
    finally:
        for m, f in zip(patched, saved):
            m.forward = f


def counted_flops(fn) -> int:
    """FLOPs of one call, as torch's FlopCounterMode counts them (matmuls and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def timed(fn):
    """(seconds, result) of one call after a warm-up call."""
    fn()
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def interleaved(paths: dict, rounds: int) -> dict:
    """name -> (median seconds, result of its first timed call, seconds of each round): every path
    warmed up once, then all called in turn, `rounds` times, so a drift in the machine's speed hits
    each alike."""
    for fn in paths.values():
        fn()
    seconds: dict = {name: [] for name in paths}
    results: dict = {}
    for _ in range(rounds):
        for name, fn in paths.items():
            t = time.perf_counter()
            out = fn()
            seconds[name].append(time.perf_counter() - t)
            results.setdefault(name, out)
    return {name: (statistics.median(seconds[name]), results[name], seconds[name]) for name in paths}


def old_rows(lm, inputs, labels):
    """The old ResponseLoss.rows: items right-padded into one batch, transformers' sdpa attention
    with a padding mask when there is more than one item (one item alone: no mask, no padding)."""
    from zsg_core.prompt import IGNORE

    width = max(len(x) for x in inputs)
    first = inputs[0]
    batch = first.new_zeros((len(inputs), width) + tuple(first.shape[1:]))
    targets = labels[0].new_full((len(inputs), width), IGNORE)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for i, (x, y) in enumerate(zip(inputs, labels)):
        batch[i, : len(x)], targets[i, : len(y)], mask[i, : len(x)] = x, y, 1
    key = "inputs_embeds" if lm.frozen_layers else "input_ids"
    hidden = lm.loss.top(**{key: batch}, attention_mask=mask if len(inputs) > 1 else None,
                         use_cache=False).last_hidden_state
    targets = targets[:, 1:]
    row, col = (targets != IGNORE).nonzero(as_tuple=True)
    logits = lm.loss.lm_head(hidden[row, col]).float()
    token_loss = nn.functional.cross_entropy(logits, targets[row, col], reduction="none")
    return torch.zeros(len(inputs)).index_add(0, row, token_loss), torch.bincount(row, minlength=len(inputs))


def main() -> None:
    from zsg_core import precision
    from zsg_core.config import load_profile
    from zsg_core.model import TunedLM
    from zsg_core.config import run_config, run_params
    from zsg_core.runs import arranged_training_list
    from zsg_core.train import BETAS, EPS, GRAD_CLIP, WEIGHT_DECAY, adamw, train

    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cache-items", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5, help="old and new timed in turn this many times; the median counts")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    params = run_params(load_profile(args.profile))
    params.update(arrangement="random", max_steps=args.steps, eval_steps=[], generate_steps=[])
    config = run_config(**params)
    arranged, test, _ = arranged_training_list(config)
    tc = config.train
    autocast = tc.precision == "bf16"
    peak = matmul_peak(autocast)

    lm = TunedLM(config.model, tc.frozen_layers, config.split.max_len, seed=tc.seed, autocast=autocast)
    items = lm.items(arranged[: args.steps * tc.batch_size])
    test_items = lm.items(test)
    lm.cache_bottom(list(items) + list(test_items))
    start = {n: p.detach().clone() for n, p in lm.model.named_parameters() if p.requires_grad}
    trained = lm.trainable_parameters()
    batches = [items[k * tc.batch_size: (k + 1) * tc.batch_size] for k in range(args.steps)]

    def reset() -> None:
        with torch.no_grad():
            for n, p in lm.model.named_parameters():
                if n in start:
                    p.copy_(start[n])

    def old_step(batch) -> float:
        n_labels = sum(int((it.labels[1:] != -100).sum()) for it in batch)
        total = 0.0
        with lm.precision():
            for it in batch:
                sums, _ = old_rows(lm, [lm.inputs(it)], [it.labels])
                (sums[0] / n_labels).backward()
                total += float(sums[0].detach())
        return total / n_labels

    def new_step(batch) -> float:
        with lm.precision():
            sums, counts, _ = lm.loss(*lm.pack(batch).args())
            n_labels = int(counts.sum())
            (sums.sum() / n_labels).backward()
        return float(sums.detach().sum()) / n_labels

    def old_optimizer(params, lr):  # the old engine's: torch's default (foreach) AdamW
        return torch.optim.AdamW(params, lr=lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)

    def bare_loop(step, n_steps: int, make_optimizer) -> tuple[float, list[float]]:
        optimizer = make_optimizer(trained, tc.lr)
        lm.model.train()
        losses = []
        t0 = time.perf_counter()
        for batch in batches[:n_steps]:
            losses.append(step(batch))
            torch.nn.utils.clip_grad_norm_(trained, GRAD_CLIP)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, losses

    def flops(step) -> int:
        counted = counted_flops(lambda: step(batches[0]))
        lm.model.zero_grad(set_to_none=True)
        return counted

    tokens = sum(len(it.ids) for b in batches for it in b)
    paths = {"old": (old_step, lambda: recast_every_call(lm.model), old_optimizer),
             "new": (new_step, contextlib.nullcontext, adamw)}
    for step, context, make_optimizer in paths.values():
        with context():
            bare_loop(step, 1, make_optimizer)  # warm-up: the first step of a process pays allocations
    # old and new alternate, `rounds` times over the same batches from the same weights: a drift of
    # the machine's speed (shared cores) hits both alike; the speed-up is the median round's
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    losses: dict[str, list[float]] = {}
    # the real loop (`zsg_core.train.train`, the same batches) in every round too: its overhead is
    # the median round's against the bare loop's median, not one call against a median
    loop_seconds, call_seconds = [], []
    for _ in range(args.rounds):
        for name, (step, context, make_optimizer) in paths.items():
            reset()
            with context():
                took, losses[name] = bare_loop(step, args.steps, make_optimizer)
            seconds[name].append(took)
        reset()
        t = time.perf_counter()
        result = train(lm, arranged, test, tc, log=lambda s: None)
        call_seconds.append(time.perf_counter() - t)
        loop_seconds.append(result.stats["train_seconds"])
    # no reset: evaluation and generation below see the model after the last round's real loop (20 steps)
    figures: dict = {}
    for name, (step, context, _) in paths.items():
        with context():
            step_flops = flops(step)
        # FLOPs counted on the first batch, per token; the time is the median round's mean over all batches
        flops_per_token = step_flops / sum(len(it.ids) for it in batches[0])
        took = statistics.median(seconds[name])
        figures[name] = {"seconds_per_step": round(took / args.steps, 3), "tokens_per_s": round(tokens / took, 1),
                         "tokens_per_s_rounds": [round(tokens / t, 1) for t in seconds[name]],
                         "flops_per_token": round(flops_per_token),
                         "share_of_peak": round(flops_per_token * tokens / took / peak, 3), "losses": losses[name]}
    train_rounds = [round(o / n, 2) for o, n in zip(seconds["old"], seconds["new"])]
    old_losses, new_losses = figures["old"].pop("losses"), figures["new"].pop("losses")

    loop_median = statistics.median(loop_seconds)
    new_bare = tokens / figures["new"]["tokens_per_s"]
    train_figures = {
        "steps": args.steps, "batch_size": tc.batch_size, "tokens": tokens, "old": figures["old"], "new": figures["new"],
        "speedup": statistics.median(train_rounds), "speedup_rounds": train_rounds,
        "step_loss_max_abs_diff": round(max(abs(a - b) for a, b in zip(old_losses, new_losses)), 5),
        "step_losses_old": [round(v, 4) for v in old_losses], "step_losses_new": [round(v, 4) for v in new_losses],
        "train_loop_tokens_per_s": round(tokens / loop_median, 1),
        "loop_overhead": round(loop_median / new_bare - 1, 4),
        "loop_overhead_rounds": [round(t / new_bare - 1, 4) for t in loop_seconds],
        "call_overhead_seconds": round(statistics.median(c - t for c, t in zip(call_seconds, loop_seconds)), 2),
    }

    # one held-out evaluation, old against new
    lm.model.eval()
    eval_tokens = sum(len(it.ids) for it in test_items)

    def old_eval() -> list[float]:
        out = [0.0] * len(test_items)
        order = sorted(range(len(test_items)), key=lambda i: (len(test_items[i].ids), i))
        with torch.no_grad(), lm.precision(), recast_every_call(lm.model):
            for s in range(0, len(order), 8):
                chosen = order[s: s + 8]
                sums, counts = old_rows(lm, [lm.inputs(test_items[i]) for i in chosen], [test_items[i].labels for i in chosen])
                for i, total, n in zip(chosen, sums.tolist(), counts.tolist()):
                    out[i] = total / max(n, 1)
        return out

    def new_eval() -> list[float]:
        return [v for v, _, _ in lm.item_losses(test_items)]

    def alone_eval() -> list[float]:  # the reference: each instance in a row of its own
        return [v for v, _, _ in lm.item_losses(test_items, tokens_per_row=1)]

    evals = {"alone": (0.0, alone_eval()), **interleaved({"old": old_eval, "new": new_eval}, args.rounds)}
    eval_flops = counted_flops(new_eval)
    eval_figures = {"instances": len(test_items), "tokens": eval_tokens, "flops": eval_flops}
    for name in ("old", "new"):
        seconds = evals[name][0]
        eval_figures[name] = {"seconds": round(seconds, 2), "tokens_per_s": round(eval_tokens / seconds, 1),
                              "share_of_peak": round(eval_flops / seconds / peak, 3)}
    eval_figures["speedup_rounds"] = [round(o / n, 2) for o, n in zip(*(evals[name][2] for name in ("old", "new")))]
    eval_figures["speedup"] = statistics.median(eval_figures["speedup_rounds"])
    for name in ("old", "new"):  # against each instance alone, both in the precision in use
        eval_figures[f"{name}_vs_alone_max_abs_diff"] = round(
            max(abs(a - b) for a, b in zip(evals[name][1], evals["alone"][1])), 5)
    eval_figures["mean_loss_old"] = round(sum(evals["old"][1]) / len(test_items), 4)
    eval_figures["mean_loss_new"] = round(sum(evals["new"][1]) / len(test_items), 4)

    # the frozen bottom, old (one at a time, re-cast) against new (packed rows, cast once), not stored
    cache_figures = None
    if lm.frozen_layers:
        chosen = test_items[: args.cache_items]
        cache_tokens = sum(len(it.ids) for it in chosen)

        def old_cache() -> list[torch.Tensor]:
            with torch.no_grad(), lm.precision(), recast_every_call(lm.model):
                return [lm.bottom(input_ids=it.ids[None], use_cache=False).last_hidden_state[0] for it in chosen]

        def new_cache() -> list[torch.Tensor]:  # what TunedLM.cache_bottom computes, without storing
            out = {it.index: value for it, value in lm.bottom_outputs(chosen)}
            return [out[it.index] for it in chosen]

        outputs = interleaved({"old": old_cache, "new": new_cache}, args.rounds)
        cache_flops = counted_flops(new_cache)
        cache_figures = {"instances": len(chosen), "tokens": cache_tokens, "flops": cache_flops}
        for name in ("old", "new"):
            seconds = outputs[name][0]
            cache_figures[name] = {"seconds_per_instance": round(seconds / len(chosen), 4),
                                   "share_of_peak": round(cache_flops / seconds / peak, 3)}
        cache_figures["speedup_rounds"] = [round(o / n, 2) for o, n in zip(outputs["old"][2], outputs["new"][2])]
        cache_figures["speedup"] = statistics.median(cache_figures["speedup_rounds"])
        # the residual stream holds values in the thousands: the difference relative to the largest value
        cache_figures["max_rel_diff"] = float(max(
            ((a.float() - b.float()).abs().max() / b.float().abs().max()) for a, b in zip(outputs["old"][1], outputs["new"][1])))

    # generation (chapter 2's runs generate at a few steps): the profile's prompts, greedy, old
    # (batches of 8 in the given order) against new (shortest first, large batches)
    from zsg_core.metrics import generate

    by_task: dict[str, str] = {}
    for r in test:
        by_task.setdefault(r.task, r.messages[0]["content"])
    prompts = list(by_task.values())
    max_new = 64  # the training default (the cpu profile's chapters generate 24: shorter decoding loops)

    def old_generate() -> list[str]:
        return [a for k in range(0, len(prompts), 8)
                for a in generate(lm.model, lm.tokenizer, prompts[k: k + 8], max_new, batch_size=8)]

    def new_generate() -> list[str]:
        return generate(lm.model, lm.tokenizer, prompts, max_new)

    with lm.precision():
        generated = {"old": timed(old_generate), "new": timed(new_generate)}
    generation_figures = {
        "prompts": len(prompts), "max_new_tokens": max_new,
        **{f"{name}_seconds": round(generated[name][0], 2) for name in ("old", "new")},
        "speedup": round(generated["old"][0] / generated["new"][0], 2),
        "same_answers": sum(a == b for a, b in zip(generated["old"][1], generated["new"][1])),
    }

    # where one new training step spends its time
    from torch.profiler import ProfilerActivity, profile

    lm.model.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[:3]:
            new_step(batch)
            lm.model.zero_grad(set_to_none=True)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    step_profile = {e.key: round(e.self_cpu_time_total / total, 3) for e in ops[:8]}

    decision = precision.decision()
    out = {
        "machine": {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": decision["name"],
                    "threads": torch.get_num_threads(), "precision": tc.precision,
                    "precision_why": precision.describe(tc.precision),
                    "matmul_peak_tflops": round(peak / 1e12, 3)},
        "profile": args.profile, "model": config.model, "frozen_layers": tc.frozen_layers,
        "train": train_figures, "eval": eval_figures, "cache": cache_figures, "generation": generation_figures,
        "step_profile": step_profile,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    report(out, args.out)


if __name__ == "__main__":
    main()
