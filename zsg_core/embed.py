"""Sentence embeddings with the paper's encoder (all-MiniLM-L6-v2), cached on disk by text hash.

Encoding is slow on a CPU for the split's long texts (benchmarks/results/bench_embed_cpu.json;
several processes or GPUs: `processes`), so every text is encoded once per model, ever: vectors live in `$ZSG_CACHE/embeddings/<model>-<checksum of its weights>/` as .npz shards
(sha1 of the text -> float32 vector), each written atomically. A second call for the same texts
encodes nothing; vectors from other weights (a repaired or replaced asset) are never served. A
damaged shard (zip CRCs, shapes and values are checked) is named, removed, and its texts encoded
again.
Texts longer than the encoder's 256 word pieces are truncated by sentence-transformers, as they
were in the paper (same model, same default).
"""
from __future__ import annotations

import contextlib
import os
import sys
import uuid
import warnings
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from .assets import asset_path, content_id
from .data import DataError, Record
from .util import atomic_file, cache_dir, device_type, show_progress, text_hash

EmbedText = Literal["all", "first-turn"]


def embed_text(record: Record, mode: EmbedText = "all") -> str:
    """The text the paper embeds: all messages joined by spaces (WSD, granularity; paper.md 2.3)
    or the first user turn and first response, "q a" (TMA and the per-task measures)."""
    if mode == "all":
        return " ".join(m["content"] for m in record.messages)
    if mode == "first-turn":
        return f"{record.messages[0]['content']} {record.messages[1]['content']}"
    raise ValueError(f"unknown embed text mode {mode!r}; use 'all' or 'first-turn'")


SHARD_TEXTS = 10_000  # vectors per shard: a large pool interrupted midway keeps what it computed


class VectorStore:
    """Vectors on disk by key (a text's or an item's hash), as .npz shards written atomically;
    a damaged shard is named through `log`, removed, and its keys are computed again. Embeddings
    and the LM features (`features`) keep their vectors here, one folder per what made them."""
    def __init__(self, folder: Path, log: Callable[[str], None] | None = None):
        self.folder = folder
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._vectors: dict[str, np.ndarray] = {}
        self._loaded_shards: set[str] = set()

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The keys no shard holds, each once, in first-seen order."""
        self._load_shards()
        return list(dict.fromkeys(k for k in keys if k not in self._vectors))

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (float32, one row per key) as one new shard."""
        vectors = np.asarray(vectors, dtype=np.float32)
        name = f"shard-{uuid.uuid4().hex}.npz"
        with atomic_file(self.folder / name, "wb") as f:
            np.savez(f, keys=np.array(list(keys)), vectors=vectors)
        self._loaded_shards.add(name)
        self._vectors.update(zip(keys, vectors))

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """len(keys) x dim, in the order given (every key must be stored)."""
        self._load_shards()
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys])

    def _load_shards(self) -> None:
        for f in sorted(self.folder.glob("shard-*.npz")):
            if f.name not in self._loaded_shards:
                try:
                    keys, vectors = _read_shard(f)
                except Exception as e:  # damaged: never trusted, its vectors are computed again
                    self.log(f"vector cache shard {f} is damaged ({type(e).__name__}: {e}); removed it, "
                             "its vectors will be computed again")
                    f.unlink(missing_ok=True)
                    continue
                self._vectors.update(zip(keys, vectors))
                self._loaded_shards.add(f.name)


_ENCODED = [0]  # texts this process has encoded, whatever Encoder did it: what a run's manifest records


def texts_encoded() -> int:
    """Texts this process has encoded so far (cached ones not counted)."""
    return _ENCODED[0]


PRECISIONS = ("fp32", "bf16")  # fp32: the paper's (the book's); bf16: faster where the CPU computes it natively


