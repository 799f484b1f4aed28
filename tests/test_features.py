"""The LM features (hidden states, projected gradients): exact against a one-item computation,
cached, and wired into the arrangements and a run's identity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zsg_core import features
from zsg_core.arrange import arrange_records
from zsg_core.data import DataError, Record
from zsg_core.features import (
    LMSource,
    compute,
    pooled_hidden,
    projected_gradients,
    projections,
    trained_linears,
)
from zsg_core.model import TunedLM
from zsg_core.packing import lay_out

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`

DEFINITION = "Answer the question below in one word, using only lowercase letters and no punctuation. "  # > 16 tokens


def _rec(i: int, q: str, a: str, task: str = "t") -> Record:
    return Record(f"r{i}", task, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])


# items of one task share a long definition: packing would share it, gradients must not
RECORDS = [_rec(0, DEFINITION + "What colour is the sky?", "blue"),
           _rec(1, DEFINITION + "What do cows drink?", "water, mostly"),
           _rec(2, "Write a sentence about the sea.", "The sea is wide and deep.", "u"),
           _rec(3, "Add 2 and 3.", "5", "v"),
           _rec(4, DEFINITION + "Which animal barks?", "dog", "t")]
TEST = [_rec(10, "Name a fruit.", "apple", "w"), _rec(11, DEFINITION + "What is frozen water?", "ice", "x")]


def test_projected_gradients_equal_the_projection_of_each_items_own_gradient(tmp_path):
    lm = TunedLM("tiny-llama", frozen_layers=2, autocast=False, hidden_cache=tmp_path)
    items = lm.items(RECORDS)
    got = projected_gradients(lm, items, dim=512, tokens_per_row=10_000)  # every item in one packed row
    proj = projections(lm, dim=512)
    layers = trained_linears(lm)
    assert len(layers) == 2 * 7 and got.shape == (len(items), len(layers) * proj[layers[0][0]][0].shape[0] ** 2)
    for row, item in zip(got, items):  # each item alone, its exact weight gradient, projected by hand
        lm.model.zero_grad(set_to_none=True)
        sums, counts, _ = lm.loss(*lay_out([item], [lm.inputs(item)]).args())
        (sums[0] / counts[0]).backward()
        expected = torch.cat([(proj[name][0] @ m.weight.grad @ proj[name][1].T).flatten() for name, m in layers])
        assert np.allclose(row, expected.numpy(), rtol=1e-3, atol=1e-5 * float(expected.abs().max()))  # fp32 sums
    assert not np.allclose(got[0], got[1])


@pytest.mark.parametrize("frozen", [0, 2])
def test_pooled_hidden_is_the_mean_of_the_last_layer_over_the_item(tmp_path, frozen):
    lm = TunedLM("tiny-llama", frozen_layers=frozen, autocast=False, hidden_cache=tmp_path)
    items = lm.items(RECORDS)
    pooled = pooled_hidden(lm, items)
    prompt = pooled_hidden(lm, items, prompt_only=True)
    whole = TunedLM("tiny-llama", autocast=False, hidden_cache=tmp_path).model.eval()
    for item, row, p in zip(items, pooled, prompt):
        with torch.no_grad():
            states = whole.model(input_ids=item.ids[None]).last_hidden_state[0]
        first_answer = int((item.labels != -100).nonzero()[0])
        tolerance = 1e-5 if frozen == 0 else 2e-2  # the cache stores the cut in fp16
        assert np.allclose(row, states.mean(0).numpy(), atol=tolerance)
        assert np.allclose(p, states[:first_answer].mean(0).numpy(), atol=tolerance)


@pytest.mark.parametrize("kind", ["hidden", "gradient"])
def test_features_are_normalised_cached_and_see_the_prompt_only_when_asked(tmp_path, monkeypatch, kind):
    monkeypatch.setattr("zsg_core.model.cache_dir", lambda: tmp_path)  # the tiny model's bottom outputs
    source = LMSource("tiny-llama", frozen_layers=2, precision="fp32", batch_size=2)
    before = features.seconds_computing().get(kind, 0.0)
    x, t = compute(RECORDS, TEST, kind, source=source, cache=tmp_path)
    spent = features.seconds_computing()[kind]
    assert spent > before  # what a run's manifest records as its features' seconds
    assert x.shape[0] == len(RECORDS) and t.shape[0] == len(TEST) and x.shape[1] == t.shape[1]
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    _, prompt_only = compute(RECORDS, TEST, kind, source=source, cache=tmp_path, test_view="prompt-only")
    assert not np.allclose(t, prompt_only)
    assert features.seconds_computing()[kind] == spent  # the pool was cached: only the held-out view was computed
    assert features.seconds_computing()[f"{kind} (held-out only)"] > 0

    def computed(*a, **k):
        raise AssertionError("a second call must read its vectors back")
    monkeypatch.setattr(features, "pooled_hidden", computed)
    monkeypatch.setattr(features, "projected_gradients", computed)
    spent = features.seconds_computing()[kind]
    again = compute(RECORDS, TEST, kind, source=source, cache=tmp_path)
    assert np.array_equal(again[0], x) and np.array_equal(again[1], t)
    assert features.seconds_computing()[kind] == spent  # cached vectors cost nothing there
    other = compute(RECORDS, TEST, kind, source=source, cache=tmp_path, test_view="prompt-only")
    assert np.array_equal(other[1], prompt_only)


def test_hidden_features_are_centred_on_the_training_pool(tmp_path, monkeypatch):
    monkeypatch.setattr("zsg_core.model.cache_dir", lambda: tmp_path)
    source = LMSource("tiny-llama", precision="fp32")
    x, _ = compute(RECORDS, TEST, "hidden", source=source, cache=tmp_path)
    raw = pooled_hidden(TunedLM("tiny-llama", autocast=False, hidden_cache=tmp_path), TunedLM(
        "tiny-llama", autocast=False, hidden_cache=tmp_path).items(RECORDS))
    centred = raw - raw.mean(0)
    assert np.allclose(x, centred / np.linalg.norm(centred, axis=1, keepdims=True), atol=1e-5)


def test_bad_feature_requests_are_named():
    with pytest.raises(DataError, match="unknown feature kind 'grads'"):
        compute(RECORDS, TEST, "grads")
    with pytest.raises(DataError, match="unknown test view"):
        compute(RECORDS, TEST, "minilm", test_view="labels")
    with pytest.raises(DataError, match="need the LM"):
        compute(RECORDS, TEST, "hidden")
    with pytest.raises(DataError, match="non-empty"):
        compute([], TEST, "hidden", source=LMSource("tiny-llama"))


def test_arrangements_and_runs_take_a_feature_kind(tmp_path, monkeypatch):
    from zsg_core.config import run_config

    monkeypatch.setattr(features, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr("zsg_core.model.cache_dir", lambda: tmp_path)
    source = LMSource("tiny-llama", precision="fp32")
    hidden_nft = arrange_records(RECORDS, TEST, "nft", features="hidden", source=source)
    order = hidden_nft.order
    assert sorted(order) == list(range(len(RECORDS)))
    # the WSD weight and its rule are recorded, positive and finite whatever the features (issue 32)
    summary = hidden_nft.summary()
    assert summary["wsd_weight_rule"] in ("mean ratio", "spread ratio", "one term constant")
    assert 0 < summary["wsd_w_avg"] < float("inf")
    assert "wsd_w_avg" not in arrange_records(RECORDS, TEST, "cluster").summary()  # no WSD, no weight
    assert arrange_records(RECORDS, TEST, "fft", features="hidden", source=source).order == order[::-1]
    assert order != arrange_records(RECORDS, TEST, "nft").order or order != arrange_records(
        RECORDS, TEST, "nft", features="gradient", source=source).order  # the kinds do not all agree
    default = run_config(arrangement="nft")
    assert "features" not in default.to_dict()  # a stored run's key is unchanged by the new parameter
    hidden = run_config(arrangement="nft", features="hidden")
    assert hidden.key() != default.key() and hidden.to_dict()["features"] == "hidden"
    assert run_config(arrangement="random", features="gradient").key() == run_config(arrangement="random").key()
    with pytest.raises(DataError, match="unknown feature kind"):
        run_config(arrangement="nft", features="grad")


def test_the_prefix_measures_take_a_feature_kind(tmp_path, monkeypatch):
    from zsg_core import predict

    monkeypatch.setattr(features, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr("zsg_core.model.cache_dir", lambda: tmp_path)
    source = LMSource("tiny-llama", precision="fp32")
    ids = [r.id for r in RECORDS[:4]]
    by_id = {r.id: r for r in RECORDS}
    tables = {kind: predict.prefix_table({("fwd", 0): ids}, by_id, TEST, steps=[1, 2], batch_size=2, kl=False,
                                         features=kind, source=source) for kind in ("minilm", "hidden")}
    values = {k: t[t.measure == "Cosine-Avg"].sort_values(["task", "step"]).value.to_numpy() for k, t in tables.items()}
    assert len(values["hidden"]) == len(values["minilm"]) == 4 and not np.allclose(values["hidden"], values["minilm"])


def test_the_cost_of_each_kind_is_measured_in_a_fresh_store(tmp_path, monkeypatch):
    monkeypatch.setattr("zsg_core.model.cache_dir", lambda: tmp_path)
    monkeypatch.setattr(features, "cache_dir", lambda: tmp_path)
    table = features.cost(RECORDS, TEST, ["hidden", "gradient"], LMSource("tiny-llama", precision="fp32", batch_size=2))
    assert table.kind.tolist() == ["hidden", "gradient"] and (table.seconds > 0).all()
    assert (table["bytes per instance"] > 0).all() and (table.instances == len(RECORDS) + len(TEST)).all()
    assert not list((tmp_path / "features").glob("*"))  # nothing left in the shared store


def test_a_self_answer_is_cut_to_fit_max_len(tmp_path):
    from zsg_core.prompt import encode

    lm = TunedLM("tiny-llama", autocast=False, hidden_cache=tmp_path)
    room = max(len(encode(r, lm.tokenizer)[0]) for r in TEST) + 2  # the references fit, a 64-token answer would not
    lm.max_len = room
    answered = features._self_answered(lm, TEST)
    assert all(len(encode(r, lm.tokenizer)[0]) <= room for r in answered)
    assert len(lm.items(answered)) == len(TEST) and any(r.response != t.response for r, t in zip(answered, TEST))


def test_the_prefix_measures_reuse_the_arrangements_gradients(tmp_path, monkeypatch):
    """Both take the whole training pool, so both warm up on the same random order of it: the
    vectors E3's measures read are the ones the orders were built from, computed once."""
    from zsg_core import predict

    monkeypatch.setattr(features, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr("zsg_core.model.cache_dir", lambda: tmp_path)
    source = LMSource("tiny-llama", precision="fp32")
    arrange_records(RECORDS, TEST, "nft", features="gradient", source=source)

    def computed_again(*args, **kwargs):
        raise AssertionError("the prefix measures computed gradients the arrangement had already cached")

    monkeypatch.setattr(features, "projected_gradients", computed_again)
    table = predict.prefix_table({("fwd", 0): [r.id for r in RECORDS[:4]]}, {r.id: r for r in RECORDS}, TEST,
                                 steps=[1, 2], batch_size=2, kl=False, features="gradient", source=source)
    assert not table.empty


@pytest.mark.parametrize("kind, warm_up_fits", [("hidden", True), ("gradient", True), ("gradient", False)])
def test_the_cost_splits_into_a_fixed_part_and_a_part_per_instance(monkeypatch, kind, warm_up_fits):
    """On a clock where computing n instances takes 3 s + 10 ms each, `cost` recovers both parts
    (the first call's extra second is not counted); when gradient's warm-up differs between the
    two samples it counts everything per instance instead of inventing a split."""
    import time

    clock = {"now": 0.0, "calls": 0}

    def fake_compute(sample, test, kind, **kwargs):
        clock["calls"] += 1
        clock["now"] += 3.0 + 0.01 * (len(sample) + len(test)) + (1.0 if clock["calls"] == 1 else 0.0)
        return None, None

    monkeypatch.setattr(features, "compute", fake_compute)
    monkeypatch.setattr(time, "perf_counter", lambda: clock["now"])
    train = RECORDS * 20  # 100 instances: the half holds 50
    source = LMSource("tiny-llama", batch_size=5 if warm_up_fits else 8)  # warm-up: 50 or 80 instances
    [row] = features.cost(train, TEST, [kind], source).to_dict("records")
    n = len(train) + len(TEST)
    assert row["seconds"] == pytest.approx(3.0 + 0.01 * n)
    if warm_up_fits:
        assert row["fixed seconds"] == pytest.approx(3.0) and row["seconds per 1,000"] == pytest.approx(10.0)
    else:
        assert row["fixed seconds"] == 0 and row["seconds per 1,000"] == pytest.approx((3.0 + 0.01 * n) / n * 1000)
    assert features.cost_of(row, n) == pytest.approx(row["seconds"])
