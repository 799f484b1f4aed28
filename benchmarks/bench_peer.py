"""zsg's engine against the trainers a user would pick instead: the same ordered data through TRL's
SFTTrainer and transformers' Trainer, the same held-out curve, and the speed side by side.

    .venv/bin/python benchmarks/bench_peer.py [--profile cpu] [--steps 60] [--rounds 2] [--out FILE]

One training list for every engine: the first `steps` x batch_size instances of NFT's order on the
profile's split, tokenized once by `zsg_core.prompt.encode` (the paper's format, the loss on the
answer and its EOS), so an engine's tokens and loss mask are exactly zsg's. The list is one epoch,
so the cosine schedule (no warm-up, down to 0.1 x lr) runs over exactly these steps in every engine.
The same model (fp32 master weights, bf16 autocast where the profile's precision is bf16), the same
trained layers (the top 30 - frozen_layers, nothing else), the same AdamW (the paper's betas, eps,
no weight decay, clipping at 1.0, torch's fused kernel) and the same sequential order:

- zsg: `zsg_core.train.train` (the frozen bottom's outputs read from its cache, items packed);
- trl: `SFTTrainer` on the pre-tokenized rows (`input_ids`, `labels`), otherwise its defaults
  (padding to the batch's longest item, its per-step token accuracy and entropy metrics), with
  `train_sampling_strategy="sequential"`;
- trainer: transformers' `Trainer` with a collator that pads and masks the prompt, the same sampler.

Each engine's weights are copied at `--eval-steps` and all are evaluated afterwards by one
function (`zsg_core.metrics.heldout_loss`, every held-out instance of the split), so only training
differs. Every engine's batches are recorded as the model received them (a forward hook) and
checked against the arranged order. Engines alternate for `--rounds` rounds (the medians count);
zsg is also timed once from an empty frozen-layer cache (what its first run on a new split pays),
and once in fp32 as the yardstick of bf16 noise: the gap between zsg's bf16 and fp32 curves is
what bf16 rounding alone moves the held-out loss by.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from report import report

from zsg_core.metrics import pad_id

class OrderHook:
    """Records, for every training forward, the token rows the model received (padding stripped).
    Compared as tokens, not ids: the data holds a few instances with identical text under two ids."""

    def __init__(self, model: torch.nn.Module):
        self.batches = []
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        if not module.training:
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        rows = []
        for i, row in enumerate(ids.tolist()):
            n = int(mask[i].sum()) if mask is not None else len(row)
            rows.append(tuple(row[:n]))
        self.batches.append(rows)


def peer_model(path: Path, frozen_layers: int) -> torch.nn.Module:
    """The model as transformers loads it (its default attention), fp32, the top layers trainable."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.use_cache = False
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in list(model.model.layers)[frozen_layers:]:
        for p in layer.parameters():
            p.requires_grad_(True)
    return model


def trained_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def peer_args(kind: str, out: str, tc, steps: int):
    """TrainingArguments (or TRL's SFTConfig) stating zsg's recipe in the peer's own words."""
    from transformers import TrainingArguments
    from trl import SFTConfig

    from zsg_core.train import BETAS, EPS, GRAD_CLIP, MIN_LR_RATIO, WEIGHT_DECAY

    common = dict(output_dir=out, per_device_train_batch_size=tc.batch_size, num_train_epochs=1,
                  learning_rate=tc.lr, lr_scheduler_type="cosine_with_min_lr",
                  lr_scheduler_kwargs={"min_lr_rate": MIN_LR_RATIO}, warmup_steps=0,
                  optim="adamw_torch_fused", adam_beta1=BETAS[0], adam_beta2=BETAS[1], adam_epsilon=EPS,
                  weight_decay=WEIGHT_DECAY, max_grad_norm=GRAD_CLIP, bf16=tc.precision == "bf16",
                  use_cpu=not torch.cuda.is_available(), train_sampling_strategy="sequential",
                  logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                  dataloader_num_workers=0, seed=tc.seed)
    if kind == "trl":
        return SFTConfig(**common, max_length=None)
    return TrainingArguments(**common)


def pad_and_mask(pad_id: int):
    """The plain Trainer's collator: right-pad to the batch's longest item; labels -100 on the
    prompt (zsg's mask, carried in the rows) and on padding."""
    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
    return collate


