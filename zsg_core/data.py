"""The one record type zsg uses everywhere, and loaders for the formats people bring.

A record is one instruction-tuning instance:
    id          unique string
    task        the task it belongs to (arrangements by task and per-task curves need it)
    messages    [{"role": "user"|"assistant", "content": str}, ...]: the conversational format
                that TRL and the Hugging Face chat templates use
    references  optional: every acceptable answer (the response is the first)
    source      optional: where it came from ("natural_instructions", "bigbench", "flan", ...)

Loaders: Natural Instructions v1 and BIG-bench JSON tasks (from the bigbench sdist tarball or its
extracted folder), Flan-mini JSON, NIV2 task files, JSONL of records, HF `datasets` folders.
Bad input raises DataError naming the file, line or record and the offending value.
"""
from __future__ import annotations

import json
import re
import tarfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from .util import atomic_file

ROLES = ("user", "assistant")
ARRANGEMENT_FIELDS = {"order", "round", "round_direction"}  # written by `zsg arrange`; read back and ignored
FLAN_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class DataError(ValueError):
    """Input data is malformed, incomplete or inconsistent."""


def from_known_fields(cls, d: dict, what: str):
    """`cls(**d)` for a dataclass, with an error naming any key that is not one of its fields."""
    known = {f.name for f in fields(cls)}
    if unknown := set(d) - known:
        raise DataError(f"unknown {what} parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    task: str
    messages: list[dict[str, str]]
    references: list[str] | None = None
    source: str | None = None

    @property
    def prompt(self) -> str:
        """The first user turn."""
        return self.messages[0]["content"]

    @property
    def response(self) -> str:
        """The first assistant turn."""
        return self.messages[1]["content"]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _utf8_fault(raw: bytes, e: UnicodeDecodeError, path: Path, first_line: int = 1) -> DataError:
    """The error for bytes that are not UTF-8: file, line and column of the first bad byte."""
    line = first_line + raw.count(b"\n", 0, e.start)
    column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
    return DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {column}); "
                     "save the file as UTF-8")


def read_text(path: Path) -> str:
    """A text file as UTF-8 (a leading byte-order mark is allowed and dropped); anything else is a
    DataError naming the file, the line and the byte."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _utf8_fault(raw, e, path) from None


def _check_text(value: Any, name: str, what: str) -> None:
    """A string that can be written back as UTF-8: JSON may carry a lone surrogate ("\\ud800"),
    which is no character and would fail later, in a tokenizer or a writer."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(f"{name}: {what} holds a lone surrogate (\\u{ord(value[e.start]):04x} at character {e.start}), "
                        "which is not valid Unicode") from None


def _require(d: Any, keys: tuple[str, ...], where: str) -> str:
    """Check that `d` is an object with `keys`; return the name to use in later errors."""
    if not isinstance(d, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(d).__name__}")
    name = f"{where} (id {d['id']!r})" if "id" in d else where
    for key in keys:
        if key not in d:
            raise DataError(f"{name}: missing field {key!r}")
    return name


def record_from_dict(d: Any, where: str) -> Record:
    """Validate one record dict; `where` ("file.jsonl:12") goes into every error message."""
    name = _require(d, ("id", "task", "messages"), where)
    unknown = set(d) - {"id", "task", "messages", "references", "source"} - ARRANGEMENT_FIELDS
    if unknown:
        raise DataError(f"{name}: unknown field(s) {sorted(unknown)}")
    if not isinstance(d["id"], str) or not d["id"]:
        raise DataError(f"{name}: 'id' must be a non-empty string, got {d['id']!r}")
    if not isinstance(d["task"], str) or not d["task"].strip():
        raise DataError(f"{name}: empty task name {d['task']!r}")
    _check_text(d["id"], name, "'id'")
    _check_text(d["task"], name, "'task'")
    messages = _check_messages(d["messages"], name)
    refs = d.get("references")
    if refs is not None and (not isinstance(refs, list) or not all(isinstance(r, str) for r in refs)):
        raise DataError(f"{name}: 'references' must be a list of strings, got {refs!r}")
    for k, ref in enumerate(refs or ()):
        _check_text(ref, name, f"reference {k}")
    source = d.get("source")
    if source is not None and not isinstance(source, str):
        raise DataError(f"{name}: 'source' must be a string, got {source!r}")
    return Record(d["id"], d["task"], messages, refs, source)


