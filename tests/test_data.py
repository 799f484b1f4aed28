"""Loaders on small fixtures written in the real formats, and their errors on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from zsg_core.data import (
    DataError,
    Record,
    load_bigbench,
    load_flan_mini,
    load_hf,
    load_jsonl,
    load_niv2_tasks,
    load_records,
    task_family,
    write_jsonl,
)


def test_bigbench_tarball_and_folder_agree(fixtures: Path, sdist: Path):
    from_tar = load_bigbench(sdist)
    from_dir = load_bigbench(fixtures / "benchmark_tasks")
    assert from_tar == from_dir
    tasks = {r.task for r in from_tar}
    # the multiple-choice task is not generative; the empty-target example is skipped
    assert tasks == {"ni/subtask900_toy_answer_generation", "bb/toy_family/sub_a"}
    ni = [r for r in from_tar if r.source == "natural_instructions"]
    assert len(ni) == 3 and len([r for r in from_tar if r.task == "bb/toy_family/sub_a"]) == 2
    first = ni[0]
    assert first.prompt.startswith("Definition: Answer the question with one word. Prompt:")
    assert first.prompt.endswith("Question: What colour is the sky on a clear day?")
    assert first.response == "Blue." and first.references == ["Blue.", "blue"]
    bb = next(r for r in from_tar if r.task == "bb/toy_family/sub_a")
    assert bb.prompt == "Reverse the list of numbers.\n\n[1, 2, 3]" and bb.references == ["[3, 2, 1]"]


def test_bigbench_only_and_missing(sdist: Path):
    assert {r.task for r in load_bigbench(sdist, only=["bb/toy_family/sub_a"])} == {"bb/toy_family/sub_a"}
    with pytest.raises(DataError, match="no generative task named.*bb/nope"):
        load_bigbench(sdist, only=["bb/nope"])


def test_task_family():
    assert task_family("ni/subtask002_quoref_answer_generation") == "ni/quoref"
    assert task_family("ni/subtask046_miscellaenous_question_typing") == "ni/misc"
    assert task_family("ni/subtask047_misc_answering_science_questions") == "ni/misc"
    assert task_family("bb/list_functions/c001") == "bb/list_functions"
    assert task_family("bb/cryptonite") == "bb/cryptonite"
    assert task_family("bb/simple_arithmetic_json_subtasks/one_digit_addition") == "bb/simple_arithmetic"
    assert task_family("bb/simple_arithmetic_multiple_targets_json") == "bb/simple_arithmetic"
    assert task_family("anli/r3:0.1.0") == "anli/r3:0.1.0"


def test_flan_mini(fixtures: Path):
    records = load_flan_mini(fixtures / "flan_mini.json")
    assert [r.id for r in records] == ["flan-0", "flan-1", "flan-2"]
    assert records[1].task == "task851_synthetic_multiply_evens" and len(records[1].messages) == 4
    # an unanswered final user turn is dropped, as in the paper's code
    assert [m["role"] for m in records[2].messages] == ["user", "assistant"]
    assert records[0].messages[0]["role"] == "user" and records[0].response == "Yes"


def test_niv2(fixtures: Path):
    records = load_niv2_tasks(fixtures / "niv2")
    assert [r.id for r in records] == ["task001-aaa", "task001-bbb"]
    r = records[0]
    assert r.task == "task001_quoref_question_generation"
    assert r.prompt.startswith("Definition: In this task, you're given a passage. Write a question about it.\n\n")
    assert "Positive Example 2" in r.prompt and "Unused third demo" not in r.prompt
    assert r.prompt.endswith("Input: Passage: Carl wrote a song.\nOutput: ")
    assert r.response == "What did Carl write?" and r.references == ["What did Carl write?", "Who wrote a song?"]


def test_jsonl_roundtrip(fixtures: Path, tmp_path: Path):
    records = load_jsonl(fixtures / "records.jsonl")
    assert [r.id for r in records] == ["r1", "r2", "r3"] and records[0].references == ["5", "five"]
    write_jsonl(records, tmp_path / "out.jsonl")
    assert load_jsonl(tmp_path / "out.jsonl") == records


def test_hf_datasets(fixtures: Path, tmp_path: Path):
    import datasets

    records = load_jsonl(fixtures / "records.jsonl")
    datasets.Dataset.from_list([r.to_dict() for r in records]).save_to_disk(str(tmp_path / "recs"))
    loaded = load_hf(tmp_path / "recs")
    assert [r.id for r in loaded] == ["r1", "r2", "r3"] and loaded[2].messages == records[2].messages
    flan = json.loads((fixtures / "flan_mini.json").read_text())
    datasets.DatasetDict({"train": datasets.Dataset.from_list(flan)}).save_to_disk(str(tmp_path / "flan"))
    assert [r.id for r in load_records(tmp_path / "flan")] == ["flan-0", "flan-1", "flan-2"]
    with pytest.raises(DataError, match="no split 'test'"):
        load_hf(tmp_path / "flan", split="test")


def test_load_records_dispatch(fixtures: Path, sdist: Path):
    assert load_records(fixtures / "records.jsonl")[0].id == "r1"
    assert load_records(fixtures / "flan_mini.json")[0].id == "flan-0"
    assert load_records(fixtures / "niv2")[0].id == "task001-aaa"
    assert load_records(fixtures / "niv2" / "task001_quoref_question_generation.json")[0].id == "task001-aaa"
    assert len(load_records(sdist)) == 5
    with pytest.raises(DataError, match="no such file"):
        load_records(fixtures / "missing.jsonl")


# --- bad input: every error names the place and the offending value ---------------------------

def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = '{"id": "a", "task": "t", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}'


def test_malformed_line_names_file_and_line(tmp_path: Path):
    p = _write(tmp_path, "bad.jsonl", GOOD + "\n" + GOOD.replace('"a"', '"b"')[:-10] + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        load_jsonl(p)


def test_truncated_flan_file(tmp_path: Path, fixtures: Path):
    text = (fixtures / "flan_mini.json").read_text()
    p = _write(tmp_path, "flan.json", text[: len(text) // 2])
    with pytest.raises(DataError, match=r"flan\.json:\d+: malformed JSON.*truncated"):
        load_flan_mini(p)


@pytest.mark.parametrize("record, message", [
    ({"id": "x1", "task": "t"}, r"id 'x1'.*missing field 'messages'"),
    ({"task": "t", "messages": []}, r"missing field 'id'"),
    ({"id": "x2", "task": "", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
     r"id 'x2'.*empty task name ''"),
    ({"id": "x3", "task": "t", "messages": [{"role": "system", "content": "q"}]}, r"id 'x3'.*unknown role 'system'"),
    ({"id": "x4", "task": "t", "messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}]},
     r"id 'x4'.*role 'user', expected 'assistant'"),
    ({"id": "x5", "task": "t", "messages": [{"role": "user", "content": "q"}]}, r"id 'x5'.*at least one user and one assistant"),
    ({"id": "x6", "task": "t", "messages": [{"role": "user"}]}, r"id 'x6'.*needs 'role' and 'content'"),
    ({"id": "x7", "task": "t", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
      "weight": 2}, r"id 'x7'.*unknown field\(s\) \['weight'\]"),
])
def test_bad_records(tmp_path: Path, record: dict, message: str):
    p = _write(tmp_path, "r.jsonl", json.dumps(record) + "\n")
    with pytest.raises(DataError, match=message):
        load_jsonl(p)


def test_duplicate_id_and_empty_set(tmp_path: Path):
    with pytest.raises(DataError, match="duplicate id 'a'"):
        load_jsonl(_write(tmp_path, "dup.jsonl", GOOD + "\n" + GOOD + "\n"))
    with pytest.raises(DataError, match="no records"):
        load_jsonl(_write(tmp_path, "empty.jsonl", "\n"))


def test_flan_unknown_role_and_missing_field(tmp_path: Path):
    bad_role = [{"id": "f1", "source": "s", "conversations": [{"from": "robot", "value": "x"}]}]
    with pytest.raises(DataError, match="id 'f1'.*unknown role 'robot'"):
        load_flan_mini(_write(tmp_path, "a.json", json.dumps(bad_role)))
    with pytest.raises(DataError, match="id 'f2'.*missing field 'source'"):
        load_flan_mini(_write(tmp_path, "b.json", json.dumps([{"id": "f2", "conversations": []}])))


def test_niv2_empty_task_and_missing_output(tmp_path: Path, fixtures: Path):
    task = json.loads((fixtures / "niv2" / "task001_quoref_question_generation.json").read_text())
    empty = dict(task, Instances=[])
    with pytest.raises(DataError, match=r"task002_x\.json: empty task"):
        load_niv2_tasks(_write(tmp_path, "task002_x.json", json.dumps(empty)))
    no_output = dict(task, Instances=[{"id": "i9", "input": "x"}])
    with pytest.raises(DataError, match=r"task003_y\.json instance 0: missing field 'output'"):
        load_niv2_tasks(_write(tmp_path, "task003_y.json", json.dumps(no_output)))


def test_bigbench_truncated_task_json(tmp_path: Path, fixtures: Path):
    src = (fixtures / "benchmark_tasks" / "toy_family" / "sub_a" / "task.json").read_text()
    d = tmp_path / "benchmark_tasks" / "broken"
    d.mkdir(parents=True)
    (d / "task.json").write_text(src[:100])
    with pytest.raises(DataError, match=r"broken/task\.json:\d+: malformed JSON"):
        load_bigbench(tmp_path)


def test_record_is_the_trl_conversational_format():
    r = Record("i", "t", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    assert r.to_dict() == {"id": "i", "task": "t", "messages": [{"role": "user", "content": "q"},
                                                                 {"role": "assistant", "content": "a"}]}


def test_bigbench_example_without_input(tmp_path: Path):
    d = tmp_path / "benchmark_tasks" / "noinput"
    d.mkdir(parents=True)
    (d / "task.json").write_text(json.dumps({"name": "x", "description": "d", "examples": [{"target": "y"}]}))
    with pytest.raises(DataError, match="task 'bb/noinput' example 0 has no string 'input'"):
        load_bigbench(tmp_path)