def run_peer(kind: str, path: Path, tokenizer, rows: dict, tc, steps: int, eval_steps: tuple[int, ...]) -> dict:
    """Train one peer on `rows`; its wall time, step time, weights at `eval_steps`, losses, order."""
    from datasets import Dataset
    from transformers import Trainer, TrainerCallback
    from trl import SFTTrainer

    model = peer_model(path, tc.frozen_layers)
    snapshots = {0: trained_weights(model)} if 0 in eval_steps else {}
    clock: dict[str, float] = {}

    class Watch(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            clock.setdefault("first_step", time.perf_counter())

        def on_step_end(self, args, state, control, model=None, **kw):
            clock["last_step"] = time.perf_counter()
            if state.global_step in eval_steps:
                snapshots[state.global_step] = trained_weights(model)

    hook = OrderHook(model)
    with tempfile.TemporaryDirectory() as out:
        args = peer_args(kind, out, tc, steps)
        data = Dataset.from_dict(rows)
        if kind == "trl":
            trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                 callbacks=[Watch()])
        else:
            trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=pad_and_mask(pad_id(tokenizer)),
                              callbacks=[Watch()])
        t = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is this script's JSON
            trainer.train()
        wall = time.perf_counter() - t
    hook.handle.remove()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    return {"wall": wall, "steps_seconds": clock["last_step"] - clock["first_step"], "snapshots": snapshots,
            "train_loss": losses, "batches": hook.batches}


def run_zsg(config, arranged, test, eval_steps: tuple[int, ...], hidden_cache: Path | None = None,
            precision: str | None = None) -> dict:
    from dataclasses import replace

    from zsg_core.model import TunedLM
    from zsg_core.train import train

    tc = replace(config.train, max_steps=None, eval_steps=(), generate_steps=(),
                 precision=precision or config.train.precision)
    lm = TunedLM(config.model, tc.frozen_layers, config.split.max_len, seed=tc.seed,
                 autocast=tc.precision == "bf16", hidden_cache=hidden_cache)
    snapshots = {0: trained_weights(lm.model)} if 0 in eval_steps else {}

    def on_step(step: int) -> None:
        if step in eval_steps:
            snapshots[step] = trained_weights(lm.model)

    t = time.perf_counter()
    result = train(lm, arranged, test, tc, log=lambda _: None, on_step=on_step)
    wall = time.perf_counter() - t
    tokens = {r.id: tuple(it.ids.tolist()) for r, it in zip(arranged, lm.items(arranged))}
    batches = [[tokens[i] for i in group.id] for _, group in result.batches.groupby("step", sort=True)]
    return {"wall": wall, "steps_seconds": result.stats["train_seconds"], "snapshots": snapshots,
            "train_loss": result.train_log.loss.tolist(), "batches": batches}


@torch.no_grad()
def first_batch_losses(config, first: list, rows: dict, path: Path, pad: int) -> dict[str, dict[str, float]]:
    """The first batch's loss at the starting weights, as each engine computes it (before any step,
    so only the computation differs): in fp32 zsg's packed computation and transformers' padded
    forward with labels are equal where they compute the same loss (tokens, mask, mean over the
    batch's labels); in bf16, zsg's training path (bottom read from the fp16 cache), zsg without
    the cache (every layer computed, as the peers do) and transformers' forward, which says where a
    gap in the first training losses comes from."""
    from zsg_core.model import TunedLM

    n = len(first)
    batch = pad_and_mask(pad)([{"input_ids": i, "labels": l} for i, l in zip(rows["input_ids"][:n], rows["labels"][:n])])
    hf = peer_model(path, config.train.frozen_layers)
    out: dict[str, dict[str, float]] = {}
    for precision in ("fp32", "bf16"):
        autocast = precision == "bf16"
        losses = {}
        for name, frozen in (("zsg", config.train.frozen_layers), ("zsg_no_cache", 0)):
            if frozen and not autocast:
                continue  # the cut is exact in fp32 (TunedLM.check); its cache only exists per precision
            lm = TunedLM(config.model, frozen, config.split.max_len, autocast=autocast)
            items = lm.items(first)
            if frozen:
                lm.cache_bottom(items, log=lambda _: None)
            lm.model.train()  # the training path: with grad, as a step computes it (attention by hand)
            with torch.enable_grad(), lm.precision():
                sums, counts, _ = lm.loss(*lm.pack(items).args())
            losses[name] = round(float(sums.detach().sum() / counts.sum()), 6)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses["transformers"] = round(float(hf(**batch).loss), 6)
        out[precision] = losses
    return out


