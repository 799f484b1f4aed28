"""The Markdown tables of measured figures, built from `benchmarks/results/*.json`, never typed.

    .venv/bin/python benchmarks/tables.py           # rewrite every table in place
    .venv/bin/python benchmarks/tables.py --check   # exit 1 naming each table that is out of date

A table lives in a Markdown file between `<!-- table: NAME -->` and `<!-- /table -->`; NAME is a
function below, which reads one results file and returns the table's text. `tests/test_tables.py`
runs `--check`, so a table can never drift from the figures it shows.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = (ROOT / "README.md", ROOT / "benchmarks" / "README.md")
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _machine(m: dict) -> str:
    return f"{m['name']}, CPU kind {m['cpu_capability']}, {m['threads']} threads, {m['precision']}"


def _sci(x: float) -> str:
    """A small number as 3e-4 or 1.2e-4, not 0.0003 or 1.2e-04."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def _versions(setup: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in setup["versions"].items())


PEERS = {"zsg": "zsg", "trl": "TRL `SFTTrainer`", "trainer": "transformers `Trainer`"}


def peer_speed(results: dict | None = None) -> str:
    """README: tokens per second of each engine on the same ordered data, and zsg's ratio to it."""
    d = results or _load("bench_peer_cpu.json")
    e, s = d["engines"], d["setup"]
    lines = ["| engine | tokens/s, whole run | tokens/s, training steps only | zsg / engine, whole run | order kept |",
             "|---|---|---|---|---|"]
    for key, label in PEERS.items():
        ratio = "1" if key == "zsg" else f"{d['ratios'][f'zsg/{key}']['wall']:.2f}"
        lines.append(f"| {label} | {e[key]['tokens_per_s']:,.0f} | {e[key]['tokens_per_s_steps_only']:,.0f} | "
                     f"{ratio} | {'yes' if e[key]['order_kept'] else 'no'} |")
    cold = e["zsg"]["cold_cache_tokens_per_s"]
    lines += ["", f"{_machine(d['machine'])}; {s['model']}, the first {s['instances']} instances of NFT's order on "
                  f"split {s['split_seed']} ({s['training_tokens']:,} tokens), {s['steps']} steps of batch "
                  f"{s['batch_size']}, the bottom {s['frozen_layers']} layers frozen; medians of {s['rounds']} "
                  f"alternating rounds (`benchmarks/bench_peer.py`, `results/bench_peer_cpu.json`; {_versions(s)}). "
                  f"zsg reads its frozen layers' outputs from its cache; its first run on a new split fills it: "
                  f"{cold:,.0f} tokens/s that time."]
    return "\n".join(lines) + "\n"


def peer_curves(results: dict | None = None) -> str:
    """benchmarks/README: each engine's held-out loss at the evaluated steps, one evaluation function."""
    d = results or _load("bench_peer_cpu.json")
    e = d["engines"]
    steps = list(e["zsg"]["heldout_loss"])
    names = dict(PEERS, zsg_fp32="zsg in fp32 (the bf16 yardstick)")
    lines = ["| engine | " + " | ".join(f"step {s}" for s in steps) + " | first / last training loss |",
             "|---|" + "---|" * len(steps) + "---|"]
    for key, label in names.items():
        if key not in e:
            continue
        train = e[key].get("train_loss_first_last")
        lines.append(f"| {label} | " + " | ".join(f"{e[key]['heldout_loss'][s]:.4f}" for s in steps)
                     + f" | {f'{train[0]:.4f} / {train[1]:.4f}' if train else ''} |")
    short = {"zsg": "zsg", "trl": "TRL", "trainer": "Trainer", "zsg_fp32 (bf16 noise)": "zsg in fp32 (bf16 rounding alone)"}
    lines += ["", "| difference in held-out loss | " + " | ".join(f"step {s}" for s in steps) + " |",
              "|---|" + "---|" * len(steps)]
    for name, gaps in d["heldout_loss_gaps"].items():
        a, b = name.split("-", 1)
        lines.append(f"| {short[a]} - {short[b]} | " + " | ".join(f"{gaps[s]:+.4f}" for s in steps) + " |")
    fb = d["first_batch_loss"]
    ways = {"zsg": "zsg, bottom from its cache", "zsg_no_cache": "zsg, every layer computed",
            "transformers": "transformers, padded forward"}
    lines += ["", "| first batch's loss at the starting weights | " + " | ".join(ways[k] for k in fb["bf16"]) + " |",
              "|---|" + "---|" * len(fb["bf16"])]
    for precision, losses in fb.items():
        lines.append(f"| {precision} | " + " | ".join(f"{losses[k]:.4f}" if k in losses else "not computed"
                                                     for k in fb["bf16"]) + " |")
    return "\n".join(lines) + "\n"


