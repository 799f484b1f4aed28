"""Held-out metrics (paper.md 2.4-2.6): per-instance loss, generation scores, reward-model scores.

- `heldout_loss`: teacher-forced mean cross-entropy over each instance's response tokens + EOS,
  in the training format (`prompt.encode`), one row per instance with its task, so the micro
  average and per-task curves come from the same table.
- `generate`: greedy decoding (deterministic), or the paper's sampled protocol (nucleus p=0.9,
  temperature 0.9, repetition penalty 1.2) to show where its checkpoint-to-checkpoint noise came
  from.
- `rouge_em`: ROUGE-1 / ROUGE-L F (rouge-score, Porter stemming) and SQuAD-style exact match,
  each the max over all references, x100 as the paper reports them.
- `reward_scores`: any local AutoModelForSequenceClassification reward model on
  "Human: {prompt}\\n\\nAssistant: {completion}". None ships on a registry here, so nothing calls it
  by default; no number stands in for a reward model that did not run.
"""
from __future__ import annotations

import re
import string
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import torch

from .data import Record
from .model import TunedLM
from .prompt import encode_prompt


def _pad_batch(rows: list[list[int]], pad_id: int, side: Literal["left", "right"] = "right") -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, sl] = torch.tensor(r)
        mask[i, sl] = 1
    return ids, mask


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def heldout_loss(lm: "TunedLM", records: Sequence[Record], items: Sequence | None = None) -> pd.DataFrame:
    """Per-instance held-out loss: columns id, task, loss (mean CE over response + EOS), tokens
    (their count) and eos_loss (the CE of the EOS alone: where the answer stops).

    Each instance runs alone with no padding (see zsg_core.model), so its loss never depends on
    what it was batched with. `items` are `lm.items(records)` when the caller already has them.
    """
    items = lm.items(records) if items is None else items
    losses = lm.item_losses(items)
    return pd.DataFrame({"id": [r.id for r in records], "task": [r.task for r in records],
                         "loss": [l for l, _, _ in losses], "tokens": [n for _, n, _ in losses],
                         "eos_loss": [e for _, _, e in losses]})


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 128,
             protocol: Literal["greedy", "paper"] = "greedy", seed: int = 0, batch_size: int = 32,
             prompt_tokens: int = 4096) -> list[str]:
    """Completions for single-turn prompts in the training format, stopped at EOS, in the order given.

    "greedy" is deterministic. "paper" samples as the paper's gen_on_*.py did: top_p 0.9,
    temperature 0.9, repetition_penalty 1.2 (seeded here; the paper's was not). Prompts run
    shortest first in left-padded batches of at most `batch_size` prompts and `prompt_tokens`
    padded prompt tokens: similar lengths waste little on padding, and large batches take few
    decoding loops (each a pass through every layer, whatever the batch).
    """
    if protocol not in ("greedy", "paper"):
        raise ValueError(f"unknown generation protocol {protocol!r}; use 'greedy' or 'paper'")
    sampling = dict(do_sample=True, top_p=0.9, top_k=0, temperature=0.9, repetition_penalty=1.2) \
        if protocol == "paper" else dict(do_sample=False)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    encoded = [encode_prompt(p, tokenizer) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), i))
    batches: list[list[int]] = []
    for i in order:  # the longest prompt of a batch is its last: it sets the padded width
        if not batches or len(batches[-1]) == batch_size or (len(batches[-1]) + 1) * len(encoded[i]) > prompt_tokens:
            batches.append([])
        batches[-1].append(i)
    out: dict[int, str] = {}
    try:
        for batch in batches:
            ids, mask = _pad_batch([encoded[i] for i in batch], pad_id(tokenizer), side="left")  # decoder-only: pad left
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=pad_id(tokenizer), **sampling)
            out.update(zip(batch, tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)))
    finally:
        torch.random.set_rng_state(generator_state)
        model.train(was_training)
    return [out[i].strip() for i in range(len(prompts))]


def normalize_answer(text: str) -> str:
    """The paper's exact-match normalisation: lowercase, drop punctuation, collapse whitespace
    (SQuAD-style, but articles are kept, as in compute_metrics.py)."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).strip()


_SCORER = None


def rouge_em(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1, ROUGE-L (F-measure, stemming on) and exact match, max over references, x100."""
    global _SCORER
    if not references:
        raise ValueError("rouge_em needs at least one reference")
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    scores = [_SCORER.score(ref, prediction) for ref in references]
    return {
        "rouge1": 100 * max(s["rouge1"].fmeasure for s in scores),
        "rougeL": 100 * max(s["rougeL"].fmeasure for s in scores),
        "exact_match": 100.0 * any(normalize_answer(prediction) == normalize_answer(r) for r in references),
    }


@torch.no_grad()
def reward_scores(reward_model_path: str, prompts: Sequence[str], completions: Sequence[str],
                  max_len: int = 1024, batch_size: int = 8) -> np.ndarray:
    """Scalar rewards of a local sequence-classification reward model (one logit per input), on
    the paper's "Human: {prompt}\\n\\nAssistant: {completion}" text (eval_by_rm.py)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    tokenizer = AutoTokenizer.from_pretrained(reward_model_path)
    model = AutoModelForSequenceClassification.from_pretrained(reward_model_path).eval()
    if model.config.num_labels != 1:
        raise ValueError(f"{reward_model_path} has {model.config.num_labels} labels; a reward model has 1")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    texts = [f"Human: {p}\n\nAssistant: {c}" for p, c in zip(prompts, completions)]
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start: start + batch_size], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_len)
        out.append(model(**enc).logits[:, 0].float().numpy())
    return np.concatenate(out) if out else np.zeros(0)
