"""The frozen-bottom split: bottom + top reproduce the whole model, the cache is keyed by content."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zsg_core import attention, cast_once
from zsg_core.assets import AssetError, model_path
from zsg_core.data import Record
from zsg_core.metrics import heldout_loss
from zsg_core.model import ModelError, TunedLM

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`


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
    assert len(messages) == 1 and f"1 damaged entry removed and computed again (first: {victim.name}" in messages[0]
    assert victim.read_bytes() == good


def test_many_damaged_cache_entries_are_one_line(tmp_path):
    """A damaged disk can mean hundreds of entries: one summary line, not one line each."""
    lm = TunedLM("tiny-llama", frozen_layers=2, autocast=False, hidden_cache=tmp_path)
    lm.cache_bottom(lm.items(LONGER))
    entries = sorted(tmp_path.rglob("*.safetensors"))
    for victim in entries:
        victim.write_bytes(victim.read_bytes()[:40])
    fresh = TunedLM("tiny-llama", frozen_layers=2, autocast=False, hidden_cache=tmp_path)
    messages: list[str] = []
    assert fresh.cache_bottom(fresh.items(LONGER), log=messages.append) == len(entries) > 5
    assert len(messages) == 1 and f"{len(entries)} damaged entries removed" in messages[0], messages


def test_bad_models_are_named(tmp_path):
    with pytest.raises(ModelError, match="frozen_layers"):
        TunedLM("tiny-llama", frozen_layers=4, hidden_cache=tmp_path)
    with pytest.raises(AssetError, match="neither a prepared asset"):
        model_path(str(tmp_path / "nowhere"))


def test_real_model_split_matches_whole(tmp_path):
    lm = TunedLM("smollm2-135m", frozen_layers=24, autocast=False, hidden_cache=tmp_path)
    assert lm.check(lm.items(RECORDS)) < 0.01
    whole = TunedLM("smollm2-135m", autocast=False, hidden_cache=tmp_path)
    a, b = heldout_loss(lm, RECORDS).loss, heldout_loss(whole, RECORDS).loss
    assert np.allclose(a, b, atol=5e-3), (list(a), list(b))


DEFINITION = ("Definition: In this task you are given a sentence about a river. Answer with the name of the "
              "river only, nothing else.\nInput: ")
LONGER = RECORDS + [_rec(3 + i, f"Write {i + 2} sentences about rivers, each on its own line.",
                          " ".join(["Rivers run to the sea and carry stones along."] * (i + 2))) for i in range(4)] \
    + [_rec(10 + i, DEFINITION + q, a) for i, (q, a) in enumerate(
        [("It flows through Cairo.", "The Nile"), ("Vienna and Budapest lie on it.", "The Danube"),
         ("It flows through Cairo and into the sea, past many fields and old towns.", "The Nile")])]


def _hf_loss(lm: TunedLM, item) -> float:
    """The item's loss from transformers' own forward (its sdpa attention and masks, no packing)."""
    return float(lm.model(input_ids=item.ids[None], labels=item.labels[None], use_cache=False).loss)


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gemma3"])
@pytest.mark.parametrize("frozen", [0, 2])
def test_packed_evaluation_equals_each_item_alone(model, frozen, tmp_path):
    """Items packed into long rows, sharing the prefixes they have in common, get the losses they
    get alone, and the losses transformers' own forward gives (Gemma 3: across its sliding window
    of 16 tokens, which these items and their shared prefix cross)."""
    lm = TunedLM(model, frozen_layers=frozen, autocast=False, hidden_cache=tmp_path)
    items = lm.items(LONGER * 2)
    assert max(len(it.ids) for it in items) > 16
    pack = lm.pack(items)  # the three instances of one "task" share their definition, computed once
    assert pack.inputs.shape[1] < sum(len(it.ids) for it in items) - 2 * 30
    packed, alone = lm.item_losses(items, tokens_per_row=4096), lm.item_losses(items, tokens_per_row=1)
    assert [n for _, n, _ in packed] == [n for _, n, _ in alone]
    assert np.allclose([v for v, _, _ in packed], [v for v, _, _ in alone], atol=1e-5)
    if frozen == 0:
        lm.model.eval()
        with torch.no_grad():
            reference = [_hf_loss(lm, it) for it in items]
        assert np.allclose([v for v, _, _ in packed], reference, atol=1e-4)


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gemma3"])
def test_a_packed_training_step_equals_one_item_at_a_time(model, tmp_path, monkeypatch):
    """One packed forward/backward of a batch gives the loss and the gradients of the old path:
    each item alone through transformers' forward, gradients accumulated with weight 1/labels.
    The packed step's attention is the hand-written span attention (every span of every layer)."""
    torch.manual_seed(0)
    lm = TunedLM(model, autocast=False, hidden_cache=tmp_path)
    items = lm.items(LONGER)
    params = lm.trainable_parameters()
    by_hand = []
    monkeypatch.setattr(attention._SpanAttention, "apply",
                        lambda *a, f=attention._SpanAttention.apply: by_hand.append(a[0].shape[2]) or f(*a))
    pack = lm.pack(items)
    sums, counts, _ = lm.loss(*pack.args())
    layers = len(lm.loss.top.layers)
    assert sum(by_hand) == (layers - 1) * pack.inputs.shape[1] + int((pack.targets != -100).sum())
    monkeypatch.undo()
    n_labels = int(counts.sum())
    (sums.sum() / n_labels).backward()
    packed_grads = [p.grad.clone() for p in params]
    lm.model.zero_grad(set_to_none=True)
    total = 0.0
    for it in items:
        n = int((it.labels[1:] != -100).sum())
        loss = lm.model(input_ids=it.ids[None], labels=it.labels[None], use_cache=False).loss * n
        (loss / n_labels).backward()
        total += float(loss.detach())
    assert float(sums.detach().sum()) == pytest.approx(total, rel=1e-5)
    for p, g in zip(params, packed_grads):
        assert torch.allclose(p.grad, g, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("mask", ["causal", "shared prefix", "label rows", "sliding window"])
def test_the_hand_written_span_attention_is_sdpas_forward_and_backward(mask):
    """`_SpanAttention` (training's attention on CPU) gives torch's sdpa outputs and gradients: to
    fp32 rounding in fp32, and in bf16 no further from the fp32 values than sdpa's own bf16 is."""
    torch.manual_seed(0)
    heads, n, shared, d = 3, 40, 12 if mask == "shared prefix" else 0, 16
    q_pos = torch.arange(shared, shared + n)
    if mask == "label rows":
        q_pos = q_pos[torch.tensor([3, 17, 18, 39])]
    k_pos = torch.arange(shared + n)
    allowed = k_pos[None] <= q_pos[:, None]
    if mask == "sliding window":
        allowed &= q_pos[:, None] - k_pos[None] < 8
    q0, k0, v0 = (torch.randn(1, heads, m, d) for m in (len(q_pos), shared + n, shared + n))
    grad_out = torch.randn(1, heads, len(q_pos), d)

    def run(attention, dtype):
        q, k, v = (t.detach().to(dtype, copy=True).requires_grad_() for t in (q0, k0, v0))
        out = attention(q, k, v)
        out.backward(grad_out.to(dtype))
        return [t.float() for t in (out, q.grad, k.grad, v.grad)]

    sdpa = lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=0.3)
    by_hand = lambda q, k, v: attention._SpanAttention.apply(q, k, v, allowed, 0.3)
    reference = run(sdpa, torch.float32)
    for got, want in zip(run(by_hand, torch.float32), reference):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    for got, theirs, want in zip(run(by_hand, torch.bfloat16), run(sdpa, torch.bfloat16), reference):
        assert (got - want).norm() <= 2 * (theirs - want).norm() + 1e-3 * want.norm()


