"""Held-out loss, generation and scores, on a tiny random Llama and the real SmolLM2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zsg_core.data import Record
from zsg_core.metrics import (
    generate,
    heldout_loss,
    normalize_answer,
    reward_scores,
    rouge_em,
)
from zsg_core.model import TunedLM
from zsg_core.prompt import IGNORE, encode

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`


def _rec(i: int, q: str, a: str, task: str = "t") -> Record:
    return Record(f"r{i}", task, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])


RECORDS = [_rec(0, "Add 2 and 3.", "5"), _rec(1, "Write a long sentence about the sea and the sky above it.",
                                             "The sea is wide and the sky is high above it all.", "u"),
           _rec(2, "Name a colour.", "Blue"), _rec(3, "Reverse [1, 2, 3].", "[3, 2, 1]", "u")]


def test_heldout_loss_is_the_per_instance_response_loss(smol_tokenizer, tmp_path):
    lm = TunedLM("tiny-llama", autocast=False, hidden_cache=tmp_path)
    table = heldout_loss(lm, RECORDS)
    assert list(table.id) == ["r0", "r1", "r2", "r3"] and list(table.task) == ["t", "u", "t", "u"]
    for rec, row in zip(RECORDS, table.itertuples()):
        ids, labels = encode(rec, smol_tokenizer)
        # the model's own loss on one unpadded instance: mean CE over labelled tokens after the shift
        ref = lm.model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()
        assert row.loss == pytest.approx(ref, rel=1e-4)
        assert row.tokens == sum(1 for l in labels[1:] if l != IGNORE)
        # the EOS's own CE: the model's logits at the position before the last label
        assert labels[-1] == smol_tokenizer.eos_token_id
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, -2].float()
        eos = torch.nn.functional.cross_entropy(logits[None], torch.tensor([labels[-1]])).item()
        assert row.eos_loss == pytest.approx(eos, rel=1e-4)
    # packed with the others or alone, the same EOS losses (an item's last label found in any row)
    alone = [heldout_loss(lm, [r]).eos_loss.iloc[0] for r in RECORDS]
    assert table.eos_loss.tolist() == pytest.approx(alone, rel=1e-5)


def test_real_model_loss_prefers_the_right_answer(tmp_path):
    lm = TunedLM("smollm2-135m", hidden_cache=tmp_path)
    right = _rec(0, "What is the capital of France?", "The capital of France is Paris.")
    wrong = _rec(1, "What is the capital of France?", "The capital of France is Banana.")
    losses = heldout_loss(lm, [right, wrong]).loss
    assert losses[0] < losses[1]
    prompts = ["What is the capital of France?", "Say the word 'hello'. Now say it in French, one word only."]
    batched = generate(lm.model, lm.tokenizer, prompts, max_new_tokens=12)
    single = [generate(lm.model, lm.tokenizer, [p], max_new_tokens=12)[0] for p in prompts]
    assert "Paris" in batched[0] and batched == single  # left padding does not change greedy output


def test_generation_batches_by_length_and_answers_in_the_order_given(tiny_llama, smol_tokenizer):
    """Prompts run shortest first in batches; the answers come back in the prompts' order and
    equal each prompt generated alone (greedy), however the batches fall."""
    prompts = [("word " * n).strip() for n in (30, 2, 17, 5, 40, 1, 9)]
    alone = [generate(tiny_llama, smol_tokenizer, [p], max_new_tokens=5)[0] for p in prompts]
    assert generate(tiny_llama, smol_tokenizer, prompts, max_new_tokens=5) == alone
    assert generate(tiny_llama, smol_tokenizer, prompts, max_new_tokens=5, batch_size=3, prompt_tokens=60) == alone


def test_generation_is_reproducible_and_leaves_the_global_rng_alone(tiny_llama, smol_tokenizer):
    prompts = ["Hello", "A longer prompt than the first one"]
    g1 = generate(tiny_llama, smol_tokenizer, prompts, max_new_tokens=6)
    assert g1 == generate(tiny_llama, smol_tokenizer, prompts, max_new_tokens=6)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    s1 = generate(tiny_llama, smol_tokenizer, prompts, max_new_tokens=6, protocol="paper", seed=7)
    assert torch.rand(1) == before  # the caller's random stream is untouched
    assert s1 == generate(tiny_llama, smol_tokenizer, prompts, max_new_tokens=6, protocol="paper", seed=7)
    with pytest.raises(ValueError, match="unknown generation protocol"):
        generate(tiny_llama, smol_tokenizer, prompts, protocol="beam")


def test_rouge_and_exact_match():
    s = rouge_em("The cat sat.", ["the cat sat", "a dog"])
    assert s == {"rouge1": 100.0, "rougeL": 100.0, "exact_match": 100.0}
    s = rouge_em("runs fast", ["running fast"])  # Porter stemming: runs ~ running
    assert s["rouge1"] == 100.0 and s["exact_match"] == 0.0
    s = rouge_em("blue sky", ["green grass", "the blue sea"])  # the best reference counts
    assert s["rouge1"] == pytest.approx(100 * 2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert normalize_answer("  The  Answer: 42! ") == "the answer 42"  # articles are kept
    with pytest.raises(ValueError, match="at least one reference"):
        rouge_em("x", [])


def test_reward_scores_with_a_tiny_reward_model(tiny_reward_model):
    rm = tiny_reward_model
    scores = reward_scores(str(rm), ["Q1", "A longer question"], ["yes", "a longer answer"])
    assert scores.shape == (2,) and np.isfinite(scores).all() and scores[0] != scores[1]
    again = reward_scores(str(rm), ["Q1", "A longer question"], ["yes", "a longer answer"])
    assert np.allclose(scores, again)
    alone = reward_scores(str(rm), ["Q1"], ["yes"], batch_size=1)
    assert np.allclose(alone[0], scores[0], atol=1e-5)  # padding changes nothing
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward_scores(str(rm), ["a", "b"], ["c"])
