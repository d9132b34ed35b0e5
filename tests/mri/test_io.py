"""fastMRI HDF5 io: files written directly with h5py in the fastMRI layout."""

import h5py
import numpy as np
import pytest

from fdl.mri.io import (SliceDataset, _center_crop, ismrmrd_header_xml, parse_ismrmrd_header,
                        read_fastmri, write_fastmri)

# A header shaped like the scanner's: default namespace, indentation, extra
# elements the reader must skip, and phase-encoding limits whose centre is
# off the middle of the encoded matrix (asymmetric, zero-padded acquisition).
_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"
               xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <studyInformation><studyTime>12:00:00</studyTime></studyInformation>
  <experimentalConditions>
    <H1resonanceFrequency_Hz>63646310</H1resonanceFrequency_Hz>
  </experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>140</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_0>
        <minimum>0</minimum><maximum>0</maximum><center>0</center>
      </kspace_encoding_step_0>
      <kspace_encoding_step_1>
        <minimum>0</minimum>
        <maximum>{lmax}</maximum>
        <center>{lcenter}</center>
      </kspace_encoding_step_1>
      <slice><minimum>0</minimum><maximum>2</maximum><center>0</center></slice>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>
"""


def _header(ex=16, ey=12, rx=8, ry=8, lmax=9, lcenter=5):
  return _HEADER.format(ex=ex, ey=ey, rx=rx, ry=ry, lmax=lmax, lcenter=lcenter)


def _crandn(rng, *shape):
  return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _write_raw(path, kspace, targets=None, attrs=None, header=None):
  """Writes a file as the fastMRI release does, without fdl's writer."""
  with h5py.File(path, "w") as f:
    if kspace is not None:
      f.create_dataset("kspace", data=kspace)
    for name, value in (targets or {}).items():
      f.create_dataset(name, data=value)
    if header is not None:
      f.create_dataset("ismrmrd_header", data=np.bytes_(header.encode()))
    for name, value in (attrs or {}).items():
      f.attrs[name] = value
  return path


_ATTRS = {"acquisition": "CORPD_FBK", "max": 0.000512, "norm": 0.0913,
          "patient_id": "0a1b2c3d"}


def test_read_multicoil_values_dtypes_attrs_and_padding(tmp_path):
  rng = np.random.default_rng(0)
  kspace = _crandn(rng, 3, 4, 16, 12)
  rss = rng.random((3, 8, 8)).astype(np.float32)
  path = _write_raw(tmp_path / "file1000001.h5", kspace, {"reconstruction_rss": rss},
                    _ATTRS, _header())
  vol = read_fastmri(path)
  assert vol["kspace"].dtype == np.complex64 and vol["kspace"].shape == (3, 4, 16, 12)
  np.testing.assert_array_equal(vol["kspace"], kspace)
  assert vol["target"].dtype == np.float32
  np.testing.assert_array_equal(vol["target"], rss)
  attrs = vol["attrs"]
  assert attrs["acquisition"] == "CORPD_FBK" and attrs["patient_id"] == "0a1b2c3d"
  assert attrs["max"] == pytest.approx(0.000512) and attrs["norm"] == pytest.approx(0.0913)
  assert attrs["encoding_size"] == (16, 12, 1) and attrs["recon_size"] == (8, 8, 1)
  # padding_left = 12 // 2 - 5 = 1; padding_right = 1 + 9 + 1 = 11
  assert (attrs["padding_left"], attrs["padding_right"]) == (1, 11)


def test_padding_of_a_knee_sized_header():
  # The numbers of a typical fastMRI knee file: 368 encoded lines, 356 acquired.
  attrs = parse_ismrmrd_header(_header(640, 368, 320, 320, lmax=355, lcenter=178))
  assert (attrs["padding_left"], attrs["padding_right"]) == (6, 362)
  assert attrs["encoding_size"] == (640, 368, 1) and attrs["recon_size"] == (320, 320, 1)


def test_read_single_coil_gets_a_coil_axis_and_prefers_rss(tmp_path):
  rng = np.random.default_rng(1)
  kspace = _crandn(rng, 2, 10, 7)
  esc = rng.random((2, 6, 5)).astype(np.float32)
  rss = rng.random((2, 6, 5)).astype(np.float32)
  both = read_fastmri(_write_raw(tmp_path / "a.h5", kspace,
                                 {"reconstruction_esc": esc, "reconstruction_rss": rss},
                                 header=_header(10, 7, 6, 5, 6, 3)))
  assert both["kspace"].shape == (2, 1, 10, 7)
  np.testing.assert_array_equal(both["kspace"][:, 0], kspace)
  np.testing.assert_array_equal(both["target"], rss)
  esc_only = read_fastmri(_write_raw(tmp_path / "b.h5", kspace, {"reconstruction_esc": esc},
                                     header=_header(10, 7, 6, 5, 6, 3)))
  np.testing.assert_array_equal(esc_only["target"], esc)
  assert esc_only["attrs"]["padding_left"] == 0 and esc_only["attrs"]["padding_right"] == 7