def executors(results: dict | None = None) -> str:
    """benchmarks/README: the same runs through each executor, wall time and ratio to in-process."""
    d = results or _load("bench_executors_cpu.json")
    s, m = d["setup"], d["machine"]
    lines = ["| executor | wall, median (s) | rounds (s) | / in-process |", "|---|---|---|---|"]
    for name, e in d["executors"].items():
        lines.append(f"| {name} | {e['median']:.1f} | {', '.join(f'{w:.1f}' for w in e['wall_seconds'])} | "
                     f"{e['ratio_to_in_process']:.2f} |")
    lines += ["", f"{m['name']}, CPU kind {m['cpu_capability']}, {m['cores']} cores; {s['runs']} runs of the "
                  f"{s['profile']} profile on split {s['split_seed']}, {s['steps']} steps each, caches warm; "
                  f"{s['rounds']} alternating rounds (`benchmarks/bench_executors.py`, `results/bench_executors_cpu.json`)."]
    return "\n".join(lines) + "\n"


def embed_precision(results: dict | None = None) -> str:
    """benchmarks/README: MiniLM in bf16 against fp32, its speed and what it changes downstream."""
    d = results or _load("bench_embed_precision_cpu.json")
    lines = ["| split | training / held-out texts | cosine bf16 vs fp32, min (mean) | NFT's order the same | "
             "positions moved | NFT's first 480 shared | TMA's min rounds the same | first round that differs |",
             "|---|---|---|---|---|---|---|---|"]
    for s in d["splits"]:
        lines.append(f"| {s['split']} | {s['train']:,} / {s['test']} | {s['cosine_all_min']:.6f} ({s['cosine_all_mean']:.6f}) | "
                     f"{'yes' if s['nft_same_order'] else 'no'} | {s['nft_positions_moved']:,} | {s['nft_first_480_overlap']:.1%} | "
                     f"{'yes' if s['tma_same_rounds'] else 'no'} | {s['tma_first_round_that_differs'] if s['tma_first_round_that_differs'] is not None else '–'} |")
    lines += ["", f"Encoding {d['texts_timed']} texts afresh: fp32 {d['fp32_texts_per_s']} texts/s, bf16 "
                  f"{d['bf16_texts_per_s']} texts/s ({d['bf16_speedup']}x; medians of {d['rounds']} alternating rounds); "
                  f"CPU kind {d['cpu_capability']}, {d['threads']} threads (`benchmarks/bench_embed_precision.py`, "
                  "`results/bench_embed_precision_cpu.json`)."]
    return "\n".join(lines) + "\n"


COST_PARTS = {"prepare_seconds": "preparing (split, embedding, arranging)", "cache_seconds": "frozen cache", "train_seconds": "training",
              "eval_seconds": "evaluation", "generate_seconds": "generation"}


