"""The paper's conversation format and loss mask (paper.md section 2.2).

    <bos>User: {q}\nAssistant: {a}<eos>\nUser: {q2}\nAssistant: {a2}<eos>

(<bos> only for tokenizers that add one themselves.) Built segment by segment with `add_special_tokens=False`, exactly like the paper's
dataset_wrapper.py, so each segment's tokens are known: labels are -100 everywhere except the
assistant contents and the EOS closing each of them.
"""
from __future__ import annotations

from .data import DataError, Record

IGNORE = -100


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _bos(tokenizer) -> list[int]:
    """The BOS token if this tokenizer adds one itself (Llama, Gemma: the paper's `<s>`); none if
    it does not (SmolLM2, whose "BOS" is the chat marker <|im_start|>, which would derail it)."""
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and bos in tokenizer("", add_special_tokens=True)["input_ids"] else []


def encode(record: Record, tokenizer, max_len: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids and labels of a record; an error naming the record if it is longer than max_len.

    Over-long instances are refused rather than truncated: the paper's tail truncation silently
    drops response tokens, which changes what the loss measures. The split filters them first.
    """
    ids = _bos(tokenizer)
    labels: list[int] = [IGNORE] * len(ids)
    for i, m in enumerate(record.messages):
        if m["role"] == "user":
            seg = _ids(tokenizer, ("\n" if i else "") + "User: " + m["content"])
            ids += seg
            labels += [IGNORE] * len(seg)
        else:
            head = _ids(tokenizer, "\nAssistant: ")
            body = _ids(tokenizer, m["content"]) + [tokenizer.eos_token_id]
            ids += head + body
            labels += [IGNORE] * len(head) + body
    if max_len is not None and len(ids) > max_len:
        raise DataError(f"record {record.id!r} (task {record.task!r}) is {len(ids)} tokens, over max_len "
                        f"{max_len}; filter it out (the split does) or raise max_len")
    return ids, labels


def encoded_length(record: Record, tokenizer) -> int:
    return len(encode(record, tokenizer)[0])


def encode_prompt(prompt: str, tokenizer) -> list[int]:
    """Ids of a single-turn generation prompt, `<bos>User: {prompt}\nAssistant: `, with the same
    segments as `encode`, so generation sees exactly the prefix that training saw."""
    return _bos(tokenizer) + _ids(tokenizer, "User: " + prompt) + _ids(tokenizer, "\nAssistant: ")
