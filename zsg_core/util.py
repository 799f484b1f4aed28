"""Small shared helpers: the cache and build folders, atomic writes, progress bars.

Everything zsg writes that must never look complete when it is not (assets, embeddings, run
results) goes through `atomic_file` or `atomic_dir`: write to a temporary name beside the
target, then `os.replace`, which is atomic on one filesystem.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator


def cache_dir() -> Path:
    """The folder for downloads, converted models and caches: `$ZSG_CACHE`, default ~/.cache/zsg."""
    root = Path(os.environ.get("ZSG_CACHE") or Path.home() / ".cache" / "zsg").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


DEFAULT_PROFILE = "cpu"  # profiles/cpu.yaml: what `make book` runs
BUILD_ENV = "ZSG_BUILD"
BUILD_ROOT = Path(__file__).resolve().parents[1] / "_build"  # in the repository, ignored by git


def build_dir(profile: str | None = None) -> Path:
    """Where a book build writes (executed notebooks, figures, findings): `_build/<profile>` in the
    repository; without a profile, `$ZSG_BUILD` (the book runner sets it for its kernels), else the
    default profile's folder."""
    if profile is None and os.environ.get(BUILD_ENV):
        return Path(os.environ[BUILD_ENV])
    return BUILD_ROOT / (profile or DEFAULT_PROFILE)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w", **kw) -> Iterator:
    """Open a temporary file beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; it becomes `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `<path>.lock` (flock): one process at a time builds a cached thing, and
    the others then find it ready instead of building it again or removing it under a reader."""
    lock = Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def in_notebook() -> bool:
    return "ipykernel" in sys.modules


def show_progress() -> bool:
    """Progress bars on an interactive terminal; none in notebooks, logs or with TQDM_DISABLE set."""
    return sys.stderr.isatty() and not in_notebook() and not os.environ.get("TQDM_DISABLE")


def progress_bar(total: int, desc: str, unit: str = "item"):
    """A tqdm bar to `.update()` on an interactive terminal, else None."""
    if not show_progress():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


def without_late_defaults(d: dict, late_defaults: dict) -> dict:
    """`d` without the fields that were added after results were stored and still hold their
    default: such a field names a result only when set, so adding it orphans nothing."""
    return {k: v for k, v in d.items() if not (k in late_defaults and v == late_defaults[k])}