def arrange_speed(results: dict | None = None) -> str:
    """benchmarks/README: the arrangement library against the bare product and the paper's algorithm, per N."""
    d = results or _load("bench_arrange_cpu.json")
    estimated = {(e["baseline"], e["N"]): e["full_s_estimate"] for e in d["extrapolated"]}

    def seconds(row: dict, key: str, tag: str) -> str:
        if key in row:
            return f"{row[key]:,.3g}" if row[key] < 100 else f"{row[key]:,.0f}"
        if (tag, row["N"]) in estimated and key.endswith("_full_s"):
            return f"~{estimated[tag, row['N']]:,} (est.)"
        return "not run"

    lines = ["| N | product | wsd | TMA, budget | / product | TMA, whole pool | / product | peak MB (input MB) | "
             "paper code, budget | paper code, whole | paper test-major, budget | paper test-major, whole |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["sizes"]:
        budget = f"{r['tma_budget_s']:.3g}" + (" (budget = N)" if r["budget"] >= r["N"] else "")
        lines.append(f"| {r['N']:,} | {r['product_s']:.3g} | {r['wsd_s']:.3g} | {budget} | "
                     f"{r['tma_budget_over_product']:.2f} | {r['tma_full_s']:.3g} | {r['tma_full_over_product']:.2f} | "
                     f"{r['peak_mb']:,} ({r['input_mb']:,}) | "
                     + " | ".join(seconds(r, f"{tag}_{kind}_s", tag) for tag in ("paper", "paper_tm")
                                  for kind in ("budget", "full")) + " |")
    unequal = [f"{r['N']:,} ({k})" for r in d["sizes"] for k, v in r.items() if k.endswith("_equal") and not v]
    last = d["sizes"][-1]
    lines += ["", f"Seconds; synthetic unit vectors, d = {last['d']}, M = {last['M']:,} held-out points, budget "
                  f"{max(r['budget'] for r in d['sizes']):,} where N allows ({last['rounds_budget']} rounds at the "
                  f"largest N). "
                  + ("Every baseline run gave exactly our rounds. " if not unequal
                     else f"Baseline rounds differing from ours: {', '.join(unequal)}. ")
                  + f"{_cpu(d)}, numpy {d['machine']['numpy']} "
                  "(`benchmarks/bench_arrange.py`, `results/bench_arrange_cpu.json`)."]
    return "\n".join(lines) + "\n"


def _kind_heading(kind: str) -> str:
    """The line above a machine kind's table: 'On CPU kind AVX2:', 'On cuda:NVIDIA H200:'."""
    return f"On CPU kind {kind.removeprefix('cpu:')}:" if kind.startswith("cpu:") else f"On {kind}:"


def _per_kind(profile: str) -> list[tuple[str, dict]]:
    """(file name, figures) of each machine kind's `book_costs_<profile>_<kind>.json`, in reverse name order."""
    files = sorted(RESULTS.glob(f"book_costs_{profile}_*.json"), reverse=True)
    return [(f.name, json.loads(f.read_text())) for f in files]


def book_costs(profile: str) -> str:
    """benchmarks/README: where each chapter's time goes, summed from its runs' manifests, per machine kind."""
    out = []
    for name, d in _per_kind(profile):
        lines = [_kind_heading(d["machine_kind"]), "",
                 "| chapter | runs (stored) | wall (min) | " + " | ".join(COST_PARTS.values()) + " | other |",
                 "|---|---|---|" + "---|" * (len(COST_PARTS) + 1)]
        total = {"runs": 0, "stored": 0, "wall_seconds": 0.0, **{p: 0.0 for p in COST_PARTS}}
        for chapter, c in d["chapters"].items():
            for k in total:
                total[k] += c[k]
        for chapter, c in [*d["chapters"].items(), ("all", total)]:
            other = c["wall_seconds"] - sum(c[p] for p in COST_PARTS)
            lines.append(f"| {chapter} | {c['runs']} ({c['stored']}) | {c['wall_seconds'] / 60:.1f} | "
                         + " | ".join(f"{c[p] / 60:.1f}" for p in COST_PARTS) + f" | {other / 60:.1f} |")
        lines += ["", f"Minutes, summed over the stored runs' manifests (`benchmarks/book_costs.py --profile {profile}`, "
                      f"`results/{name}`); each run counted in the first chapter that reads it; "
                      f"{', '.join(map(str, d['threads'])) or 'no'} thread{'' if d['threads'] == [1] else 's'} per run."]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def book_sittings(profile: str) -> str:
    """benchmarks/README: the first build of the profile's book, sitting by sitting, against the plan, per machine kind."""
    out = []
    for name, d in _per_kind(profile):
        if "predicted_from_empty" not in d:  # written before the sittings were counted
            continue
        lines = [_kind_heading(d["machine_kind"]), "",
                 "| sitting | started (UTC) | runs | wall (min) | runs' own (min) |", "|---|---|---|---|---|"]
        for i, s in enumerate(d["sittings"], 1):
            lines.append(f"| {i} | {s['started'][:16].replace('T', ' ')} | {s['runs']} | {s['wall_seconds'] / 60:.1f} | "
                         f"{s['run_seconds'] / 60:.1f} |")
        wall = sum(s["wall_seconds"] for s in d["sittings"])
        own = sum(s["run_seconds"] for s in d["sittings"])
        n = sum(s["runs"] for s in d["sittings"])
        lines.append(f"| all | | {n} | {wall / 60:.1f} | {own / 60:.1f} |")
        p = d["predicted_from_empty"]
        ratio = f"{own / p['stored_seconds']:.2f}x measured over predicted" if p["stored_seconds"] else "none of them predicted"
        lines += ["", f"From an empty store the plan predicts {p['seconds'] / 60:.1f} min for {p['runs'] - p['unpredicted']} of "
                      f"its {p['runs']} listed runs ({p['unpredicted']} with no rate yet, {p['unsized']} more listed once "
                      f"chapter 6's pools are embedded), and {p['stored_seconds'] / 60:.1f} min for the {n} runs the "
                      f"sittings trained ({ratio}; the cost model is fitted on these same manifests, so this is its fit; "
                      f"`plan_accuracy.py` measures its foresight; `results/{name}`). A sitting ends where no run started "
                      "for 20 minutes; runs that shared the cores with tests or helpers are counted as they ran."]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def plan_accuracy(profile: str) -> str:
    """benchmarks/README: the plan's foresight, fitted on the runs before a moment, judged on those after."""
    d = _load(f"plan_accuracy_{profile}.json")
    lines = ["| runs after the moment | predicted (min) | measured (min) | predicted / measured | not predicted (measured, min) |",
             "|---|---|---|---|---|",
             f"| {d['runs']} | {d['predicted_seconds'] / 60:.1f} | {d['measured_seconds'] / 60:.1f} | "
             f"{d['predicted_over_measured']:.2f} | {d['unpredicted']} ({d['unpredicted_measured_seconds'] / 60:.1f}) |"]
    lines += ["", f"Fitted on the {d['fitted_on']} runs stored before {d['before'][:16].replace('T', ' ')} UTC, judged on "
                  f"the plan's runs ({', '.join(d['chapters'] or ['every chapter'])}) trained after it; measured over "
                  f"the runs it predicted ({d['machine_kind']}; `benchmarks/plan_accuracy.py`, "
                  f"`results/plan_accuracy_{profile}.json`)."]
    return "\n".join(lines) + "\n"


def profile_variants() -> str:
    """benchmarks/README: the default profile's first build under smaller profiles, predicted."""
    d = _load("profile_variants_cpu.json")
    lines = ["| variant of cpu | runs | predicted (min) | not predicted yet | TMA runs not sized | gives up |",
             "|---|---|---|---|---|---|"]
    for name, v in d["variants"].items():
        lines.append(f"| {name} | {v['runs']} | {v['predicted_seconds'] / 60:.0f} | {v['unpredicted']} | {v['unsized']} | "
                     f"{v['gives_up']} |")
    lines += ["", f"Predicted from an empty store by the cost model fitted on {d['fitted_on']} stored runs "
                  f"({d['machine_kind']}), as `zsg plan` would before any run (`benchmarks/profile_variants.py`, "
                  "`results/profile_variants_cpu.json`); a run of a set-up or method no stored run has is not "
                  "predicted, and chapter 6's TMA runs are sized only once their pools are embedded."]
    return "\n".join(lines) + "\n"


def _cpu(d: dict) -> str:
    """The machine of an older results file, which records its CPU kind and threads (or cores) only."""
    m = d.get("machine", d)
    count = f"{m['threads']} threads" if "threads" in m else f"{m['cores']} cores"
    return f"{m['name'] + ', ' if 'name' in m else ''}CPU kind {m['cpu_capability']}, {count}"


def integrity_assets(results: dict | None = None) -> str:
    """README: what checking the default assets costs, every byte (`zsg prepare`) and sizes only (`--list`)."""
    d = results or _load("bench_integrity_cpu.json")
    a = d["assets"]
    lines = ["| asset | files | MB | every byte (s) | sizes and times only (ms) |", "|---|---|---|---|---|"]
    for name, x in a.items():
        lines.append(f"| {name} | {x['files']:,} | {x['mb']:,.0f} | {x['full_check_s']:.2f} | {x['cheap_check_s'] * 1000:.1f} |")
    lines.append(f"| all {len(a)} | {sum(x['files'] for x in a.values()):,} | {sum(x['mb'] for x in a.values()):,.0f} | "
                 f"{sum(x['full_check_s'] for x in a.values()):.2f} | {sum(x['cheap_check_s'] for x in a.values()) * 1000:.1f} |")
    lines += ["", f"{_cpu(d)}, files in the page cache (`benchmarks/bench_integrity.py`, `results/bench_integrity_cpu.json`)."]
    return "\n".join(lines) + "\n"


def integrity(results: dict | None = None) -> str:
    """benchmarks/README: each integrity check against the same read without it."""
    d = results or _load("bench_integrity_cpu.json")
    a, r, h, e = d["assets"], d["run_load"], d["hidden_cache"], d["embedding_shard"]

    def each(key: str, fmt: str, scale: float = 1.0) -> str:
        return " / ".join(format(x[key] * scale, fmt) for x in a.values())
    sizes = " / ".join(f"{n} {x['mb']:,.0f} MB" for n, x in a.items())
    lines = ["| check | with the check | without | ratio |", "|---|---|---|---|",
             f"| assets, every byte (`zsg prepare`, first load): {sizes} | {each('full_check_s', '.2f')} s | "
             f"read only: {each('read_only_s', '.2f')} s | {each('full_vs_read', '.1f')} |",
             f"| assets, cheap (`zsg prepare --list`: sizes and times) | {each('cheap_check_s', '.1f', 1000)} ms | | "
             f"full / cheap: {each('full_vs_cheap', ',.0f')} |",
             f"| `runs.load` of a run ({r['tables_kb']:.0f} kB of tables) | {r['load_verified_s'] * 1000:.1f} ms | "
             f"parquet only {r['parquet_only_s'] * 1000:.1f} ms | {r['verified_vs_parquet_only']:.2f} |",
             f"| frozen-layer cache entry ({h['mb'] * 1000 / h['entries']:.0f} kB) | {h['read_checked_ms_per_entry']:.2f} ms | "
             f"bare safetensors {h['read_bare_ms_per_entry']:.2f} ms | {h['checked_vs_bare']:.1f} (computing it: "
             f"{h['compute_ms_per_entry']:.0f} ms) |",
             f"| embedding shard, {e['vectors']:,} vectors | {e['read_checked_s'] * 1000:.1f} ms | `np.load` "
             f"{e['np_load_s'] * 1000:.1f} ms | {e['checked_vs_np_load']:.2f} |"]
    lines += ["", f"Every byte of all {len(a)} assets: {sum(x['full_check_s'] for x in a.values()):.1f} s per process that "
                  f"loads them; a cache entry's checksum is {h['read_checked_ms_per_entry'] / h['compute_ms_per_entry']:.2%} "
                  f"of computing it. {_cpu(d)}, files in the page cache (`benchmarks/bench_integrity.py`, "
                  "`results/bench_integrity_cpu.json`)."]
    return "\n".join(lines) + "\n"


def features(results: dict | None = None) -> str:
    """README and benchmarks/README: seconds per 1,000 instances of each feature kind, next to its baseline."""
    d = results or _load("bench_features_cpu.json")
    lines = ["| kind | s per 1,000 | baseline s per 1,000 | ratio | bytes on disk per instance |", "|---|---|---|---|---|",
             f"| minilm (encoding) | {d['minilm_s_per_1000']:.1f} | | | {d['minilm_disk_bytes_per_instance']:,} |",
             f"| hidden | {d['hidden_s_per_1000']:.1f} | forward {d['forward_s_per_1000']:.1f} | {d['hidden_vs_forward']:.2f} | "
             f"{d['hidden_disk_bytes_per_instance']:,} |",
             f"| gradient ({d['gradient_dims']:,} dims) | {d['gradient_s_per_1000']:.1f} | forward + backward "
             f"{d['forward_backward_s_per_1000']:.1f} | {d['gradient_vs_forward_backward']:.2f} | "
             f"{d['gradient_disk_bytes_per_instance']:,} |"]
    lines += ["", f"{_cpu(d)}, {d['precision']}; {d['model']} with {d['frozen_layers']} layers frozen and their outputs "
                  f"cached, {d['instances']} training instances of split 0. The whole gradient call (warm-up included, "
                  f"on a fresh feature store) {d['gradient_call_with_warmup_s']:.1f} s; a cached call of hidden "
                  f"{d['hidden_cached_call_s']:.2f} s (`benchmarks/bench_features.py`, `results/bench_features_cpu.json`)."]
    return "\n".join(lines) + "\n"


def embed_speed(results: dict | None = None) -> str:
    """README and benchmarks/README: MiniLM's encoding rate, one process against several and against its cache."""
    d = results or _load("bench_embed_cpu.json")
    lines = ["| MiniLM | texts/s | / one process | a 100k pool (h), best rate | a 1M pool (h), best rate |", "|---|---|---|---|---|",
             f"| encoding, one process | {d['encode_texts_per_s']:,.1f} | 1 | "
             f"{d['hours_100k_at_best']:.1f} | {d['hours_1m_at_best']:.1f} |",
             f"| encoding, 2 processes (pool start included) | {d['encode_texts_per_s_2_processes']:,.1f} | "
             f"{d['processes_speedup']:.2f} | | |",
             f"| from the cache | {d['cached_texts_per_s']:,.0f} | {d['cache_speedup']:,.0f} | | |"]
    lines += ["", f"{_cpu(d)}, {d['precision']}; {d['texts']} real training texts of the default split (\"all\" text, "
                  f"truncated at MiniLM's 256 word pieces); a pool's hours are a straight extrapolation "
                  "(`benchmarks/bench_embed.py`, `results/bench_embed_cpu.json`)."]
    return "\n".join(lines) + "\n"


def cache_history(results: dict | None = None) -> str:
    """benchmarks/README: the history-independent frozen-layer cache against the packed one and one at a time."""
    d = results or _load("bench_cache_cpu.json")
    ways = {"before": "before: packed, shared prefixes", "now": "now: fixed-width rows, no sharing", "alone": "one at a time"}
    lines = ["| computation | s per instance (median) | rounds | entries differing between histories | differing from alone |",
             "|---|---|---|---|---|"]
    for key, label in ways.items():
        w = d[key]
        alone = "0 (itself)" if key == "alone" else f"{w['differ_from_alone']} of {d['items']}"
        lines.append(f"| {label} | {w['s_per_instance']:.4f} | {', '.join(f'{x:.4f}' for x in w['rounds'])} | "
                     f"{w['differ_between_histories']} of {w['of']} | {alone} |")
    lines += ["", f"Now / before {d['now_over_before']:.2f}x, one at a time / now {d['alone_over_now']:.2f}x. {_cpu(d)}; "
                  f"{d['model']}, {d['frozen_layers']} layers, {d['items']} instances of split 0 in rows of "
                  f"{d['pack_tokens']:,} tokens; medians of {len(d['now']['rounds'])} alternating rounds "
                  "(`benchmarks/bench_cache.py`, `results/bench_cache_cpu.json`)."]
    return "\n".join(lines) + "\n"


def train_speed(results: dict | None = None) -> str:
    """benchmarks/README: the engine's old path against its new one, training, evaluation, cache and generation."""
    d = results or _load("bench_train_cpu.json")
    m, t, e, c, g = d["machine"], d["train"], d["eval"], d["cache"], d["generation"]

    def rounds(xs: list) -> str:
        return " / ".join(f"{x:.2f}" for x in xs)
    lines = ["| | old path | new path | speed-up, median (rounds) |", "|---|---|---|---|",
             f"| training, bare loop ({t['steps']} steps, {t['tokens']:,} tokens) | {t['old']['tokens_per_s']:,.0f} tokens/s, "
             f"{t['old']['share_of_peak']:.0%} of peak | {t['new']['tokens_per_s']:,.0f} tokens/s (rounds "
             f"{min(t['new']['tokens_per_s_rounds']):,.0f}-{max(t['new']['tokens_per_s_rounds']):,.0f}), "
             f"{t['new']['share_of_peak']:.0%} of peak | {t['speedup']:.2f}x ({rounds(t['speedup_rounds'])}) |",
             f"| training, the real loop (`train`) | | {t['train_loop_tokens_per_s']:,.0f} tokens/s, loop overhead "
             f"{t['loop_overhead']:+.1%} (rounds {min(t['loop_overhead_rounds']):+.1%} to {max(t['loop_overhead_rounds']):+.1%}) | |",
             f"| one held-out evaluation ({e['instances']} instances, {e['tokens']:,} tokens) | {e['old']['seconds']:.2f} s, "
             f"{e['old']['share_of_peak']:.0%} of peak | {e['new']['seconds']:.2f} s, {e['new']['share_of_peak']:.0%} of peak | "
             f"{e['speedup']:.2f}x ({rounds(e['speedup_rounds'])}) |",
             f"| frozen-layer cache ({c['instances']} instances through {d['frozen_layers']} layers) | "
             f"{c['old']['seconds_per_instance']:.3f} s/instance, {c['old']['share_of_peak']:.0%} of peak | "
             f"{c['new']['seconds_per_instance']:.3f} s/instance, {c['new']['share_of_peak']:.0%} of peak | "
             f"{c['speedup']:.2f}x ({rounds(c['speedup_rounds'])}) |",
             f"| generation ({g['prompts']} prompts, greedy, {g['max_new_tokens']} new tokens) | {g['old_seconds']:.1f} s | "
             f"{g['new_seconds']:.1f} s | {g['speedup']:.2f}x |"]
    profile = ", ".join(f"`{k}` {v:.0%}" for k, v in d["step_profile"].items())
    lines += ["", f"{m['cpu']}, CPU kind {m['cpu_capability']}, {m['threads']} threads, {m['precision_why']}; {d['model']}, "
                  f"the bottom {d['frozen_layers']} layers frozen and cached, batch {t['batch_size']}; medians of "
                  f"{len(t['speedup_rounds'])} alternating rounds; peak: the {m['matmul_peak_tflops']:.2f} TFLOP/s of a "
                  f"2048^2 matmul in the same process. FLOPs per training token {t['old']['flops_per_token'] / 1e6:.1f}M "
                  f"(old), {t['new']['flops_per_token'] / 1e6:.1f}M (new). A new step's time (torch profiler): {profile}. "
                  f"Peak memory {d['peak_rss_mib']:,.0f} MiB (`benchmarks/bench_train.py --profile {d['profile']}`, "
                  "`results/bench_train_cpu.json`).",
              "", f"The numbers do not move: the two paths' per-step training losses differ by at most "
                  f"{t['step_loss_max_abs_diff']:.4f} over the {t['steps']} steps (step 1: {t['step_losses_old'][0]:.4f} old, "
                  f"{t['step_losses_new'][0]:.4f} new); per-instance held-out losses against each instance run alone by at "
                  f"most {e['new_vs_alone_max_abs_diff']:.3f} (new) and {e['old_vs_alone_max_abs_diff']:.3f} (old), mean "
                  f"new {e['mean_loss_new']:.4f} against old {e['mean_loss_old']:.4f}; the cache's values from one at a "
                  f"time by at most {_sci(c['max_rel_diff'])} of the largest value; the old and new paths gave the same "
                  f"greedy answer for {g['same_answers']} of the {g['prompts']} prompts (in {m['precision']}; in fp32 the tests find packed = "
                  "alone = transformers' own forward)."]
    return "\n".join(lines) + "\n"


def lr_sweep(results: dict | None = None) -> str:
    """benchmarks/README: held-out loss of random order at a few steps for each learning rate, and the pick."""
    d = results or _load("lr_sweep_cpu.json")
    shown = ["0", "10", "20", "30"]
    last = max(d["sweep"][0]["heldout_loss"], key=int)
    shown.append(last)
    lines = ["| lr | " + " | ".join(f"step {s}" for s in shown) + " | train loss, last 5 steps |",
             "|---|" + "---|" * (len(shown) + 1)]
    for r in d["sweep"]:
        bold = "**" if r["lr"] == d["pick"] else ""
        lines.append(f"| {bold}{_sci(r['lr'])}{bold} | " + " | ".join(f"{r['heldout_loss'][s]:.3f}" for s in shown)
                     + f" | {r['final_train_loss_last5']:.3f} |")
    pick = next(r["heldout_loss"] for r in d["sweep"] if r["lr"] == d["pick"])
    steps = sorted(pick, key=int)
    half = next(s for s in steps if pick["0"] - pick[s] >= 0.5 * (pick["0"] - pick[last]))
    lines += ["", f"Held-out loss (the mean over the held-out instances), random order, profile {d['profile']}. "
                  f"Rule: the {d['rule']}: {_sci(d['pick'])} (the profile's: {_sci(d['profile_lr'])}). With it, half of the "
                  f"fall from step 0 to step {last} is made by step {half}, so an early phase stays visible "
                  "(`benchmarks/lr_sweep.py`, `results/lr_sweep_cpu.json`)."]
    return "\n".join(lines) + "\n"


TABLES = {"arrange-speed": arrange_speed, "lr-sweep": lr_sweep, "peer-speed": peer_speed, "peer-curves": peer_curves, "executors": executors, "embed-precision": embed_precision,
          "book-costs-smoke": lambda: book_costs("smoke"), "book-costs-cpu": lambda: book_costs("cpu"),
          "book-sittings-cpu": lambda: book_sittings("cpu"), "profile-variants": profile_variants,
          "plan-accuracy-cpu": lambda: plan_accuracy("cpu"), "integrity-assets": integrity_assets,
          "integrity": integrity, "features": features, "embed-speed": embed_speed, "cache-history": cache_history,
          "train-speed": train_speed}


def rebuilt(text: str) -> str:
    def fill(m: re.Match) -> str:
        if m["name"] not in TABLES:
            raise SystemExit(f"unknown table {m['name']!r}; known: {', '.join(TABLES)}")
        return m.group(1) + TABLES[m["name"]]() + m.group(4)
    return BLOCK.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    args = parser.parse_args()
    stale = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        new = rebuilt(text)
        if new != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        print(f"out of date (run benchmarks/tables.py): {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
