"""`zsg arrange` on small data in the real formats, with the real MiniLM encoder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from zsg_core.arrange import METHODS
from zsg_core.cli import main
from zsg_core.data import Record, load_jsonl, load_records, write_jsonl

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`

TOPICS = {
    "cooking": ["How long do I boil an egg?", "What temperature bakes bread?", "How do I cook rice?",
                "Can I freeze cooked pasta?"],
    "maths": ["What is 12 times 7?", "What is the square root of 81?", "Is 17 a prime number?",
              "What is 15 percent of 200?"],
    "travel": ["Do I need a visa for Japan?", "What is the best time to visit Iceland?",
               "How early should I arrive at the airport?", "Which train goes from Paris to Lyon?"],
}


def _records(pairs: list[tuple[str, str, str]]) -> list[Record]:
    return [Record(f"{task}-{i}", task, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
            for i, (task, q, a) in enumerate(pairs)]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    train = _records([(t, q, "An answer about " + t) for t, qs in TOPICS.items() for q in qs])
    test = [Record("held-1", "cooking-test", [{"role": "user", "content": "How do I fry an egg?"},
                                              {"role": "assistant", "content": "Heat oil and crack the egg."}]),
            Record("held-2", "maths-test", [{"role": "user", "content": "What is 9 times 8?"},
                                            {"role": "assistant", "content": "72"}])]
    write_jsonl(train, tmp_path / "train.jsonl")
    write_jsonl(test, tmp_path / "test.jsonl")
    return tmp_path / "train.jsonl", tmp_path / "test.jsonl"


@pytest.mark.parametrize("method", [name for name, m in METHODS.items() if not m.adaptive])  # adaptive: no list
def test_every_method_writes_every_record_once(files, tmp_path, method, capsys):
    train, test = files
    out = tmp_path / f"{method}.jsonl"
    assert main(["arrange", "--train", str(train), "--test", str(test), "--method", method, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["order"] for r in rows] == list(range(12))
    assert sorted(r["id"] for r in rows) == sorted(r.id for r in load_jsonl(train))
    assert ("round" in rows[0]) == method.startswith("tma-")
    summary = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    assert summary["instances"] == 12 and summary["method"] == method
    assert [r.id for r in load_jsonl(out)] == [r["id"] for r in rows]  # the output loads back, in order


def test_nft_puts_the_near_topics_first_and_fft_reverses_it(files, tmp_path, capsys):
    train, test = files
    summaries = {}
    for method in ("nft", "fft"):
        main(["arrange", "--train", str(train), "--test", str(test), "--method", method,
              "--out", str(tmp_path / f"{method}.jsonl")])
        summaries[method] = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    nft = [r.id for r in load_jsonl(tmp_path / "nft.jsonl")]
    fft = [r.id for r in load_jsonl(tmp_path / "fft.jsonl")]
    assert fft == nft[::-1]
    assert all(not i.startswith("travel") for i in nft[:4])  # travel is far from eggs and times tables
    first, last = "mean_nearest_distance_first_tenth", "mean_nearest_distance_last_tenth"
    assert summaries["nft"][first] < summaries["nft"][last]
    assert summaries["fft"][first] == summaries["nft"][last] and summaries["fft"][last] == summaries["nft"][first]


def test_bf16_embeddings_arrange_the_same_records_from_a_cache_of_their_own(files, tmp_path, capsys):
    """`--embed-precision bf16`: the near topics still come first, and its vectors never enter the
    fp32 cache the book reads (benchmarks/README: bf16 moves exact orders, so the book keeps fp32)."""
    from zsg_core.embed import Encoder, embed_records

    train, test = files
    assert main(["arrange", "--train", str(train), "--test", str(test), "--method", "nft", "--embed-precision", "bf16",
                 "--out", str(tmp_path / "nft.jsonl")]) == 0
    nft = [r.id for r in load_jsonl(tmp_path / "nft.jsonl")]
    assert sorted(nft) == sorted(r.id for r in load_jsonl(train)) and all(not i.startswith("travel") for i in nft[:4])
    bf16, fp32 = Encoder(precision="bf16"), Encoder()
    assert bf16.folder != fp32.folder and bf16.folder.name.endswith("-bf16")
    texts = [r for r in load_jsonl(train)]
    before = bf16.n_encoded
    embed_records(texts, "all", bf16)
    assert bf16.n_encoded == before  # the CLI's bf16 vectors were cached there


def test_tma_rounds_and_hf_format(files, tmp_path, capsys):
    train, test = files
    out = tmp_path / "tma"
    assert main(["arrange", "--train", str(train), "--test", str(test), "--method", "tma-min", "--tma-budget", "4",
                 "--out", str(out), "--format", "hf"]) == 0
    records = load_records(out)
    assert len(records) == 4  # two rounds of two picks
    import datasets

    ds = datasets.load_from_disk(str(out))
    assert ds["order"] == [0, 1, 2, 3] and ds["round"] == [0, 0, 1, 1] and set(ds["round_direction"]) == {"min"}


def test_overlap_is_refused_unless_allowed(files, tmp_path, capsys):
    train, _ = files
    leaky = tmp_path / "leaky.jsonl"
    write_jsonl([load_jsonl(train)[0]], leaky)
    assert main(["arrange", "--train", str(train), "--test", str(leaky), "--method", "nft",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "also in training" in err and "pass --allow-overlap" in err and not (tmp_path / "o.jsonl").exists()
    assert main(["arrange", "--train", str(train), "--test", str(leaky), "--method", "nft", "--allow-overlap",
                 "--out", str(tmp_path / "o.jsonl")]) == 0


def test_refusals(files, tmp_path, capsys):
    train, test = files
    out = tmp_path / "exists.jsonl"
    out.write_text("keep me\n")
    assert main(["arrange", "--train", str(train), "--test", str(test), "--method", "random", "--out", str(out)]) == 2
    assert "exists; pass --force (force=True) to overwrite it" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"
    assert main(["arrange", "--train", str(train), "--test", str(test), "--method", "nft", "--tma-budget", "3",
                 "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "tma_budget applies to the tma-* methods only" in capsys.readouterr().err
    assert main(["arrange", "--train", str(train), "--test", str(test), "--method", "tma-min", "--tma-budget", "99",
                 "--out", str(tmp_path / "y.jsonl")]) == 2
    assert "larger than the training pool" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["arrange", "--train", str(train), "--test", str(test), "--method", "nearest", "--out", "z"])


def test_the_library_writes_the_file_the_cli_writes(files, tmp_path, capsys):
    """`zsg arrange` only parses flags: `export.write_arranged` makes the same file from Python."""
    from zsg_core.arrange import arrange_records
    from zsg_core.export import write_arranged

    train, test = files
    by_cli = tmp_path / "cli.jsonl"
    assert main(["arrange", "--train", str(train), "--test", str(test), "--method", "tma-rt", "--tma-budget", "6",
                 "--arrangement-seed", "3", "--out", str(by_cli)]) == 0
    records = load_records(train)
    arrangement = arrange_records(records, load_records(test), "tma-rt", tma_budget=6, arrangement_seed=3)
    by_library = write_arranged(records, arrangement, tmp_path / "lib.jsonl")
    assert by_library.read_text() == by_cli.read_text()
    with pytest.raises(Exception, match=r"exists; pass --force \(force=True\)"):
        write_arranged(records, arrangement, by_cli)
    with pytest.raises(Exception, match="unknown output format 'csv'"):
        write_arranged(records, arrangement, tmp_path / "x.csv", fmt="csv")


@pytest.mark.parametrize("kind", ["hidden", "gradient"])
def test_lm_features_arrange_anyones_data_with_a_local_model_folder(files, tmp_path, monkeypatch, kind, capsys):
    """`--features hidden|gradient --model FOLDER`: a Hugging Face folder of one's own (here a tiny
    random-init Llama saved with the real SmolLM2 tokenizer)."""
    from zsg_core import features
    from zsg_core.model import load_model

    monkeypatch.setattr(features, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr("zsg_core.model.cache_dir", lambda: tmp_path / "cache")
    model, tokenizer = load_model("tiny-llama")
    folder = tmp_path / "my-model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    train, test = files
    out = tmp_path / f"{kind}.jsonl"
    args = ["arrange", "--train", str(train), "--test", str(test), "--method", "nft", "--features", kind,
            "--model", str(folder), "--precision", "fp32", "--batch-size", "2", "--out", str(out)]
    assert main(args) == 0
    assert sorted(r.id for r in load_jsonl(out)) == sorted(r.id for r in load_jsonl(train))
    assert list((tmp_path / "cache" / "features").glob(f"{kind}-*/shard-*.npz"))  # cached for the next call
    assert main(["arrange", "--train", str(train), "--test", str(test), "--method", "nft", "--model", str(folder),
                 "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--model is the LM of --features" in capsys.readouterr().err
