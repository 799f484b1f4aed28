"""zsg: how the arrangement of instruction-tuning data drives zero-shot generalization.

Data flows one way: assets -> data -> features -> similarity -> arrange -> train -> runs ->
experiments -> findings -> plots -> book. The modules' imports follow `LAYERS`: a module imports
only modules of lower layers (tests/test_layers.py holds every import to it, those inside functions
too). Where that order differs from the data's: `similarity`, `stats`, `findings`, `rules` and
`plots` are pure computation over what they are given, so they sit low; `features` computes the
LM's hidden states and gradients with the model and its training loop, so it sits above `train`,
and `arrange` above it; `config` validates a run's arrangement and features, so it sits above them.
"""
import warnings

# tqdm.auto warns at import inside a kernel without ipywidgets; zsg shows no bars there anyway
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("util", "toc", "similarity", "attention", "cast_once"),  # nothing of zsg below them
    ("data", "assets", "tma"),
    ("prompt", "precision", "embed", "stats", "adaptive"),
    ("split", "packing", "findings"),
    ("model", "rules", "plots"),
    ("metrics",),
    ("train",),
    ("features",),
    ("arrange",),
    ("config", "export"),
    ("runs",),
    ("experiments", "compare"),
    ("costs", "predict"),
    ("plan",),
    ("execute",),
    ("book",),
    ("cli",),
)