class Encoder:
    """A cached sentence encoder. `n_encoded` counts texts the model actually encoded.

    `processes` > 1 encodes with sentence-transformers' multi-process pool: one process per GPU
    when there are GPUs (`processes` of them at most), else `processes` CPU processes, each given
    its share of the cores. Vectors are the same either way (one text at a time in a batch)."""
    def __init__(self, model: str = "minilm-l6", batch_size: int = 64, cache: Path | None = None,
                 log: Callable[[str], None] | None = None, processes: int = 1, precision: str = "fp32"):
        if not isinstance(processes, int) or processes < 1:
            raise DataError(f"processes must be a whole number >= 1, got {processes!r}")
        if precision not in PRECISIONS:
            raise DataError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model_name = model
        self.model_path = asset_path(model)  # verified against its recorded checksums
        self.batch_size = batch_size
        self.processes = processes
        self.precision = precision
        # bf16 vectors differ from fp32 ones in their last digits: a folder of their own, never mixed
        suffix = "" if precision == "fp32" else f"-{precision}"
        self.store = VectorStore((cache or cache_dir() / "embeddings") / f"{model}-{content_id(model)[:16]}{suffix}", log)
        self.folder, self.log = self.store.folder, self.store.log
        self._model = None
        self.n_encoded = 0

    def _st(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            if not show_progress():  # no weight-loading bars in logs and notebooks
                hf_logging.disable_progress_bar()

            self._model = SentenceTransformer(str(self.model_path), device=device_type())
            if self.precision == "bf16":
                import torch

                self._model = self._model.to(torch.bfloat16)
        return self._model

    @contextlib.contextmanager
    def _pool(self) -> Iterator[dict | None]:
        """sentence-transformers' multi-process pool for `processes` > 1 (None for one process),
        started once for a whole `encode` call and stopped after it."""
        if self.processes == 1:
            yield None
            return
        import torch

        model = self._st()
        gpus = torch.cuda.device_count()
        devices = [f"cuda:{i % gpus}" for i in range(self.processes)] if gpus else ["cpu"] * self.processes
        threads = os.environ.get("OMP_NUM_THREADS")
        if not gpus:  # each process its share of the cores, not all of them each
            os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.processes))
        try:
            pool = model.start_multi_process_pool(target_devices=devices)
        finally:
            if threads is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = threads
        try:
            yield pool
        finally:
            model.stop_multi_process_pool(pool)

    def _encode(self, texts: list[str], pool: dict | None) -> np.ndarray:
        vectors = self._st().encode(texts, pool=pool, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=show_progress() and len(texts) > 256)
        if self.precision != "fp32":  # normalised in bf16 the norms carry bf16's rounding: again in float32
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """len(texts) x dim float32, L2-normalised, in the order given."""
        keys = [text_hash(t) for t in texts]
        todo = self.store.missing(keys)
        first = dict(zip(keys, texts))
        with self._pool() if todo else contextlib.nullcontext() as pool:
            for start in range(0, len(todo), SHARD_TEXTS):  # one shard per chunk: an interruption keeps the rest
                chunk = todo[start: start + SHARD_TEXTS]
                self.store.add(chunk, self._encode([first[k] for k in chunk], pool))
                self.n_encoded += len(chunk)
                _ENCODED[0] += len(chunk)
        return self.store.get(keys)


def _read_shard(path: Path) -> tuple[list[str], np.ndarray]:
    """A shard's (text hashes, vectors); the zip's CRCs catch changed bytes, the rest is checked."""
    with np.load(path) as z:  # no pickle: np.load refuses object arrays by default
        keys, vectors = z["keys"].tolist(), z["vectors"]
    if vectors.ndim != 2 or len(keys) != len(vectors) or vectors.dtype != np.float32:
        raise ValueError(f"keys {len(keys)} and vectors {vectors.shape} {vectors.dtype} do not match")
    if not np.isfinite(vectors).all():
        raise ValueError("non-finite values")
    return keys, vectors


def embed_records(records: Sequence[Record], mode: EmbedText = "all", encoder: Encoder | None = None) -> np.ndarray:
    """Embeddings of records in order (see `embed_text` for the modes)."""
    return (encoder or Encoder()).encode([embed_text(r, mode) for r in records])


def map_2d(vectors: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """UMAP (cosine) of `vectors` to 2-D, seeded, cached in `$ZSG_CACHE/maps/` by a hash of the
    vectors and the settings: a pool is mapped once, then loaded (UMAP is the slow part)."""
    import hashlib
    import json

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    settings = json.dumps({"seed": seed, "n_neighbors": n_neighbors, "min_dist": min_dist, "shape": vectors.shape})
    key = hashlib.sha256(vectors.tobytes() + settings.encode()).hexdigest()[:20]
    path = cache_dir() / "maps" / f"{key}.npz"  # .npz: the zip's CRC finds a changed byte
    if path.exists():
        try:
            with np.load(path) as z:
                xy = z["xy"]
            if xy.shape != (len(vectors), 2):
                raise ValueError(f"shape {xy.shape}, expected {(len(vectors), 2)}")
            return xy
        except Exception as e:  # a damaged file is recomputed, never trusted
            print(f"2-D map cache {path} is damaged ({type(e).__name__}: {e}); computing it again", file=sys.stderr)
    import umap

    with warnings.catch_warnings():  # a seeded UMAP runs on one thread by design; its notice says only that
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
        xy = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine",
                       random_state=seed).fit_transform(vectors)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        np.savez(f, xy=xy)
    return xy
