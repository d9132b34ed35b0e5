"""Datasets and input pipelines."""

from fdl.data.batching import epoch_batches, split_indices
from fdl.data.toy import TOY_DATASETS, make_toy_dataset, two_moons, xor

__all__ = ["TOY_DATASETS", "epoch_batches", "make_toy_dataset", "split_indices",
           "two_moons", "xor"]