def test_packed_attention_under_autocast_takes_mixed_dtypes_and_a_backward_called_outside_it():
    """As in a real layer under bf16 autocast, q and k arrive in fp32 (rotary embeddings) and v in
    bf16; the hand-written attention gets one dtype, as autocast gives sdpa, and its backward runs
    the same when called outside autocast (the gradient features do so): the values agree with
    fp32 sdpa as closely as bf16 sdpa's do."""
    torch.manual_seed(0)
    module = torch.nn.Module()
    spans = [(0, 9, 0, 0), (9, 30, 0, 0), (30, 42, 9, 30)]  # two items, the second's prefix shared
    q0, k0, v0 = (torch.randn(1, 2, 42, 8) for _ in range(3))
    grad_out = torch.randn(1, 42, 2, 8)

    def run(attention, autocast):
        q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = attention(q, k, v.to(torch.bfloat16) if autocast else v)
        return [t.float() for t in (out, *torch.autograd.grad(out, (q, k, v), grad_out.to(out.dtype)))]

    ours = lambda q, k, v: attention.packed_attention(module, q, k, v, None, scaling=0.4, zsg_spans=spans)[0]

    def theirs(q, k, v):  # sdpa item by item, as `packed_attention` without a backward would run it
        outs = []
        for start, end, ps, pe in spans:
            kk, vv = torch.cat([k[:, :, ps:pe], k[:, :, start:end]], 2), torch.cat([v[:, :, ps:pe], v[:, :, start:end]], 2)
            allowed = torch.arange(pe - ps + end - start)[None] <= torch.arange(pe - ps, pe - ps + end - start)[:, None]
            outs.append(torch.nn.functional.scaled_dot_product_attention(q[:, :, start:end], kk, vv, attn_mask=allowed,
                                                                         scale=0.4))
        return torch.cat(outs, 2).transpose(1, 2)

    reference = run(theirs, False)
    for got, want in zip(run(ours, False), reference):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    for got, bf16, want in zip(run(ours, True), run(theirs, True), reference):
        assert got.isfinite().all() and (got - want).norm() <= 2 * (bf16 - want).norm() + 1e-3 * want.norm()


