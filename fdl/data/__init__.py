"""Datasets and input pipelines."""

from fdl.data.anatomy import (TISSUE_LABELS, Anatomy, colin27, itk_head,
                               mni152)
from fdl.data.augment import (AugmentConfig, affine_resample, augment_image,
                              crop_padded, cutout, horizontal_flip)
from fdl.data.batching import epoch_batches, split_indices
from fdl.data.mri_recon import ReconPipeline
from fdl.data.mri_volumes import Volume, anatomy_volumes, load_volumes, process_simulation
from fdl.data.nifti import load_label_nifti, load_nifti, save_nifti
from fdl.data.pipeline import (Batches, ClassificationPipeline,
                               sealed_test_batches, test_batches)
from fdl.data.sources import SOURCES, Source, load_source, read_npz
from fdl.data.splits import (NormStats, SealedTestSplit, SplitPlan, Splits,
                             compute_norm_stats, make_splits, normalize,
                             plan_splits)
from fdl.data.synthetic import synthetic_images
from fdl.data.toy import TOY_DATASETS, make_toy_dataset, two_moons, xor

__all__ = ["TOY_DATASETS", "epoch_batches", "make_toy_dataset", "split_indices",
           "two_moons", "xor",
           "ReconPipeline", "Volume", "anatomy_volumes", "load_volumes", "process_simulation",
           "AugmentConfig", "Batches", "ClassificationPipeline", "NormStats",
           "SOURCES", "SealedTestSplit", "Source", "SplitPlan", "Splits",
           "affine_resample", "augment_image", "compute_norm_stats",
           "crop_padded", "cutout", "horizontal_flip", "load_source",
           "make_splits", "normalize", "plan_splits", "read_npz",
           "sealed_test_batches", "synthetic_images", "test_batches",
           "Anatomy", "TISSUE_LABELS", "colin27", "itk_head", "mni152",
           "load_label_nifti", "load_nifti", "save_nifti"]
