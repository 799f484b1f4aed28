"""The frozen-bottom split: bottom + top reproduce the whole model, the cache is keyed by content."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zsg_core.data import Record
from zsg_core.metrics import heldout_loss
from zsg_core.assets import AssetError, model_path
from zsg_core.model import ModelError, TunedLM


def _rec(i: int, q: str, a: str) -> Record:
    return Record(f"r{i}", "t", [{"role": "user", "content": q}, {"role": "assistant", "content": a}])


RECORDS = [_rec(0, "Add 2 and 3.", "5"), _rec(1, "Write a sentence about the sea.", "The sea is wide and deep."),
           _rec(2, "Name a colour.", "Blue")]


@pytest.mark.parametrize("frozen", [1, 2, 3])
def test_frozen_bottom_plus_top_is_the_whole_model(frozen, tmp_path):
    whole = heldout_loss(TunedLM("tiny-llama", autocast=False, hidden_cache=tmp_path), RECORDS)
    split_lm = TunedLM("tiny-llama", frozen_layers=frozen, autocast=False, hidden_cache=tmp_path)
    split = heldout_loss(split_lm, RECORDS)
    assert np.allclose(split.loss, whole.loss, atol=2e-3)  # fp16 storage of the cut
    assert len(list((tmp_path).rglob("*.safetensors"))) == len(RECORDS)  # one file per instance
    trained = {n for n, p in split_lm.model.named_parameters() if p.requires_grad}
    assert trained and all(any(f"layers.{i}." in n for i in range(frozen, 4)) for n in trained)
    again = TunedLM("tiny-llama", frozen_layers=frozen, autocast=False, hidden_cache=tmp_path)
    assert again.cache_bottom(again.items(RECORDS)) == 0  # read back, not recomputed


def test_full_finetuning_trains_every_parameter(tmp_path):
    lm = TunedLM("tiny-llama", hidden_cache=tmp_path)
    assert all(p.requires_grad for p in lm.model.parameters())


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_cache_file_is_named_dropped_and_recomputed(tmp_path, damage, flip_byte):
    """A truncated entry, or one byte flipped in its values (which a plain tensor file would serve
    silently), is named, removed and computed again to the same values."""
    lm = TunedLM("tiny-llama", frozen_layers=2, autocast=False, hidden_cache=tmp_path)
    items = lm.items(RECORDS)
    lm.cache_bottom(items)
    victim = sorted(tmp_path.rglob("*.safetensors"))[0]
    good = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(good[: len(good) // 2])
    else:
        flip_byte(victim, -5)  # inside the stored values
    fresh = TunedLM("tiny-llama", frozen_layers=2, autocast=False, hidden_cache=tmp_path)
    messages: list[str] = []
    assert fresh.cache_bottom(fresh.items(RECORDS), log=messages.append) == 1
    assert len(messages) == 1 and f"frozen-layer cache entry {victim} is damaged" in messages[0]
    assert victim.read_bytes() == good


def test_bad_models_are_named(tmp_path):
    with pytest.raises(ModelError, match="frozen_layers"):
        TunedLM("tiny-llama", frozen_layers=4, hidden_cache=tmp_path)
    with pytest.raises(AssetError, match="neither a prepared asset"):
        model_path(str(tmp_path / "nowhere"))


def test_real_model_split_matches_whole(tmp_path):
    lm = TunedLM("smollm2-135m", frozen_layers=24, autocast=False, hidden_cache=tmp_path)
    assert lm.check_split(lm.items(RECORDS)[1]) < 0.01
    whole = TunedLM("smollm2-135m", autocast=False, hidden_cache=tmp_path)
    a, b = heldout_loss(lm, RECORDS).loss, heldout_loss(whole, RECORDS).loss
    assert np.allclose(a, b, atol=5e-3), (list(a), list(b))


def test_batched_evaluation_equals_one_by_one(tmp_path):
    for frozen in (0, 2):
        lm = TunedLM("tiny-llama", frozen_layers=frozen, autocast=False, hidden_cache=tmp_path)
        items = lm.items(RECORDS * 3)
        batched, single = lm.item_losses(items, batch_size=4), lm.item_losses(items, batch_size=1)
        assert [n for _, n in batched] == [n for _, n in single]
        assert np.allclose([l for l, _ in batched], [l for l, _ in single], atol=1e-4)


def test_outputs_under_bf16_and_fp32_are_cached_apart(tmp_path):
    """The same instance's bottom output differs between bf16 autocast and fp32: each precision
    has its own folder and entries, and switching precision never serves the other's values."""
    lm = TunedLM("tiny-llama", frozen_layers=2, hidden_cache=tmp_path)
    item = lm.items(RECORDS)[:1]
    assert lm.cache_bottom(item) == 1 and lm.cache_folder.name.endswith("-f2-bf16")
    bf16 = lm.inputs(item[0])
    lm.autocast = False
    assert lm.cache_folder.name.endswith("-f2-fp32") and lm.cache_bottom(item) == 1  # computed, not reused
    fp32 = lm.inputs(item[0])
    assert not torch.equal(bf16, fp32)
    fresh = TunedLM("tiny-llama", frozen_layers=2, autocast=False, hidden_cache=tmp_path)
    assert fresh.cache_bottom(item) == 0 and torch.equal(fresh.inputs(item[0]), fp32)


def test_the_split_check_computes_its_own_bottom_and_ignores_the_cache(tmp_path):
    """A cached entry was computed under bf16 autocast; the check of the cut must not depend on it."""
    lm = TunedLM("tiny-llama", frozen_layers=2, hidden_cache=tmp_path)  # autocast on, as in training
    item = lm.items(RECORDS)[1]
    lm.cache_bottom([item])
    entry = ("bf16", item.key)
    lm._hidden[entry] = torch.zeros_like(lm._hidden[entry])  # a cache entry far from the truth
    assert lm.check_split(item) < 0.01