def test_chosen_rows_come_back_in_the_dtype_attention_ran_in(monkeypatch):
    """Under CUDA's autocast sdpa computes in bf16 while the queries stay fp32 (rotary embeddings
    and norms upcast them): the chosen rows' outputs are laid out in bf16, as every other span's,
    not refused (an H200 run found it). Here sdpa is made to answer in bf16 on the CPU."""
    torch.manual_seed(0)
    module = torch.nn.Module()
    module.zsg_rows = torch.tensor([3, 8, 20])
    spans = [(0, 9, 0, 0), (9, 30, 0, 0)]
    q, k, v = (torch.randn(1, 2, 30, 8) for _ in range(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **kw: sdpa(*a, **kw).to(torch.bfloat16))
    out = attention.packed_attention(module, q, k, v, None, scaling=0.4, zsg_spans=spans)[0]
    monkeypatch.undo()
    full = attention.packed_attention(torch.nn.Module(), q, k, v, None, scaling=0.4, zsg_spans=spans)[0]
    assert out.dtype == torch.bfloat16 and out.shape == full.shape
    assert torch.allclose(out[:, [3, 8, 20]].float(), full[:, [3, 8, 20]], atol=2e-2)
    assert (out[:, [0, 1, 2, 4, 29]] == 0).all()  # the rows not asked for feed nothing


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gemma3"])
def test_the_last_layer_runs_only_where_a_label_is_predicted(model, tmp_path, monkeypatch):
    """The loss runs the last layer's query projection, attention queries, output projection and
    MLP at the label positions only (the losses and gradients above show it changes nothing);
    hidden states for features still get every position, and the layers below get every position
    in both."""
    lm = TunedLM(model, frozen_layers=1, autocast=False, hidden_cache=tmp_path)
    pack = lm.pack(lm.items(LONGER))
    layers = lm.loss.top.layers
    rows, zero_rows = {}, {}

    def record(name):
        def hook(module, inputs, output):
            rows[name] = inputs[0].shape[1]
            zero_rows[name] = int((output[0] == 0).all(-1).sum())
        return hook

    hooks = [m.register_forward_hook(record(name))
             for name, m in (("last mlp", layers[-1].mlp.down_proj), ("last q_proj", layers[-1].self_attn.q_proj),
                             ("last o_proj", layers[-1].self_attn.o_proj), ("mlp below", layers[-2].mlp.down_proj))]
    queries = []  # query positions each attention call computed, over all layers of one forward
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, *a, **kw: queries.append(q.shape[2]) or sdpa(q, *a, **kw))
    labelled = pack.targets != -100
    labels, positions = int(labelled.sum()), len(labelled)
    assert 0 < labels < positions and len(layers) >= 2
    with torch.no_grad():
        lm.loss(*pack.args())
        assert rows == {"last mlp": labels, "last q_proj": positions, "last o_proj": positions, "mlp below": positions}
        assert zero_rows == {"last mlp": 0, "last q_proj": positions - labels, "last o_proj": positions - labels,
                             "mlp below": 0}
        assert sum(queries) == (len(layers) - 1) * positions + labels
        queries.clear()
        lm.top_states(pack)
        assert rows == {"last mlp": positions, "last q_proj": positions, "last o_proj": positions, "mlp below": positions}
        assert zero_rows == {"last mlp": 0, "last q_proj": 0, "last o_proj": 0, "mlp below": 0}
        assert sum(queries) == len(layers) * positions
    for h in hooks:
        h.remove()


