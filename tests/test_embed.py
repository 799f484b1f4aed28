"""The MiniLM encoder: real embeddings, cached on disk so a second call encodes nothing."""
from __future__ import annotations

import numpy as np
import pytest

from zsg_core.data import DataError, Record
from zsg_core.embed import Encoder, embed_records, embed_text

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`


def _rec(q: str, a: str, *more: str) -> Record:
    turns = [q, a, *more]
    return Record(q[:8], "t", [{"role": ["user", "assistant"][i % 2], "content": c} for i, c in enumerate(turns)])


def test_embed_text_modes():
    r = _rec("Q1", "A1", "Q2", "A2")
    assert embed_text(r, "all") == "Q1 A1 Q2 A2"
    assert embed_text(r, "first-turn") == "Q1 A1"
    with pytest.raises(ValueError, match="unknown embed text mode 'both'"):
        embed_text(r, "both")


def test_real_embeddings_and_cache(tmp_path):
    texts = ["The cat sat on the mat.", "A kitten is sitting on a rug.", "Quarterly tax filing deadlines.",
             "The cat sat on the mat."]
    enc = Encoder(cache=tmp_path)
    vecs = enc.encode(texts)
    assert vecs.shape == (4, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert enc.n_encoded == 3  # the duplicate text is encoded once
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2  # a real encoder: paraphrase closer than noise
    assert np.array_equal(vecs[0], vecs[3])
    again = enc.encode(texts[::-1])
    assert enc.n_encoded == 3 and np.array_equal(again, vecs[::-1])
    fresh = Encoder(cache=tmp_path)  # a new process reads the on-disk cache
    assert np.array_equal(fresh.encode(texts), vecs) and fresh.n_encoded == 0
    assert not list(tmp_path.rglob("*.tmp"))


def test_embed_records_uses_the_mode(tmp_path):
    enc = Encoder(cache=tmp_path)
    r = _rec("How do I boil an egg?", "Put it in boiling water for 8 minutes.", "And fry it?", "Use a pan.")
    both = embed_records([r, r], "all", enc)
    first = embed_records([r], "first-turn", enc)
    assert both.shape == (2, 384) and not np.allclose(both[0], first[0])
    assert np.allclose(first[0], enc.encode(["How do I boil an egg? Put it in boiling water for 8 minutes."])[0])


def test_the_2d_map_is_cached_and_a_damaged_copy_is_recomputed(tmp_path, monkeypatch, flip_byte):
    import numpy as np

    from zsg_core.embed import map_2d

    monkeypatch.setenv("ZSG_CACHE", str(tmp_path))
    x = np.random.default_rng(0).standard_normal((60, 8)).astype(np.float32)
    first = map_2d(x, n_neighbors=5)
    stored = list((tmp_path / "maps").glob("*.npz"))
    assert first.shape == (60, 2) and len(stored) == 1
    assert np.array_equal(map_2d(x, n_neighbors=5), first)  # read back
    stored[0].write_bytes(b"junk")
    assert np.allclose(map_2d(x, n_neighbors=5), first)  # recomputed, same seed, same map
    flip_byte(stored[0], len(stored[0].read_bytes()) // 3)  # inside the stored values: the zip's CRC finds it
    assert np.allclose(map_2d(x, n_neighbors=5), first)


def test_several_processes_give_the_same_vectors(tmp_path):
    """`processes=2` (sentence-transformers' multi-process pool, CPU processes here) encodes the
    same vectors as one process, and caches them the same way."""
    texts = [f"Instance {i}: name a river that flows through city number {i}." for i in range(12)]
    one = Encoder(cache=tmp_path / "one").encode(texts)
    pooled = Encoder(cache=tmp_path / "two", processes=2)
    two = pooled.encode(texts)
    assert pooled.n_encoded == 12 and np.allclose(one, two, atol=1e-5)
    with pytest.raises(Exception, match="processes"):
        Encoder(cache=tmp_path, processes=0)


def test_a_large_pool_is_stored_in_chunks_and_an_interruption_keeps_them(tmp_path, monkeypatch):
    import zsg_core.embed as embed

    monkeypatch.setattr(embed, "SHARD_TEXTS", 3)
    texts = [f"text number {i}" for i in range(8)]
    encoder = Encoder(cache=tmp_path)
    real, calls = encoder._encode, []

    def fails_on_the_third_chunk(chunk, pool):
        calls.append(len(chunk))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(chunk, pool)

    monkeypatch.setattr(encoder, "_encode", fails_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        encoder.encode(texts)
    assert len(list(encoder.folder.glob("shard-*.npz"))) == 2  # the two finished chunks are on disk
    again = Encoder(cache=tmp_path)
    vectors = again.encode(texts)
    assert again.n_encoded == 2 and vectors.shape == (8, 384)  # only the unfinished chunk is encoded


def test_bf16_vectors_are_unit_close_to_fp32_and_cached_apart(tmp_path):
    """Embedding in bf16 (`Encoder(precision="bf16")`, benchmarks/bench_embed_precision.py decides
    where it may be used): unit vectors close to fp32's, in a cache folder of their own."""
    texts = ["How deep do I plant tulips?", "A question about music, number 3?", "Translate: der Hund"]
    fp32, bf16 = Encoder(cache=tmp_path), Encoder(cache=tmp_path, precision="bf16")
    a, b = fp32.encode(texts), bf16.encode(texts)
    assert fp32.folder != bf16.folder and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-6)
    assert (a * b).sum(1).min() > 0.99 and not np.array_equal(a, b)
    with pytest.raises(DataError, match="precision must be one of fp32, bf16"):
        Encoder(cache=tmp_path, precision="fp16")
