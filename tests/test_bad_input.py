"""Bad input and careless use, second fault pass: each case gets one line naming the file or the
parameter and exit code 2 (never a traceback: 1 is for bugs), before any expensive work, and
nothing the user made is lost. On the tiny model or no model."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from test_faults import (
    _one_line_error,  # what one line naming the fault looks like, checked once
)

from zsg_core import config
from zsg_core.cli import main
from zsg_core.data import DataError, load_records


def _train_and_test(folder: Path) -> tuple[Path, Path]:
    """One training record and one held-out record of another task: the smallest valid pair."""
    for name, task in (("train", "t"), ("test", "held")):
        (folder / f"{name}.jsonl").write_text(json.dumps({"id": name, "task": task, "messages": [
            {"role": "user", "content": f"{name} question"}, {"role": "assistant", "content": "a"}]}) + "\n")
    return folder / "train.jsonl", folder / "test.jsonl"


# -- item 1: `zsg split --force` replaces only a previous zsg split --------------------------------

def test_split_force_never_overwrites_a_folder_zsg_did_not_write(tmp_path, capsys):
    mine = {"train.jsonl": '{"my": "data"}\n', "test.jsonl": '{"my": "test"}\n', "report.csv": "a,b\n1,2\n",
            "notes.txt": "a user's work"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    for extra in (["--force"], []):  # without --force it is not offered as the way out either
        assert main(["split", "--out", str(tmp_path), *extra]) == 2
        err = _one_line_error(capsys, f"{tmp_path} exists and is not empty, and is not a folder zsg split wrote "
                                      "(no zsg_split.json)")
        assert "pass --force" not in err
    assert {name: (tmp_path / name).read_text() for name in mine} == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(mine)


def test_split_force_replaces_its_own_split(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["split", "--out", str(out)]) == 0
    assert json.loads((out / "zsg_split.json").read_text())["written_by"] == "zsg split"
    written = (out / "train.jsonl").read_text()
    (out / "train.jsonl").write_text("stale\n")
    (out / "notes.txt").write_text("kept")
    assert main(["split", "--out", str(out)]) == 2
    _one_line_error(capsys, f"{out} exists and is not empty; pass --force")
    assert main(["split", "--out", str(out), "--force"]) == 0
    assert (out / "train.jsonl").read_text() == written and (out / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize("command", [["split"], ["embed", "x.jsonl"], ["arrange", "--train", "a", "--test", "b",
                                                                       "--method", "nft"]])
def test_an_empty_out_is_named_not_taken_for_the_current_folder(command, capsys):
    assert main([*command, "--out", ""]) == 2
    _one_line_error(capsys, "--out is empty")


# -- item 6: tracebacks become messages ------------------------------------------------------------

def test_an_infinite_lr_is_refused_before_training(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))
    assert main(["train", "--profile", "smoke", "--set", "lr=inf"]) == 2
    _one_line_error(capsys, "lr must be positive and finite, got inf")
    assert list(tmp_path.iterdir()) == []


def test_gradient_features_refuse_a_batch_size_of_zero_before_loading_a_model(tmp_path, capsys, monkeypatch):
    from zsg_core import model

    monkeypatch.setattr(model, "load_model", lambda *a, **k: pytest.fail("loaded a model for a refused call"))
    train, test = _train_and_test(tmp_path)
    args = ["arrange", "--train", str(train), "--test", str(test), "--method", "nft", "--features", "gradient",
            "--model", "tiny-llama", "--precision", "fp32", "--out", str(tmp_path / "o.jsonl")]
    assert main([*args, "--batch-size", "0"]) == 2
    _one_line_error(capsys, "training parameter batch_size must be at least 1, got 0")
    assert main([*args, "--lr", "nan"]) == 2
    _one_line_error(capsys, "training parameter lr must be positive and finite, got nan")


NIV2 = {"Definition": ["Answer the question."], "Positive Examples": [{"input": "2+2?", "output": "4"}],
        "Instances": [{"id": "i1", "input": "1+1?", "output": ["2"]}, {"id": "i2", "input": "3+3?", "output": ["6"]}]}


@pytest.mark.parametrize("damage, named", [
    (lambda t: t.update(Definition=[{"text": "x"}]), "'Definition' must be a string, got dict"),
    (lambda t: t.update(Definition=7), "'Definition' must be a string, got int"),
    (lambda t: t["Instances"][1].update(input=["1", "+"]), "instance 1 (id 'i2'): 'input' must be a string, got list"),
    (lambda t: t["Positive Examples"][0].pop("output"), "Positive Example 1 has no 'output'"),
    (lambda t: t.update(Instances={"id": "i1"}), "'Instances' must be a list, got dict"),
])
def test_malformed_niv2_fields_are_named(tmp_path, damage, named):
    task = json.loads(json.dumps(NIV2))
    damage(task)
    path = tmp_path / "task001_add.json"
    path.write_text(json.dumps(task))
    with pytest.raises(DataError, match="^" + str(path).replace(".", r"\.")) as e:
        load_records(path)
    assert named in str(e.value)


def test_json_nested_past_reading_is_named_by_file_and_line(tmp_path, capsys):
    good = json.dumps({"id": "a", "task": "t", "messages": [{"role": "user", "content": "q"},
                                                             {"role": "assistant", "content": "a"}]})
    path = tmp_path / "deep.jsonl"
    path.write_text(good + "\n" + "[" * 100_000 + "\n")
    with pytest.raises(DataError, match=f"{path}:2: JSON nested too deeply"):
        load_records(path)
    assert main(["embed", str(path), "--out", str(tmp_path / "x.npy")]) == 2
    _one_line_error(capsys, f"{path}:2: JSON nested too deeply")


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory) -> Path:
    """A local model folder with weights and config but no tokenizer files."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from zsg_core.assets import load_tokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    config = LlamaConfig(vocab_size=len(load_tokenizer("tiny-llama")), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_a_model_folder_without_a_tokenizer_is_named(tiny_model_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path))
    assert main(["train", "--profile", "smoke", "--set", f"model={tiny_model_folder}"]) == 2
    _one_line_error(capsys, f"{tiny_model_folder}: no usable tokenizer")
    assert list(tmp_path.iterdir()) == []  # refused before any run folder or lock


