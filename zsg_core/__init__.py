"""zsg: how the arrangement of instruction-tuning data drives zero-shot generalization.

Data flows one way; nothing lower imports anything higher:
    assets -> data -> prompt -> split -> embed -> features -> similarity -> tma -> arrange
    -> export, model -> metrics -> train -> runs -> experiments -> plan, costs -> execute
    -> compare, stats, predict -> findings, rules -> plots -> book
"""
import warnings

# tqdm.auto warns at import inside a kernel without ipywidgets; zsg shows no bars there anyway
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