def test_read_test_file_without_target_and_complex128(tmp_path):
  kspace = _crandn(np.random.default_rng(2), 1, 2, 6, 6).astype(np.complex128)
  vol = read_fastmri(_write_raw(tmp_path / "t.h5", kspace, header=_header(6, 6, 6, 6, 5, 3)))
  assert vol["target"] is None
  assert vol["kspace"].dtype == np.complex64
  np.testing.assert_allclose(vol["kspace"], kspace, rtol=1e-6)


@pytest.mark.parametrize("coil_axis", [True, False])
def test_write_fastmri_exact_layout_and_round_trip(tmp_path, coil_axis):
  rng = np.random.default_rng(3)
  kspace = _crandn(rng, 2, 3, 9, 8) if coil_axis else _crandn(rng, 2, 9, 8)
  target = rng.random((2, 5, 4)).astype(np.float64)
  key = "reconstruction_rss" if coil_axis else "reconstruction_esc"
  path = tmp_path / "w.h5"
  write_fastmri(path, kspace, target=target, target_key=key, attrs=_ATTRS,
                encoding_size=(9, 8, 1), recon_size=(5, 4, 1), encoding_limits=(0, 6, 3))
  with h5py.File(path, "r") as f:
    assert sorted(f.keys()) == sorted(["kspace", key, "ismrmrd_header"])
    assert f["kspace"].dtype == np.complex64 and f["kspace"].shape == kspace.shape
    assert f[key].dtype == np.float32
    assert f["ismrmrd_header"].shape == ()
    assert f.attrs["acquisition"] == "CORPD_FBK"
    header = f["ismrmrd_header"][()]
  assert b'xmlns="http://www.ismrm.org/ISMRMRD"' in header
  vol = read_fastmri(path)
  np.testing.assert_array_equal(vol["kspace"].reshape(kspace.shape), kspace)
  np.testing.assert_array_equal(vol["target"], target.astype(np.float32))
  assert vol["attrs"]["max"] == pytest.approx(_ATTRS["max"])
  # padding_left = 8 // 2 - 3 = 1; padding_right = 1 + 6 + 1 = 8
  assert (vol["attrs"]["padding_left"], vol["attrs"]["padding_right"]) == (1, 8)


def test_write_fastmri_default_limits_mean_fully_sampled(tmp_path):
  write_fastmri(tmp_path / "f.h5", np.zeros((1, 2, 6, 7), np.complex64),
                encoding_size=(6, 7, 1), recon_size=(6, 7, 1))
  attrs = read_fastmri(tmp_path / "f.h5")["attrs"]
  assert (attrs["padding_left"], attrs["padding_right"]) == (0, 7)
  assert parse_ismrmrd_header(ismrmrd_header_xml((6, 7, 1), (6, 7, 1), (0, 6, 3))) == {
      "encoding_size": (6, 7, 1), "recon_size": (6, 7, 1),
      "padding_left": 0, "padding_right": 7}


@pytest.mark.parametrize("kwargs, match", [
    ({"kspace": np.zeros((1, 2, 4, 4), np.float32)}, "complex64"),
    ({"kspace": np.zeros((4, 4), np.complex64)}, "complex64"),
    ({"target": np.zeros((2, 4, 4), np.float32)}, "slices"),
    ({"target": np.zeros((1, 4, 4), np.complex64)}, "real"),
    ({"target_key": "reconstruction"}, "target_key"),
    ({"encoding_size": (4, 4)}, "encoding_size"),
])
def test_write_fastmri_rejects_bad_arguments(tmp_path, kwargs, match):
  args = {"kspace": np.zeros((1, 2, 4, 4), np.complex64), "encoding_size": (4, 4, 1),
          "recon_size": (4, 4, 1), **kwargs}
  with pytest.raises(ValueError, match=match):
    write_fastmri(tmp_path / "bad.h5", args.pop("kspace"), **args)


@pytest.fixture
def two_volumes(tmp_path):
  rng = np.random.default_rng(4)
  # Odd stored target cropped to even recon size, and even to odd.
  first = (_crandn(rng, 2, 3, 12, 10), rng.random((2, 9, 8)).astype(np.float32), (4, 5))
  second = (_crandn(rng, 3, 3, 12, 10), rng.random((3, 10, 7)).astype(np.float32), (5, 4))
  paths = []
  for name, (k, t, (rx, ry)) in zip(("v1.h5", "v2.h5"), (first, second)):
    paths.append(_write_raw(tmp_path / name, k, {"reconstruction_rss": t}, _ATTRS,
                            _header(12, 10, rx, ry, 9, 5)))
  return paths, (first, second)


