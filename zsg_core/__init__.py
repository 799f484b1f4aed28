"""zsg: how the arrangement of instruction-tuning data drives zero-shot generalization.

Data flows one way: assets -> data -> split -> prompt -> embed -> (similarity -> arrange ->
train/metrics -> runs -> plots -> book). Nothing lower imports anything higher.
"""
__version__ = "0.1.0"
