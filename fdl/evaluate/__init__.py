"""The one look at a sealed test split: classical baselines, scores, uncertainty, figures.

- `fdl.evaluate.reconstruction`: zero-filled, CG-SENSE and CS baselines, fastMRI scores
  per slice and per volume, and the test evaluation of a trained network;
- `fdl.evaluate.segmentation`: Dice per class and mean foreground Dice, HD95 in mm
  (voxel spacing honoured), volume difference, `score_segmentation` and `format_table`
  (used by `fdl.tasks.segmentation` and the K2S study, `fdl.studies.k2s`);
- `fdl.evaluate.uncertainty`: MC dropout, ensembles, calibration, the lesion probe;
- `fdl.evaluate.figures`: the shared matplotlib figures.
"""