def test_slice_dataset_indexing_and_centre_crop(two_volumes):
  paths, (first, second) = two_volumes
  ds = SliceDataset(paths)
  assert len(ds) == 5
  expected = [(first, s, "v1.h5") for s in range(2)] + [(second, s, "v2.h5") for s in range(3)]
  for i, ((k, t, _), s, name) in enumerate(expected):
    item = ds[i]
    assert item["fname"] == name and item["slice"] == s
    assert item["kspace"].dtype == np.complex64
    np.testing.assert_array_equal(item["kspace"], k[s])
    assert item["attrs"]["acquisition"] == "CORPD_FBK"
  # (9, 8) -> (4, 5): rows from (9 - 4) // 2 = 2, columns from (8 - 5) // 2 = 1
  np.testing.assert_array_equal(ds[1]["target"], first[1][1, 2:6, 1:6])
  # (10, 7) -> (5, 4): rows from (10 - 5) // 2 = 2, columns from (7 - 4) // 2 = 1
  np.testing.assert_array_equal(ds[-1]["target"], second[1][2, 2:7, 1:5])
  assert [it["slice"] for it in ds[1:4]] == [1, 0, 1]
  with pytest.raises(IndexError):
    ds[5]


def test_slice_dataset_transform_and_single_coil(tmp_path):
  k = _crandn(np.random.default_rng(5), 2, 6, 6)
  path = _write_raw(tmp_path / "sc.h5", k, header=_header(6, 6, 6, 6, 5, 3))
  ds = SliceDataset([path], transform=lambda item: (item["kspace"].shape, item["target"]))
  assert ds[1] == ((1, 6, 6), None)


def test_center_crop_centres_and_rejects_oversize():
  x = np.arange(7 * 6).reshape(7, 6)
  assert _center_crop(x, (3, 2))[1, 1] == x[3, 3]  # centre pixel stays the centre
  np.testing.assert_array_equal(_center_crop(x, (4, 3)), x[1:5, 1:4])
  with pytest.raises(ValueError, match="crop size"):
    _center_crop(x, (8, 2))


# ----------------------------------------------------------------------- errors


def test_missing_file_names_it(tmp_path):
  path = tmp_path / "nope.h5"
  with pytest.raises(FileNotFoundError, match="nope.h5"):
    read_fastmri(path)
  with pytest.raises(FileNotFoundError, match="nope.h5"):
    SliceDataset([path])


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_unreadable_hdf5_raises_oserror_naming_the_file(tmp_path, damage):
  path = tmp_path / f"{damage}.h5"
  if damage == "empty":
    path.write_bytes(b"")
  elif damage == "garbage":
    path.write_bytes(np.random.default_rng(6).bytes(4096))
  else:
    write_fastmri(path, np.ones((4, 2, 32, 32), np.complex64), encoding_size=(32, 32, 1),
                  recon_size=(32, 32, 1))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
  with pytest.raises(OSError, match=f"{damage}.h5") as info:
    read_fastmri(path)
  assert not isinstance(info.value, FileNotFoundError)
  assert "HDF5" in str(info.value) or "corrupt" in str(info.value)


@pytest.mark.parametrize("missing", ["kspace", "ismrmrd_header"])
def test_missing_dataset_raises_valueerror(tmp_path, missing):
  kspace = None if missing == "kspace" else np.ones((1, 2, 4, 4), np.complex64)
  header = None if missing == "ismrmrd_header" else _header(4, 4, 4, 4, 3, 2)
  path = _write_raw(tmp_path / "partial.h5", kspace, header=header)
  with pytest.raises(ValueError, match=f"partial.h5.*{missing}"):
    read_fastmri(path)
  with pytest.raises(ValueError, match=missing):
    SliceDataset([path])


@pytest.mark.parametrize("kspace", [np.ones((1, 2, 4, 4), np.float32),
                                    np.ones((4, 4), np.complex64),
                                    np.ones((1, 1, 2, 4, 4), np.complex64)])
def test_wrong_kspace_dtype_or_rank_raises_valueerror(tmp_path, kspace):
  path = _write_raw(tmp_path / "k.h5", kspace, header=_header(4, 4, 4, 4, 3, 2))
  with pytest.raises(ValueError, match=r"k\.h5.*kspace must be complex64"):
    read_fastmri(path)


@pytest.mark.parametrize("header, match", [
    ("<ismrmrdHeader", "not valid XML"),
    (_header().replace("<reconSpace>", "<reconSpaceX>").replace("</reconSpace>",
                                                              "</reconSpaceX>"),
     "reconSpace/matrixSize"),
    (_header().replace("<center>5</center>", "<center>five</center>"), "not a number"),
    (_header().replace('xmlns="http://www.ismrm.org/ISMRMRD"', ""), "lacks encoding"),
])
def test_bad_header_raises_valueerror(tmp_path, header, match):
  path = _write_raw(tmp_path / "h.h5", np.ones((1, 2, 16, 12), np.complex64), header=header)
  with pytest.raises(ValueError, match=match):
    read_fastmri(path)
