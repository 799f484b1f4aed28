"""The paper's format and loss mask, checked on the real SmolLM2 tokenizer."""
from __future__ import annotations

import pytest

from zsg_core.data import DataError, Record
from zsg_core.prompt import IGNORE, encode, encode_prompt


def _conv(*turns: str) -> Record:
    roles = ["user", "assistant"] * len(turns)
    return Record("x", "t", [{"role": r, "content": c} for r, c in zip(roles, turns)])


def test_only_response_and_eos_are_labelled(smol_tokenizer):
    tok = smol_tokenizer
    rec = _conv("What is 2 + 2?", "The answer is 4.")
    ids, labels = encode(rec, tok)
    assert len(ids) == len(labels) and ids[0] != tok.bos_token_id  # SmolLM2 adds no BOS of its own
    supervised = [t for t, l in zip(ids, labels) if l != IGNORE]
    assert [l for l in labels if l != IGNORE] == supervised
    assert tok.decode(supervised) == "The answer is 4." + tok.eos_token
    assert tok.decode(ids) == "User: What is 2 + 2?\nAssistant: The answer is 4." + tok.eos_token


def test_multi_turn_labels_every_assistant_turn(smol_tokenizer):
    tok = smol_tokenizer
    ids, labels = encode(_conv("Hi", "Hello there", "Count to three", "one two three"), tok)
    supervised = tok.decode([t for t, l in zip(ids, labels) if l != IGNORE])
    assert supervised == "Hello there" + tok.eos_token + "one two three" + tok.eos_token
    assert "\nUser: Count to three\nAssistant: " in tok.decode(ids)


def test_over_long_instance_is_an_error(smol_tokenizer):
    rec = _conv("word " * 300, "ok")
    with pytest.raises(DataError, match=r"record 'x' \(task 't'\) is \d+ tokens, over max_len 64"):
        encode(rec, smol_tokenizer, max_len=64)


def test_generation_prompt_is_the_training_prefix(smol_tokenizer):
    rec = _conv("Name a colour.", "Red")
    ids, labels = encode(rec, smol_tokenizer)
    prefix = encode_prompt("Name a colour.", smol_tokenizer)
    first_label = next(i for i, l in enumerate(labels) if l != IGNORE)
    assert ids[:first_label] == prefix


def test_bos_follows_the_tokenizer(smol_tokenizer):
    """A tokenizer that adds BOS itself (Llama, Gemma) gets the paper's leading <s>."""
    class WithBos:
        bos_token_id, eos_token_id = 7, 8

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": ([7] if add_special_tokens else []) + [ord(c) for c in text]}

    ids, labels = encode(_conv("q", "a"), WithBos())
    assert ids[0] == 7 and labels[0] == IGNORE and ids[-1] == 8 and labels[-2:] == [ord("a"), 8]