def _check_messages(messages: Any, name: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{name}: 'messages' must be a non-empty list, got {messages!r:.80}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{name}: message {i} needs 'role' and 'content', got {m!r:.80}")
        if m["role"] not in ROLES:
            raise DataError(f"{name}: message {i} has unknown role {m['role']!r} (expected user or assistant)")
        if not isinstance(m["content"], str):
            raise DataError(f"{name}: message {i} content must be a string, got {type(m['content']).__name__}")
        _check_text(m["content"], name, f"message {i} content")
        expected = ROLES[i % 2]
        if m["role"] != expected:
            raise DataError(f"{name}: message {i} has role {m['role']!r}, expected {expected!r} "
                            "(turns alternate user, assistant, starting with user)")
        out.append({"role": m["role"], "content": m["content"]})
    if len(out) < 2:
        raise DataError(f"{name}: needs at least one user and one assistant message")
    if len(out) % 2:  # a trailing user turn has no answer to learn from; the paper drops it too
        out = out[:-1]
    return out


def check_records(records: list[Record], where: str) -> list[Record]:
    """A set of records must be non-empty and have unique ids."""
    if not records:
        raise DataError(f"{where}: no records")
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise DataError(f"{where}: duplicate id {r.id!r}")
        seen.add(r.id)
    return records


def _conversation(prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


# ---------------------------------------------------------------------------------------------
# JSONL records


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object); a malformed line names the file and the line. Lines
    are UTF-8 (a byte-order mark at the start is allowed and dropped)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise _utf8_fault(raw, e, path, lineno) from None
            if not line.strip():
                continue
            yield lineno, parse_json(line, str(path), lineno, "the file may be truncated or not JSON Lines")


def load_jsonl(path: str | Path) -> list[Record]:
    path = Path(path)
    return check_records([record_from_dict(obj, f"{path}:{n}") for n, obj in read_jsonl(path)], str(path))


def write_jsonl(records: Iterable[Record | dict], path: str | Path) -> None:

    with atomic_file(Path(path), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict() if isinstance(r, Record) else r, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Flan-mini: a JSON array (or JSON Lines) of {id, source, conversations: [{from, value}]}


def _flan_record(d: Any, where: str) -> Record:
    name = _require(d, ("id", "source", "conversations"), where)
    conv = d["conversations"]
    if not isinstance(conv, list):
        raise DataError(f"{name}: 'conversations' must be a list")
    messages = []
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(f"{name}: conversation turn {i} needs 'from' and 'value', got {turn!r:.80}")
        if turn["from"] not in FLAN_ROLES:
            raise DataError(f"{name}: conversation turn {i} has unknown role {turn['from']!r} "
                            f"(expected one of {sorted(FLAN_ROLES)})")
        messages.append({"role": FLAN_ROLES[turn["from"]], "content": turn["value"]})
    return record_from_dict({"id": str(d["id"]), "task": d["source"], "messages": messages, "source": "flan"}, where)


def load_flan_mini(path: str | Path) -> list[Record]:
    path = Path(path)
    text = read_text(path)
    if text.lstrip().startswith("["):
        items = parse_json(text, str(path))
        if not isinstance(items, list):
            raise DataError(f"{path}: expected a JSON array of records, got {type(items).__name__}")
        pairs = [(f"{path}[{i}]", d) for i, d in enumerate(items)]
    else:
        pairs = [(f"{path}:{n}", d) for n, d in read_jsonl(path)]
    return check_records([_flan_record(d, w) for w, d in pairs], str(path))


# ---------------------------------------------------------------------------------------------
# NIV2 task files: tasks/taskNNN_name.json with Definition, Positive Examples, Instances


def niv2_prompt(definition: str, positives: list[dict], text: str, num_pos_examples: int = 2) -> str:
    """The paper code's NIV2 prompt (process_ni_example): definition, up to 2 demos, the input."""
    prompt = f"Definition: {definition.strip()}\n\n"
    for k, ex in enumerate(positives[:num_pos_examples], 1):
        prompt += f" Positive Example {k} -\nInput: {ex['input'].strip()}\nOutput: {ex['output'].strip()}\n\n"
    return prompt + f"Now complete the following example -\nInput: {text.strip()}\nOutput: "


def _niv2_text(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise DataError(f"{where} must be a string, got {type(value).__name__}")


def load_niv2_tasks(path: str | Path, num_pos_examples: int = 2) -> list[Record]:
    """A NIV2 `tasks/` folder (every task*.json in it) or a single task file."""
    path = Path(path)
    files = sorted(path.glob("task*.json")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no task*.json files")
    records = []
    for f in files:
        task = parse_json(read_text(f), str(f))
        if not isinstance(task, dict):
            raise DataError(f"{f}: expected a NIV2 task (a JSON object), got {type(task).__name__}")
        for key in ("Definition", "Instances"):
            if key not in task:
                raise DataError(f"{f}: missing field {key!r}")
        if not isinstance(task["Instances"], list):
            raise DataError(f"{f}: 'Instances' must be a list, got {type(task['Instances']).__name__}")
        if not task["Instances"]:
            raise DataError(f"{f}: empty task (no Instances)")
        definition = task["Definition"][0] if isinstance(task["Definition"], list) and task["Definition"] \
            else task["Definition"]
        _niv2_text(definition, f"{f}: 'Definition'")
        positives = task.get("Positive Examples", [])
        if not isinstance(positives, list):
            raise DataError(f"{f}: 'Positive Examples' must be a list, got {type(positives).__name__}")
        for k, ex in enumerate(positives[:num_pos_examples], 1):  # the ones that reach a prompt
            for key in ("input", "output"):
                if not isinstance(ex, dict) or key not in ex:
                    raise DataError(f"{f}: Positive Example {k} has no {key!r}")
                _niv2_text(ex[key], f"{f}: Positive Example {k} {key!r}")
        for i, inst in enumerate(task["Instances"]):
            where = f"{f} instance {i}"
            if not isinstance(inst, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(inst).__name__}")
            for key in ("id", "input", "output"):
                if key not in inst:
                    raise DataError(f"{where}: missing field {key!r}")
            _niv2_text(inst["input"], f"{where} (id {inst['id']!r}): 'input'")
            outputs = inst["output"] if isinstance(inst["output"], list) else [inst["output"]]
            if not outputs:
                raise DataError(f"{where} (id {inst['id']!r}): empty 'output'")
            prompt = niv2_prompt(definition, positives, inst["input"], num_pos_examples)
            records.append(record_from_dict({"id": str(inst["id"]), "task": f.stem, "references": [str(o) for o in outputs],
                                             "messages": _conversation(prompt, str(outputs[0])), "source": "niv2"}, where))
    return check_records(records, str(path))


# ---------------------------------------------------------------------------------------------
# BIG-bench JSON tasks and Natural Instructions v1, from the bigbench sdist


def _iter_task_json(root: Path) -> Iterator[tuple[str, dict]]:
    """(relative task folder, parsed task.json) from the sdist tarball or its extracted folder."""
    if root.is_file():
        with tarfile.open(root) as tar:
            for m in tar:
                if m.isfile() and m.name.endswith("/task.json") and "/benchmark_tasks/" in m.name:
                    rel = m.name.split("/benchmark_tasks/", 1)[1][: -len("/task.json")]
                    yield rel, parse_json(tar.extractfile(m).read(), f"{root}:{m.name}")
    else:
        base = root / "benchmark_tasks" if (root / "benchmark_tasks").is_dir() else root
        for f in sorted(base.rglob("task.json")):
            yield str(f.parent.relative_to(base)), parse_json(f.read_bytes(), str(f))


def parse_json(raw: str | bytes, where: str, first_line: int = 1,
               hint: str = "the file may be truncated") -> Any:
    """`json.loads`, with every way it fails named by `where` and the line: malformed or truncated
    text, and nesting deeper than Python's recursion allows (100,000 `[` would otherwise escape as
    a RecursionError). `first_line`: the file line `raw` starts at."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}:{first_line + e.lineno - 1}: malformed JSON ({e.msg} at column {e.colno}); "
                        f"{hint}") from None
    except RecursionError:
        raise DataError(f"{where}:{first_line}: JSON nested too deeply to read (a structure no record "
                        "has; the file may be damaged)") from None


def is_generative(task: dict) -> bool:
    """Every example has a `target` and none is scored as multiple choice."""
    ex = task.get("examples")
    return bool(ex) and all("target" in e and "target_scores" not in e for e in ex)


def _targets(target: Any) -> list[str]:
    return [str(t) for t in target] if isinstance(target, list) else [str(target)]


def load_bigbench(root: str | Path, only: Iterable[str] | None = None) -> list[Record]:
    """Generative tasks of the bigbench sdist: BIG-bench JSON tasks and Natural Instructions v1.

    Task names: `ni/subtask002_quoref_answer_generation`, `bb/list_functions/c001`. The prompt is
    the task's definition/prefix (`task_prefix`, else its `description`) and the input; the
    response is the first target and every target is kept as a reference. Examples whose first
    target is empty are skipped (nothing to learn). `only` restricts to these task names.
    """
    root = Path(root)
    wanted = set(only) if only is not None else None
    records: list[Record] = []
    for rel, task in _iter_task_json(root):
        ni = rel.startswith("natural_instructions/")
        name = ("ni/" + rel.split("/", 1)[1]) if ni else "bb/" + rel
        if (wanted is not None and name not in wanted) or not is_generative(task):
            continue
        prefix = (task.get("task_prefix") or task.get("description") or "").strip()
        for i, ex in enumerate(task["examples"]):
            if not isinstance(ex.get("input"), str):
                raise DataError(f"{root}: task {name!r} example {i} has no string 'input'")
            refs = _targets(ex["target"])
            if not refs or not refs[0].strip():
                continue
            prompt = f"{prefix}\n\n{ex['input'].strip()}" if prefix else ex["input"].strip()
            records.append(Record(f"{name}#{i}", name, _conversation(prompt, refs[0].strip()), refs,
                                  "natural_instructions" if ni else "bigbench"))
    if wanted is not None and (missing := wanted - {r.task for r in records}):
        raise DataError(f"{root}: no generative task named {sorted(missing)[:5]}")
    return check_records(records, str(root))


_NI_ALIASES = {"miscellaenous": "misc", "miscellaneous": "misc", "essential": "essential_terms"}
# BIG-bench parent tasks that are one family under several names (they share inputs)
_BB_SIBLINGS = [("simple_arithmetic", "simple_arithmetic"), ("semantic_parsing", "semantic_parsing")]


SOURCE_NAMES = {"natural_instructions": "Natural Instructions v1", "bigbench": "BIG-bench"}  # for figures


def task_family(task: str) -> str:
    """The family a task belongs to: its source dataset (NI v1) or its BIG-bench parent task."""
    if task.startswith("ni/"):
        m = re.match(r"subtask\d+_([a-z]+)", task[3:])
        word = m.group(1) if m else task[3:]
        return "ni/" + _NI_ALIASES.get(word, word)
    if task.startswith("bb/"):
        parent = task.split("/")[1]
        return "bb/" + next((group for prefix, group in _BB_SIBLINGS if parent.startswith(prefix)), parent)
    return task


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets folders and the dispatcher


def load_hf(path: str | Path, split: str = "train") -> list[Record]:
    """A `save_to_disk` folder with record columns (id, task, messages) or Flan-mini columns."""
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{path}: no split {split!r} (splits: {list(ds)})")
        ds = ds[split]
    cols = set(ds.column_names)
    if {"id", "task", "messages"} <= cols:
        make = record_from_dict
    elif {"id", "source", "conversations"} <= cols:
        make = _flan_record
    else:
        raise DataError(f"{path}: columns {sorted(cols)} are neither records (id, task, messages) "
                        "nor Flan-mini (id, source, conversations)")
    rows = ({k: v for k, v in row.items() if v is not None} for row in ds)
    return check_records([make(row, f"{path} row {i}") for i, row in enumerate(rows)], str(path))


def load_records(path: str | Path) -> list[Record]:
    """Load any supported format, recognised by its shape."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return load_hf(path)
        if (path / "benchmark_tasks").is_dir() or path.name == "benchmark_tasks":
            return load_bigbench(path)
        if any(path.glob("task*.json")):
            return load_niv2_tasks(path)
        raise DataError(f"{path}: a folder, but not an HF dataset, a NIV2 tasks folder or BIG-bench tasks")
    if path.name.endswith((".tar.gz", ".tgz")):
        return load_bigbench(path)
    if path.suffix == ".jsonl":
        return load_jsonl(path)
    if path.suffix == ".json":
        with open(path, encoding="utf-8-sig", errors="replace") as f:  # decoding errors: the loader names them
            head = f.read(1 << 16)  # a NIV2 task file names its Definition near the top; never read all
        return load_niv2_tasks(path) if '"Definition"' in head and head.lstrip().startswith("{") else load_flan_mini(path)
    raise DataError(f"{path}: unknown format (expected .jsonl, .json, a NIV2 tasks folder, an HF dataset "
                    "folder or the bigbench sdist)")
