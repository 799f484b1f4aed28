"""Small shared helpers: the cache and build folders, atomic writes, progress bars.

Everything zsg writes that must never look complete when it is not (assets, embeddings, run
results, arranged data) goes through `atomic_file` or `atomic_dir`: write to a temporary name
beside the target, then `os.replace` (a file) or an atomic swap (a folder, `replace_dir`). What
they write has the mode an ordinary file would have. Finished things record their files'
sha256 (`file_digests`), so that damage is found later (`damaged_files`) and never served.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar


def device_type() -> str:
    """"cuda" where torch sees a GPU, else "cpu": where models and encoders run."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cache_dir() -> Path:
    """The folder for downloads, converted models and caches: `$ZSG_CACHE`, default ~/.cache/zsg."""
    root = Path(os.environ.get("ZSG_CACHE") or Path.home() / ".cache" / "zsg").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


DEFAULT_PROFILE = "cpu"  # zsg_core/profiles/cpu.yaml: what `make book` runs
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


def umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


def _ordinary_mode(path: Path, tmp: Path, is_dir: bool) -> None:
    """Give `tmp` the mode an ordinary `open`/`mkdir` would (0666/0777 less the umask), or the mode
    of the `path` it replaces: mkstemp/mkdtemp make private 0600/0700 files, which another user or
    a training job under another account could not read."""
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = (0o777 if is_dir else 0o666) & ~umask()
    os.chmod(tmp, mode)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w", **kw) -> Iterator:
    """Open a temporary file beside `path`; it replaces `path` only if the block succeeds. The new
    file keeps the mode of the one it replaces (else the umask's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _ordinary_mode(path, Path(tmp), is_dir=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE, macOS
    renamex_np RENAME_SWAP). False where the system or the filesystem cannot."""
    import ctypes
    import errno

    libc = _libc()
    if libc is not None and sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        at_fdcwd, rename_exchange = -100, 2
        rc = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    elif libc is not None and sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rename_swap = 2
        rc = libc.renamex_np(os.fsencode(a), os.fsencode(b), rename_swap)
    else:
        return False
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # this filesystem cannot swap
            return False
        raise OSError(err, os.strerror(err), str(b))
    return True


@functools.lru_cache(maxsize=1)
def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None


def replace_dir(new: Path, path: Path) -> None:
    """Make the folder `new` be `path`. Readers see the old folder or the new one, never none: an
    existing `path` is swapped with `new` in one atomic step, and only then is the old content
    (now at `new`) removed. Callers decide whether `path` may be replaced at all."""
    import errno

    for _ in range(3):
        try:
            os.rename(new, path)  # no folder there yet (or an empty one): a plain atomic rename
            return
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        try:
            swapped = _exchange(new, path)
        except FileNotFoundError:  # removed meanwhile: rename again
            continue
        if swapped:
            shutil.rmtree(new, ignore_errors=True)
            return
        # No atomic swap on this system: move the old folder aside, then rename (a brief moment
        # without one).
        aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.rename(path, aside / "old")
        os.rename(new, path)
        shutil.rmtree(aside, ignore_errors=True)
        return
    raise OSError(f"could not replace {path}: it keeps changing under this process")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; it becomes `path` only if the block succeeds, replacing an
    existing `path` atomically (`replace_dir`). The folder gets the mode an ordinary mkdir would."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        _ordinary_mode(path, tmp, is_dir=True)
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_digests(folder: Path, names: list[str] | None = None) -> dict[str, dict]:
    """{relative name: {"sha256", "size", "mtime_ns"}} of the files in `folder` (or of `names` in
    it): what a finished thing records about itself, so that later damage is found (`damaged_files`)."""
    folder = Path(folder)
    paths = [folder / n for n in names] if names is not None else \
        sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size,
                                               "mtime_ns": p.stat().st_mtime_ns} for p in paths}


def checked_record(folder: Path, record: str, names: Sequence[str], readable: Callable[[], None]) -> dict:
    """The JSON `record` of a finished folder (a run's manifest, a cached split's summary) once the
    files it lists under "files" match their sha256; ValueError naming each damaged one otherwise.
    A record written before checksums were kept is sealed now if `readable()` passes (best effort:
    in a store shared read-only it stays unsealed, and readable)."""
    try:
        meta = json.loads((folder / record).read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise ValueError(f"{record} is unreadable ({e})") from None
    recorded = meta.get("files")
    if recorded is None:
        readable()
        meta["files"] = file_digests(folder, list(names))
        with contextlib.suppress(OSError):
            with atomic_file(folder / record) as f:
                json.dump(meta, f, indent=1)
        return meta
    if bad := damaged_files(folder, {n: recorded[n] for n in names if n in recorded}) + \
            [f"{n} (no checksum recorded)" for n in names if n not in recorded]:
        raise ValueError(", ".join(bad))
    return meta


def damaged_files(folder: Path, recorded: dict[str, dict], full: bool = True) -> list[str]:
    """The recorded files of `folder` that are missing, changed in size or changed in content, each
    as "name (what is wrong)". With `full` every file is read; without, only those whose size or
    modification time differs from the record (cheap: a file nobody touched is not read)."""
    out = []
    for name, want in recorded.items():
        p = Path(folder) / name
        try:
            size = p.stat().st_size
        except OSError:
            out.append(f"{name} (missing)")
            continue
        if size != want["size"]:
            out.append(f"{name} (size {size}, recorded {want['size']})")
        elif (full or p.stat().st_mtime_ns != want.get("mtime_ns")) and sha256_file(p) != want["sha256"]:
            out.append(f"{name} (sha256 differs from the one recorded)")
    return out


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


T = TypeVar("T")


def seeded_shuffle(items: Sequence[T], seed: int) -> list[T]:
    """Python's `random.seed(seed); random.shuffle(x)` on a copy, as the paper's split_cluster.py:
    every seeded order of zsg (RT, random, the gradient features' warm-up) shuffles this way."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out
