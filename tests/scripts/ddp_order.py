"""Run under `torchrun --nproc_per_node 2`: train a tiny model on a known list and record, on each
process, the items its model actually received in training mode (tests/test_train.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from zsg_core.data import Record
from zsg_core.model import TunedLM
from zsg_core.packing import Pack
from zsg_core.train import TrainConfig, train


def records(n: int) -> list[Record]:
    return [Record(f"r{i:03d}", f"t{i % 5}", [{"role": "user", "content": f"Item {i}: repeat the number {i}."},
                                             {"role": "assistant", "content": f"{i}"}]) for i in range(n)]


def main(out: Path, frozen: int) -> None:
    from zsg_core.model import process_state

    state = process_state()
    items = records(40)
    lm = TunedLM("tiny-llama", frozen_layers=frozen, hidden_cache=out / "hidden")
    # identify each item of a packed row by the labels it is trained to predict (with a frozen
    # bottom the row's input is cached hidden states, not ids)
    by_targets = {tuple(it.targets.tolist()): it.id for it in lm.items(items)}
    seen: list[str] = []
    lm.loss.register_forward_pre_hook(
        lambda m, a: seen.extend(by_targets[t] for t in Pack.item_targets(a)) if m.training else None)
    result = train(lm, items, items[:4], TrainConfig(lr=1e-3, batch_size=4, max_steps=7, eval_steps=(0, 7)),
                   log=lambda s: None)
    (out / f"rank{state.process_index}.json").write_text(json.dumps(seen))
    if state.is_main_process:
        result.batches.to_json(out / "batches.json", orient="records")
        result.eval_loss.to_json(out / "eval.json", orient="records")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
