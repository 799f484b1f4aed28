"""Shared fixtures. Real assets (the SmolLM2 tokenizer, MiniLM) come from the prepared cache:
`make test` runs `zsg prepare` first; run it yourself before a bare `pytest`."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# Under pytest-xdist (`make test` runs `-n auto`, a worker per core) the workers share the cores: one thread each (also
# for the processes they start) instead of each spinning a thread per core against the other.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_collection_modifyitems(config, items):
    """Under `make test` (ZSG_TEST_BOOK=execute) the test that executes the smoke book comes first,
    so one worker starts the book at once and the other takes the rest (test_book.smoke_chapters)."""
    if os.environ.get("ZSG_TEST_BOOK") == "execute":
        items.sort(key=lambda item: "smoke_chapters" not in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


def _flip_byte(path: Path, at: int | None = None) -> None:
    """Flip one bit of byte `at` (default: the middle; negative counts from the end), as a disk
    or a careless hand would: the size stays the same, only a checksum can tell."""
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="session")
def flip_byte():
    return _flip_byte


@pytest.fixture(scope="session")
def smol_tokenizer():
    from transformers import AutoTokenizer

    from zsg_core.assets import asset_path

    return AutoTokenizer.from_pretrained(asset_path("smollm2-135m"))


@pytest.fixture
def sdist(tmp_path: Path) -> Path:
    """A tarball laid out like the bigbench sdist, holding the fixture tasks."""
    path = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted((FIXTURES / "benchmark_tasks").rglob("task.json")):
            rel = f.relative_to(FIXTURES / "benchmark_tasks")
            tar.add(f, arcname=f"bigbench-1.0.0/bigbench/benchmark_tasks/{rel}")
    return path


@pytest.fixture(scope="session")
def tiny_llama(smol_tokenizer):
    """A tiny random-init Llama over the real SmolLM2 vocabulary: unit tests only."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=smol_tokenizer.bos_token_id, eos_token_id=smol_tokenizer.eos_token_id)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_reward_model(smol_tokenizer, tmp_path_factory) -> Path:
    """A folder holding a tiny random-init sequence classifier with one label: unit tests only."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, num_labels=1,
                         pad_token_id=smol_tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("rm")
    LlamaForSequenceClassification(config).save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return folder


def _once_per_test_run(name: str, make: Callable[[], None]) -> None:
    """`make()` once per test run, whichever pytest-xdist worker asks first: the others wait for it
    (a lock in the smoke build's folder) and then use what it made, instead of making it again."""
    from zsg_core.util import build_dir, file_lock

    build = build_dir("smoke")
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"pid{os.getpid()}")
    with file_lock(build / f".{name}"):
        if (build / f".{name}-{run}").exists():
            return
        for old in build.glob(f".{name}-*"):
            old.unlink()
        make()
        (build / f".{name}-{run}").touch()


@pytest.fixture(scope="session")
def smoke_chapters() -> Path:
    """The smoke profile's executed chapters. `make test` asks the test run to execute them
    (`ZSG_TEST_BOOK=execute`), once, by the first worker that needs them, while the other runs
    the rest of the tests (`--dist worksteal`), instead of the tests waiting for the whole book. A
    bare pytest uses what an earlier build left, and skips without it."""
    from zsg_core import book, toc

    if os.environ.get("ZSG_TEST_BOOK") == "execute":
        def execute() -> None:
            # The book may use every core (this file gives each worker one thread): the other worker's
            # tests end well before the book, which then has the machine to itself. So its runs train in a
            # worker process per core, one thread each (the cores shared, not oversubscribed), and the
            # chapters' kernels inherit every core.
            from zsg_core.execute import Executor

            threads = os.environ.get("OMP_NUM_THREADS")
            os.environ["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)
            try:
                # a chapter that fails raises BookError, naming it and its cell: the test errors
                book.run("smoke", executor=Executor("processes", workers=os.cpu_count() or 1, threads=1))
            finally:
                if threads is None:
                    os.environ.pop("OMP_NUM_THREADS")
                else:
                    os.environ["OMP_NUM_THREADS"] = threads

        _once_per_test_run("executed", execute)
    built = book.build_dir("smoke") / "book"
    missing = [n for n in toc.chapters() if not (built / f"{n}.ipynb").exists()]
    if missing:
        pytest.skip(f"chapters not executed yet ({missing[0]}): `make test` executes them")
    return built


@pytest.fixture(scope="session")
def smoke_html(smoke_chapters: Path) -> Path:
    """The smoke book's HTML folder, built once per test run from the executed chapters (Jupyter
    Book, warnings as errors); or, where `ZSG_CHECK_HTML` names a built book's HTML folder (`make
    check-html PROFILE=cpu`), that one, so the page tests read a real build too."""
    import subprocess

    from zsg_core import book

    if os.environ.get("ZSG_CHECK_HTML"):
        return Path(os.environ["ZSG_CHECK_HTML"]).resolve()

    def build() -> None:
        try:
            book.build_html("smoke")
        except subprocess.CalledProcessError as e:
            pytest.fail(f"jupyter-book failed: {e}")

    _once_per_test_run("html", build)
    return book.build_dir("smoke") / "_build" / "html"
