"""Reconstruction volumes synthesized from real anatomy, split by anatomy."""

import numpy as np
import pytest

from fdl import data
from fdl.data import mri_volumes
from fdl.mri import data_audit

try:
  from fdl.data import anatomy as anatomy_lib
  anatomy_lib.mni152(), anatomy_lib.colin27(), anatomy_lib.itk_head()
  MISSING = None
except FileNotFoundError as error:  # the message says how to install the files
  MISSING = str(error)

pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"needs the templates: {MISSING}")


@pytest.fixture(scope="module")
def volumes():
  return data.load_volumes("anatomy", seed=3, num_volumes=5, slices_per_volume=2,
                           shape=(48, 48), num_coils=4, snr_db=30.0, center_fraction=0.15,
                           anatomy={"test_volumes": 2})


def test_test_volumes_come_from_other_anatomies(volumes):
  templates = [v.source["template"] for v in volumes]
  assert templates == ["mni152", "mni152", "mni152", "colin27", "itk_head"]
  assert [v.source["split"] for v in volumes] == ["train_val"] * 3 + ["test"] * 2
  pipeline = data.ReconPipeline(volumes, val_volumes=1, test_volumes=2,
                                mask_type="equispaced", acceleration=4,
                                center_fraction=0.15, batch_size=2, seed=0, maps="true")
  assert pipeline.split_names("test") == ["anatomy_colin27_0003", "anatomy_itk_head_0004"]
  train_val = pipeline.split_names("train") + pipeline.split_names("val")
  assert sorted(train_val) == [f"anatomy_mni152_{i:04d}" for i in range(3)]
  assert len(pipeline.split_names("val")) == 1


def test_volumes_are_synthesized_normalized_and_pass_the_audit(volumes):
  for volume in volumes:
    assert volume.kspace.shape == (2, 4, 48, 48) and volume.kspace.dtype == np.complex64
    assert volume.source["synthesized"] and volume.source["synthesis"]["template"]
    # Centre-line normalization: the centre-columns RSS image peaks at 1.
    assert mri_volumes.center_rss_max(volume.kspace, 0.15) == pytest.approx(1.0, 1e-5)
    report = data_audit.audit(volume.kspace, maps=volume.maps)
    assert not report["flags"], (volume.name, report["flags"])


def test_same_seed_same_bytes_and_another_seed_differs(volumes):
  again = data.load_volumes("anatomy", seed=3, num_volumes=5, slices_per_volume=2,
                            shape=(48, 48), num_coils=4, snr_db=30.0, center_fraction=0.15,
                            anatomy={"test_volumes": 2})
  np.testing.assert_array_equal(again[0].kspace, volumes[0].kspace)
  other = data.anatomy_volumes(4, 3, 2, shape=(48, 48), num_coils=4, snr_db=30.0,
                               center_fraction=0.15, test_volumes=1)
  assert not np.array_equal(other[0].target, volumes[0].target)


@pytest.mark.parametrize("kwargs, match", [
    (dict(test_volumes=4), r"test_volumes must be in \[1, num_volumes - 2 = 3\]"),
    (dict(test_templates=("mni152",)), "must be disjoint"),
    (dict(train_templates=("brainweb",)), "train_templates must be a non-empty"),
])
def test_bad_anatomy_settings_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.anatomy_volumes(0, 5, 1, shape=(16, 16), num_coils=2, snr_db=30.0,
                         center_fraction=0.2, **kwargs)


def test_pipeline_refuses_a_test_count_the_data_do_not_fix(volumes):
  with pytest.raises(ValueError, match="the data fix 2 test volumes"):
    data.ReconPipeline(volumes, val_volumes=1, test_volumes=1, mask_type="equispaced",
                       acceleration=4, center_fraction=0.15, batch_size=2, seed=0,
                       maps="true")
