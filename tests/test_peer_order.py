"""Does an arranged order survive the trainer a user picks instead of zsg's? zsg's arranged JSONL
through the README's recipes for TRL's SFTTrainer and transformers' Trainer, on a tiny random-init
model, with a hook recording which records each training forward received. The recipes keep the
order; TRL's defaults do not, which is why the README warns about them.

LLaMA-Factory and axolotl, also named by the README, are not run: their releases pin a
transformers, datasets and TRL older than zsg's (README, "Order your own SFT data")."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from zsg_core.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from zsg_core.data import Record, write_jsonl

pytestmark = pytest.mark.slow  # trains, loads a model or encodes with MiniLM: `make test`, not `make test-fast`

TASKS = ("cooking", "maths", "travel", "music")
PER_TASK = 4
BATCH = 4


@pytest.fixture(scope="module")
def arranged_file(tmp_path_factory) -> Path:
    """`zsg arrange --method round-robin` over 16 records, each question carrying a tag [rNN] the
    hook can read back from the tokens."""
    folder = tmp_path_factory.mktemp("peer")
    train = [Record(f"r{t * PER_TASK + i:02d}", task,
                    [{"role": "user", "content": f"[r{t * PER_TASK + i:02d}] A question about {task}, number {i}?"},
                     {"role": "assistant", "content": f"An answer about {task}."}])
             for t, task in enumerate(TASKS) for i in range(PER_TASK)]
    test = [Record("held", "gardening", [{"role": "user", "content": "How deep do I plant tulips?"},
                                         {"role": "assistant", "content": "About 15 cm."}])]
    write_jsonl(train, folder / "train.jsonl")
    write_jsonl(test, folder / "test.jsonl")
    out = folder / "arranged.jsonl"
    assert main(["arrange", "--train", str(folder / "train.jsonl"), "--test", str(folder / "test.jsonl"),
                 "--method", "round-robin", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, smol_tokenizer) -> Path:
    """A tiny random-init Llama saved with the real SmolLM2 tokenizer: a folder a trainer loads by path."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=smol_tokenizer.bos_token_id, eos_token_id=smol_tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return folder


def received(trainer, tokenizer, labels: list | None = None) -> list[list[str]]:
    """Train, recording the tags of the records each training forward received, in batch order
    (and, given a list, the label rows it received, padding dropped)."""
    batches: list[list[str]] = []

    def hook(module, args, kwargs):
        if module.training:
            ids = kwargs.get("input_ids", args[0] if args else None)
            batches.append([re.search(r"\[(r\d\d)\]", tokenizer.decode(row)).group(1) for row in ids.tolist()])
            if labels is not None:
                lengths = kwargs["attention_mask"].sum(1).tolist()
                labels.extend(row[:n] for row, n in zip(kwargs["labels"].tolist(), lengths))

    handle = trainer.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        trainer.train()
    finally:
        handle.remove()
    return batches


def arranged_ids(path: Path) -> list[list[str]]:
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert ids != sorted(ids)  # round-robin moved them: keeping the order is not keeping the input's
    return [ids[k: k + BATCH] for k in range(0, len(ids), BATCH)]


def _trl(arranged_file: Path, model_folder: Path, tmp_path: Path, labels: list | None = None,
         **sampling) -> list[list[str]]:
    """The README's TRL recipe, word for word but for the tiny run's size and `sampling`."""
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    train = load_dataset("json", data_files=str(arranged_file), split="train")  # "messages" column
    args = SFTConfig(output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=BATCH,
                     use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True, **sampling)
    trainer = SFTTrainer(model=str(model_folder), args=args, train_dataset=train)
    return received(trainer, trainer.processing_class, labels)


def test_trl_with_the_readmes_recipe_trains_the_arranged_order(arranged_file, model_folder, tmp_path):
    labels: list = []
    got = _trl(arranged_file, model_folder, tmp_path, labels, train_sampling_strategy="sequential")
    assert got == arranged_ids(arranged_file)
    # what the README says of this recipe: TRL's defaults put the loss on every token of the chat
    # template (system prompt and questions included), not on the answers as zsg and the paper do
    assert all(-100 not in row for row in labels) and len(labels) == 16


def test_trl_with_its_defaults_breaks_the_arranged_order(arranged_file, model_folder, tmp_path):
    got = _trl(arranged_file, model_folder, tmp_path)
    want = arranged_ids(arranged_file)
    assert sorted(i for b in got for i in b) == sorted(i for b in want for i in b)  # the same records, once each
    assert got != want