def test_a_truncated_weights_file_is_named(tiny_model_folder, tmp_path, capsys, monkeypatch):
    import shutil

    from zsg_core.assets import load_tokenizer

    folder = tmp_path / "truncated"
    shutil.copytree(tiny_model_folder, folder)
    load_tokenizer("tiny-llama").save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    monkeypatch.setenv("ZSG_RUNS", str(tmp_path / "runs"))
    assert main(["train", "--profile", "smoke", "--set", f"model={folder}"]) == 2
    _one_line_error(capsys, f"{folder}: cannot load the model's weights")


@pytest.mark.parametrize("content, fault", [('{"split": 5}', "not a run's config.json"),
                                            ("[]", "not a run's config.json"), ("{}", "not a run's config.json"),
                                            ('{"model": "tiny-llama", "train": [1]}', "not a run's config.json"),
                                            ("[" * 100_000, ":1: JSON nested too deeply")])
def test_a_config_file_that_is_not_a_runs_config_is_refused(tmp_path, capsys, content, fault):
    path = tmp_path / "config.json"
    path.write_text(content)
    # --print-config: today's code takes [] and {} for the default config; it would print it (exit 0)
    # rather than train it for minutes. The check comes first either way.
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    _one_line_error(capsys, f"zsg train: error: {path}", fault)