def test_a_residual_stream_beyond_fp16_is_cached_in_fp32(tmp_path):
    """Gemma 3's residual stream reaches ~1e5, past fp16's 65,504: its frozen-bottom outputs are
    stored in fp32 in a folder of their own, and nothing that does not fit is ever stored."""
    lm = TunedLM("tiny-llama", frozen_layers=2, autocast=False, hidden_cache=tmp_path)
    assert lm.cache_dtype == torch.float16 and not lm.cache_folder.name.endswith("stored-fp32")
    items = lm.items(LONGER)
    with torch.no_grad():  # values far beyond what fp16 can hold
        lm.model.model.embed_tokens.weight.mul_(1e8)
    with pytest.raises(ModelError, match="not finite stored as torch.float16"):
        lm.cache_bottom(items[:1])
    assert not list(lm.cache_folder.glob("*.safetensors"))
    lm.cache_dtype = lm._cache_dtype()
    assert lm.cache_dtype == torch.float32 and lm.cache_folder.name.endswith("stored-fp32")
    assert lm.cache_bottom(items) == len(items)
    assert all(torch.isfinite(lm.inputs(it)).all() for it in items)
    assert max(float(lm.inputs(it).abs().max()) for it in items) > 65504
    assert all(np.isfinite(v) for v, _, _ in lm.item_losses(items))


def test_the_start_up_check_fails_on_a_loss_that_is_not_finite(tmp_path):
    lm = TunedLM("tiny-llama", frozen_layers=2, autocast=False, hidden_cache=tmp_path)
    with torch.no_grad():
        lm.model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(ModelError, match="not finite"):
        lm.check(lm.items(LONGER))


def test_packing_under_bf16_stays_within_bf16_rounding_on_the_real_tokenizer(tmp_path):
    """Under bf16 autocast (what training uses where bf16 is native), packed and alone may round
    differently; they agree within bf16 tolerance, evaluation and frozen cache alike."""
    lm = TunedLM("tiny-llama", frozen_layers=2, autocast=True, hidden_cache=tmp_path / "packed")
    items = lm.items(LONGER)
    packed = lm.item_losses(items)
    alone_lm = TunedLM("tiny-llama", frozen_layers=2, autocast=True, hidden_cache=tmp_path / "alone")
    for it in items:  # each cache entry computed in a row of its own
        alone_lm.cache_bottom([it])
    alone = alone_lm.item_losses(items, tokens_per_row=1)
    assert np.allclose([v for v, _, _ in packed], [v for v, _, _ in alone], atol=2e-2)
    for it in items:
        assert torch.allclose(lm.inputs(it), alone_lm.inputs(it), atol=5e-2, rtol=2e-2)