def test_trl_on_zsgs_tokens_trains_the_arranged_order_with_zsgs_loss_mask(arranged_file, model_folder, tmp_path):
    """The README's recipe for the paper's format in TRL: the rows `prompt.encode` makes (loss on
    the answers and their EOS only), which TRL takes as they are."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from zsg_core.data import load_jsonl
    from zsg_core.prompt import encode

    tok = AutoTokenizer.from_pretrained(model_folder)
    rows = [encode(r, tok) for r in load_jsonl(arranged_file)]
    train = Dataset.from_dict({"input_ids": [i for i, _ in rows], "labels": [l for _, l in rows]})
    args = SFTConfig(output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=BATCH,
                     train_sampling_strategy="sequential", use_cpu=True, report_to="none", save_strategy="no",
                     disable_tqdm=True)
    labels: list = []
    trainer = SFTTrainer(model=str(model_folder), args=args, train_dataset=train, processing_class=tok)
    assert received(trainer, tok, labels) == arranged_ids(arranged_file)
    assert labels == [l for _, l in rows]  # the answers and their EOS, nothing of the prompt


def test_transformers_trainer_with_a_sequential_sampler_trains_the_arranged_order(arranged_file, model_folder, tmp_path):
    """The plain Trainer: the records encoded by zsg's own `prompt.encode` (loss on the answers and
    their EOS), the collator the README points to (`bench_peer.pad_and_mask`), sequential sampling."""
    from bench_peer import pad_and_mask
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )

    from zsg_core.data import load_jsonl
    from zsg_core.metrics import pad_id
    from zsg_core.prompt import encode

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    encoded = [encode(r, tokenizer) for r in load_jsonl(arranged_file)]
    data = Dataset.from_dict({"input_ids": [i for i, _ in encoded], "labels": [l for _, l in encoded]})

    args = TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=BATCH,
                             train_sampling_strategy="sequential", use_cpu=True, report_to="none",
                             save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model_folder), args=args, train_dataset=data,
                      data_collator=pad_and_mask(pad_id(tokenizer)))
    assert received(trainer, tokenizer) == arranged_ids(arranged_file)


def test_an_adaptive_order_plugs_into_transformers_trainer_as_its_batch_sampler(arranged_file, model_folder, tmp_path):
    """README, "Orders that watch the model": zsg's loss-driven order as a Trainer's batch sampler,
    each batch decided while the model trains from a probe of the user's (the validation loss of
    each task's one validation record); the model receives exactly the batches the order decided."""
    import torch
    from bench_peer import pad_and_mask
    from datasets import Dataset
    from torch.utils.data import DataLoader
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from zsg_core.adaptive import BatchSampler, LossRounds
    from zsg_core.data import load_jsonl
    from zsg_core.metrics import pad_id
    from zsg_core.prompt import encode

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    records = load_jsonl(arranged_file)
    encoded = [encode(r, tokenizer) for r in records]
    data = Dataset.from_dict({"input_ids": [i for i, _ in encoded], "labels": [l for _, l in encoded]})
    collate = pad_and_mask(pad_id(tokenizer))
    validation = {t: collate([dict(zip(("input_ids", "labels"), encode(Record(f"v-{t}", t, [
        {"role": "user", "content": f"One more question about {t}?"}, {"role": "assistant", "content": f"About {t}."}]),
        tokenizer)))]) for t in TASKS}
    # each task's nearest records: its own first, in file order, then the rest
    nearest = {t: [i for i, r in enumerate(records) if r.task == t] + [i for i, r in enumerate(records) if r.task != t]
               for t in TASKS}
    order = LossRounds(nearest, BATCH, every=1)
    decided: list[list[str]] = []
    next_batch = order.next_batch

    def recorded(probe) -> list[int]:  # what the order decided, to compare with what the model received
        batch = next_batch(probe)
        decided.append([records[i].id for i in batch])
        return batch

    order.next_batch = recorded

    class Probe:
        def validation_losses(self) -> dict[str, float]:
            model = trainer.model
            was_training = model.training
            model.eval()
            with torch.no_grad():
                losses = {t: float(model(**batch).loss) for t, batch in validation.items()}
            model.train(was_training)
            return losses

    class AdaptiveTrainer(Trainer):
        def get_train_dataloader(self) -> DataLoader:
            return DataLoader(self.train_dataset, batch_sampler=BatchSampler(order, Probe(), steps=len(records) // BATCH),
                              collate_fn=self.data_collator)

    args = TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=BATCH,
                             use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = AdaptiveTrainer(model=AutoModelForCausalLM.from_pretrained(model_folder), args=args, train_dataset=data,
                              data_collator=collate)
    got = received(trainer, tokenizer)
    assert got == decided and len(got) == len(records) // BATCH  # what the model received is what the order decided
    assert sorted(i for b in got for i in b) == sorted(r.id for r in records)  # the same records, once each
    assert order.reranked_at == list(range(len(records) // BATCH))  # asked the model before every batch