def _profiles(tmp_path, monkeypatch, **files: str) -> None:
    """Profiles in a folder of their own, with the shipped ones beside them."""
    import shutil

    for shipped in config.PROFILES.glob("*.yaml"):
        if shipped.parent != tmp_path:  # called twice in one test: the shipped ones are there already
            shutil.copy(shipped, tmp_path / shipped.name)
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    monkeypatch.setattr(config, "PROFILES", tmp_path)


def test_profiles_that_extend_in_a_circle_are_named(tmp_path, monkeypatch, capsys):
    _profiles(tmp_path, monkeypatch, a="extends: b\nlr: 1.0e-3\n", b="extends: a\n")
    with pytest.raises(config.ProfileError, match=r"extends 'a', which comes back to it: a -> b -> a"):
        config.load_profile("a")
    assert main(["train", "--profile", "a"]) == 2
    _one_line_error(capsys, "comes back to it")


def test_a_yaml_error_in_a_profile_names_the_file_and_line(tmp_path, monkeypatch, capsys):
    _profiles(tmp_path, monkeypatch, broken="lr: 1.0e-3\nmax_steps: [10\nbatch_size: 8\n")
    assert main(["train", "--profile", "broken"]) == 2
    err = _one_line_error(capsys, f"{tmp_path / 'broken.yaml'}:", "not valid YAML")
    assert err.split("broken.yaml:")[1].split(":")[0].isdigit()


def test_a_missing_base_profile_says_which_profile_asked(tmp_path, monkeypatch):
    _profiles(tmp_path, monkeypatch, mine="extends: cpuu\n")
    with pytest.raises(config.ProfileError, match=f"no profile 'cpuu', which {tmp_path / 'mine'}.yaml extends"):
        config.load_profile("mine")


def test_an_unknown_key_in_a_custom_profile_is_named_not_dropped(tmp_path, monkeypatch, capsys):
    _profiles(tmp_path, monkeypatch, mine="extends: smoke\nlearning_rate: 1.0e-4\n")
    assert main(["train", "--profile", "mine", "--print-config"]) == 2
    _one_line_error(capsys, "profile 'mine'", "'learning_rate': neither a run parameter nor a chapter parameter")
    _profiles(tmp_path, monkeypatch, ok="extends: smoke\nlr: 1.0e-4\narrangement_seeds: [0]\n")
    assert main(["train", "--profile", "ok", "--print-config"]) == 0  # a chapter's key is known


# -- item 7: exit codes and words -------------------------------------------------------------------

@pytest.mark.parametrize("args, named", [
    (["arrange", "--train", "a.jsonl", "--test", "b.jsonl", "--method", "nft", "--out", "o.jsonl", "--model", "x"],
     "--model is the LM of --features hidden / gradient"),
    (["train", "--profile", "smoke", "--set", "lr"], "--set takes name=value, got 'lr'"),
    (["train", "--config", "c.json", "--set", "lr=1e-4"], "--config is a whole run; do not combine it"),
])
def test_parameter_errors_exit_2_in_one_line(args, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text(json.dumps({"model": "tiny-llama", "split": {}, "train": {}}))  # a valid config
    assert main(args) == 2  # today: SystemExit("...") raised out of main, which a shell sees as exit 1
    _one_line_error(capsys, f"zsg {args[0]}: error: {named}")


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"), (errno.EFBIG, "File too large")])
def test_a_write_error_without_a_file_name_names_the_output(tmp_path, capsys, monkeypatch, code, words):
    import os

    train, test = _train_and_test(tmp_path)
    out = tmp_path / "arranged.jsonl"
    out.write_text('{"previous": "output"}\n')

    def full_disk(fd):
        raise OSError(code, os.strerror(code))  # as the kernel reports it: an errno, no file name

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["arrange", "--train", str(train), "--test", str(test), "--method", "random", "--out", str(out),
                 "--force"]) == 2
    _one_line_error(capsys, f"zsg arrange: error: {out}: {words}")
    assert out.read_text() == '{"previous": "output"}\n'  # the previous output, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arranged.jsonl", "test.jsonl", "train.jsonl"]
