"""zsg: how the arrangement of instruction-tuning data drives zero-shot generalization.

Data flows one way; nothing lower imports anything higher:
    assets -> data -> split -> prompt -> embed -> similarity -> tma -> arrange
    (-> train/metrics -> runs -> plots -> book)
"""
__version__ = "0.1.0"