def test_frozen_linear_weights_are_cast_once_with_identical_results(tmp_path):
    """Under bf16 autocast a frozen weight's bf16 copy is made once and reused; the output equals
    autocast's own cast bit for bit; a trained weight is never cached."""
    lm = TunedLM("tiny-llama", frozen_layers=2, hidden_cache=tmp_path)  # the cast happens under autocast below
    frozen = lm.model.model.layers[0].mlp.up_proj
    trained = lm.model.model.layers[3].mlp.up_proj
    x = torch.randn(5, frozen.in_features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, again = frozen(x), frozen(x)
        plain = torch.nn.functional.linear(x, frozen.weight)
        trained(x)
    assert torch.equal(ours, plain) and torch.equal(again, plain)
    assert "_bf16_cast" in frozen.__dict__ and "_bf16_cast" not in trained.__dict__
    stamp = frozen.__dict__["_bf16_cast"][0]
    with torch.no_grad():
        frozen.weight.mul_(2)  # changed in place: cast again, never served stale
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(frozen(x), torch.nn.functional.linear(x, frozen.weight))
    assert frozen.__dict__["_bf16_cast"][0] != stamp


def test_an_input_read_by_several_projections_is_cast_once_and_never_stale(tmp_path):
    """Under bf16 autocast, projections reading one unchanged input outside autograd share its
    bf16 copy (the results equal autocast's own, bit for bit); an input changed in place, or
    one that requires grad, is cast anew."""
    lm = TunedLM("tiny-llama", frozen_layers=2, hidden_cache=tmp_path)
    attention = lm.model.model.layers[0].self_attn
    x = torch.randn(5, attention.q_proj.in_features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k = attention.q_proj(x), attention.k_proj(x)
        shared = cast_once._last_input_cast[0][2]
        assert cast_once._input_in_bf16(x) is shared
        assert torch.equal(q, torch.nn.functional.linear(x, attention.q_proj.weight))
        assert torch.equal(k, torch.nn.functional.linear(x, attention.k_proj.weight))
        x.mul_(2)  # changed in place: cast again
        assert cast_once._input_in_bf16(x) is not shared
        assert torch.equal(attention.v_proj(x), torch.nn.functional.linear(x, attention.v_proj.weight))
        leaf = x.clone().requires_grad_()
        assert cast_once._input_in_bf16(leaf) is not cast_once._input_in_bf16(leaf)


def test_outputs_under_bf16_and_fp32_are_cached_apart(tmp_path):
    """The same instance's bottom output differs between bf16 autocast and fp32: each precision
    has its own folder and entries, and switching precision never serves the other's values."""
    lm = TunedLM("tiny-llama", frozen_layers=2, autocast=True, hidden_cache=tmp_path)
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
    lm = TunedLM("tiny-llama", frozen_layers=2, autocast=True, hidden_cache=tmp_path)  # bf16, as training here
    item = lm.items(RECORDS)[1]
    lm.cache_bottom([item])
    entry = ("bf16", item.key)
    lm._hidden[entry] = torch.zeros_like(lm._hidden[entry])  # a cache entry far from the truth
    assert lm.check([item]) < 0.01


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gemma3"])
def test_a_cache_entry_is_the_same_bits_whatever_filled_the_cache(model, tmp_path):
    """Three instances of one "task" share a 30-token definition. Filled all at once, or one
    instance at a time in reverse, or with other instances beside them, every entry is the same
    bits, and equal to the item's bottom computed alone (under bf16, where packing used to move
    the rounding), so a config's numbers never depend on what ran before it."""
    histories = {"together": [LONGER], "one at a time": [[r] for r in reversed(LONGER)],
                 "others first": [LONGER[3:7], RECORDS, LONGER]}
    entries = {}
    for name, batches in histories.items():
        lm = TunedLM(model, frozen_layers=2, autocast=True, hidden_cache=tmp_path / name)
        for batch in batches:
            lm.cache_bottom(lm.items(batch))
        entries[name] = {p.name: p.read_bytes() for p in (tmp_path / name).rglob("*.safetensors")}
    assert len(entries["together"]) == len(LONGER)
    assert entries["one at a time"] == entries["together"] == entries["others first"]
    lm = TunedLM(model, frozen_layers=2, autocast=True, hidden_cache=tmp_path / "together")
    for item in lm.items(LONGER):
        with torch.no_grad(), lm.precision():
            alone = lm.bottom(input_ids=item.ids[None], use_cache=False).last_hidden_state[0]
        assert torch.equal(lm.inputs(item).to(lm.cache_dtype), alone.to(lm.cache_dtype)), item.id