def main() -> None:
    from zsg_core import precision
    from zsg_core.assets import model_path
    from zsg_core.config import load_profile
    from zsg_core.metrics import heldout_loss
    from zsg_core.model import TunedLM
    from zsg_core.config import run_config, run_params

    from zsg_core.runs import arranged_training_list

    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-steps", default="0,10,30,60")
    parser.add_argument("--rounds", type=int, default=2, help="the engines timed in turn this many times; medians count")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    eval_steps = tuple(int(s) for s in args.eval_steps.split(","))
    if max(eval_steps) > args.steps:
        parser.error(f"--eval-steps reach {max(eval_steps)}, past --steps {args.steps}")

    params = run_params(load_profile(args.profile))
    params.update(arrangement="nft", eval_steps=[], generate_steps=[])
    config = run_config(**params)
    tc = config.train
    arranged, test, _ = arranged_training_list(config)
    arranged = arranged[: args.steps * tc.batch_size]

    # one evaluator, its frozen bottom cached, for every engine's weights
    evaluator = TunedLM(config.model, tc.frozen_layers, config.split.max_len, seed=tc.seed,
                        autocast=tc.precision == "bf16")
    items = evaluator.items(arranged)
    test_items = evaluator.items(test)
    evaluator.cache_bottom(list(items) + list(test_items), log=lambda _: None)
    rows = {"input_ids": [it.ids.tolist() for it in items], "labels": [it.labels.tolist() for it in items]}
    tokens = sum(len(r) for r in rows["input_ids"])
    path = model_path(config.model)
    tokenizer = evaluator.tokenizer

    def held_out(snapshot: dict[str, torch.Tensor]) -> float:
        names = dict(evaluator.model.named_parameters())
        with torch.no_grad():
            for n, v in snapshot.items():
                names[n].copy_(v)
        return float(heldout_loss(evaluator, test, test_items).loss.mean())

    engines = {"zsg": lambda: run_zsg(config, arranged, test, eval_steps),
               "trl": lambda: run_peer("trl", path, tokenizer, rows, tc, args.steps, eval_steps),
               "trainer": lambda: run_peer("trainer", path, tokenizer, rows, tc, args.steps, eval_steps)}
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    with tempfile.TemporaryDirectory() as cold:  # zsg's first run on a split: the cache filled as it goes
        zsg_cold = run_zsg(config, arranged, test, eval_steps, hidden_cache=Path(cold))
    zsg_fp32 = run_zsg(config, arranged, test, eval_steps, precision="fp32") if tc.precision == "bf16" else None
    for _ in range(args.rounds):
        for name, fn in engines.items():
            runs[name].append(fn())

    arranged_batches = [[tuple(ids) for ids in rows["input_ids"][k * tc.batch_size: (k + 1) * tc.batch_size]]
                        for k in range(args.steps)]

    def curve(run: dict) -> dict[int, float]:
        return {s: round(held_out(run["snapshots"][s]), 5) for s in eval_steps}

    figures: dict = {"machine": {**precision.capability(), "precision": tc.precision},
                     "setup": {"model": config.model, "split_seed": config.split.seed, "order": "nft",
                               "instances": len(arranged), "steps": args.steps, "batch_size": tc.batch_size,
                               "lr": tc.lr, "frozen_layers": tc.frozen_layers, "held_out": len(test),
                               "training_tokens": tokens, "rounds": args.rounds,
                               "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "trl")}},
                     "engines": {}}
    for name, done in runs.items():
        wall = [r["wall"] for r in done]
        step = [r["steps_seconds"] for r in done]
        first = done[0]
        figures["engines"][name] = {
            "wall_seconds": [round(w, 2) for w in wall], "steps_seconds": [round(s, 2) for s in step],
            "tokens_per_s": round(tokens / statistics.median(wall), 1),
            "tokens_per_s_steps_only": round(tokens / statistics.median(step), 1),
            "order_kept": all(r["batches"] == arranged_batches for r in done),
            "heldout_loss": curve(first),
            "train_loss_first_last": [round(first["train_loss"][0], 4), round(first["train_loss"][-1], 4)],
            "rounds_identical": all(r["train_loss"] == first["train_loss"] for r in done)}
    figures["engines"]["zsg"]["cold_cache_wall_seconds"] = round(zsg_cold["wall"], 2)
    figures["engines"]["zsg"]["cold_cache_tokens_per_s"] = round(tokens / zsg_cold["wall"], 1)
    zsg = figures["engines"]["zsg"]
    figures["ratios"] = {f"zsg/{peer}": {
        "wall": round(zsg["tokens_per_s"] / figures["engines"][peer]["tokens_per_s"], 2),
        "steps_only": round(zsg["tokens_per_s_steps_only"] / figures["engines"][peer]["tokens_per_s_steps_only"], 2),
        "zsg_cold_cache": round(zsg["cold_cache_tokens_per_s"] / figures["engines"][peer]["tokens_per_s"], 2)}
        for peer in ("trl", "trainer")}
    gaps = {f"zsg-{peer}": {s: round(zsg["heldout_loss"][s] - figures["engines"][peer]["heldout_loss"][s], 5)
                            for s in eval_steps} for peer in ("trl", "trainer")}
    gaps["trl-trainer"] = {s: round(figures["engines"]["trl"]["heldout_loss"][s]
                                    - figures["engines"]["trainer"]["heldout_loss"][s], 5) for s in eval_steps}
    if zsg_fp32 is not None:
        fp32 = curve(zsg_fp32)
        figures["engines"]["zsg_fp32"] = {"heldout_loss": fp32, "wall_seconds": [round(zsg_fp32["wall"], 2)],
                                          "order_kept": zsg_fp32["batches"] == arranged_batches}
        gaps["zsg-zsg_fp32 (bf16 noise)"] = {s: round(zsg["heldout_loss"][s] - fp32[s], 5) for s in eval_steps}
    figures["heldout_loss_gaps"] = gaps
    figures["first_batch_loss"] = first_batch_losses(config, arranged[: tc.batch_size], rows, path, pad_id(tokenizer))
    report(figures, args.out)


if __name__ == "__main__":
    main()
