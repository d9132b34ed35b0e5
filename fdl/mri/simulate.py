"""Simulated multi-coil k-space: the embedded default MRI data (no download).

For each slice s, with an image x_s (a phantom), coil maps S_c from the loop
coil model (`fdl.mri.coil_models`) and the centered orthonormal FFT F,

  y_{s,c} = F(S_c x_s) + n_{s,c},   n ~ CN(0, sigma_c^2) i.i.d. per sample,

where CN(0, sigma^2) has independent real and imaginary parts of variance
sigma^2 / 2. The signal-to-noise ratio is defined per coil over the volume:

  SNR_c = mean_{s,h,w} |F(S_c x_s)|^2 / sigma_c^2,   snr_db = 10 log10 SNR_c,

i.e. the mean power of the noiseless k-space of coil c divided by the noise
power per complex sample of that coil; every coil gets the requested SNR.
Because F is orthonormal, the same ratio holds in the image domain.

The reference image is the root-sum-of-squares of the noiseless, fully
sampled coil images, ``sqrt(sum_c |S_c x_s|^2)``, which equals ``|x_s|``
since the maps are normalized to ``sum_c |S_c|^2 = 1``.
"""

from __future__ import annotations

import inspect
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fdl.mri.coil_models import loop_coil_maps
from fdl.mri.fft import fft2c
from fdl.mri.io import write_fastmri
from fdl.mri.phantoms import numpy_rng, random_phantom, shepp_logan

# Phantom name -> (slice key, shape) -> complex64 [H, W]. Shepp-Logan is the
# same on every slice; only the noise differs between its slices.
PHANTOMS = {
    "random": lambda key, shape: random_phantom(key, shape),
    "shepp_logan": lambda key, shape: shepp_logan(shape),
}


def coil_noise(clean: np.ndarray, snr_db: float, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
  """Complex Gaussian k-space noise at a per-coil SNR (the module docstring's definition).

  Args:
    clean: noiseless k-space ``[slices, coils, H, W]`` complex.
    snr_db: per-coil SNR in dB; ``inf`` gives zero noise.
    rng: NumPy generator of the draws (real parts, then imaginary parts).

  Returns:
    ``(noise, noise_std)``: complex64 ``[slices, coils, H, W]`` with sigma_c^2 the mean
    power of coil c over the slices over 10^(snr_db / 10), real and imaginary parts
    of variance sigma_c^2 / 2; and float64 ``[coils]`` sigma_c.
  """
  signal_power = np.mean(np.abs(clean.astype(np.complex128)) ** 2, axis=(0, 2, 3))
  noise_std = np.sqrt(signal_power / 10.0 ** (snr_db / 10.0))
  # float32 draws: a 16-slice, 16-coil 320x320 volume needs ~100 MB per part.
  noise = (rng.standard_normal(clean.shape, np.float32)
           + 1j * rng.standard_normal(clean.shape, np.float32)).astype(np.complex64)
  noise *= (noise_std / np.sqrt(2.0)).astype(np.float32)[None, :, None, None]
  return noise, noise_std


def simulate(key, *, num_slices: int = 4, shape: Sequence[int] = (128, 128),
             num_coils: int = 8, snr_db: float = 30.0,
             phantom: str = "random") -> dict[str, np.ndarray]:
  """Simulates one fully sampled multi-coil volume (see the module docstring).

  Args:
    key: a `jax.random` key (or an ``int`` seed). The same key and arguments
      give the same bytes; slice ``s`` uses the key ``fold_in(image_key, s)``.
    num_slices: number of slices (>= 1).
    shape: matrix size ``(H, W)``; odd and non-square allowed.
    num_coils: number of receive coils (>= 1; 4 to 16 is typical).
    snr_db: per-coil SNR of the k-space in dB; ``inf`` gives no noise.
    phantom: a name in `PHANTOMS` (``"random"`` or ``"shepp_logan"``).

  Returns:
    A dict of NumPy arrays:
      ``kspace``: complex64 ``[slices, coils, H, W]``, noisy, fully sampled;
      ``image``: complex64 ``[slices, H, W]``, the ground-truth image;
      ``maps``: complex64 ``[slices, coils, H, W]``, with
        ``sum_c |S_c|^2 = 1`` at every pixel (identical across slices);
      ``target``: float32 ``[slices, H, W]``, RSS of the noiseless coil images;
      ``noise``: complex64 ``[slices, coils, H, W]``, the noise that was added
        (``kspace - noise`` is the noiseless k-space);
      ``noise_std``: float32 ``[coils]``, sigma_c (per complex sample).

  Raises:
    ValueError: an unknown phantom or invalid sizes.

  Examples:
    >>> import jax
    >>> out = simulate(jax.random.key(0), num_slices=2, shape=(24, 20), num_coils=4)
    >>> out["kspace"].shape, out["kspace"].dtype, out["target"].dtype
    ((2, 4, 24, 20), dtype('complex64'), dtype('float32'))
  """
  if phantom not in PHANTOMS:
    raise ValueError(f"phantom must be one of {sorted(PHANTOMS)}; got {phantom!r}")
  if int(num_slices) < 1:
    raise ValueError(f"num_slices must be >= 1; got {num_slices}")
  shape = tuple(int(s) for s in shape)
  if len(shape) != 2 or min(shape) < 1:
    raise ValueError(f"shape must be (H, W) with H, W >= 1; got {shape}")
  if np.isnan(snr_db):
    raise ValueError("snr_db must be a number (inf for no noise); got nan")
  key = _as_key(key)
  image_key, noise_key = jax.random.split(key)

  image = np.stack([PHANTOMS[phantom](jax.random.fold_in(image_key, s), shape)
                    for s in range(num_slices)])
  coil_maps = loop_coil_maps(shape, num_coils)
  maps = np.ascontiguousarray(np.broadcast_to(coil_maps, (num_slices, *coil_maps.shape)))
  coil_images = maps * image[:, None]
  clean = np.asarray(fft2c(jnp.asarray(coil_images)))

  noise, noise_std = coil_noise(clean, snr_db, numpy_rng(noise_key))

  target = np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=1))
  return {"kspace": clean + noise, "image": image, "maps": maps,
          "target": target.astype(np.float32), "noise": noise,
          "noise_std": noise_std.astype(np.float32)}


def simulate_to_fastmri(key, directory: str | os.PathLike, num_files: int,
                        **kwargs: Any) -> list[pathlib.Path]:
  """Writes simulated volumes as fastMRI multi-coil HDF5 files.

  File ``i`` is ``simulate(fold_in(key, i), **kwargs)``, written by
  `fdl.mri.io.write_fastmri` as ``simulated_{i:04d}.h5`` with the target as
  ``reconstruction_rss``, encoded and reconstruction matrix ``(H, W, 1)``,
  and root attributes ``max`` and ``norm`` (of the target volume, as in
  fastMRI), ``acquisition`` (``"SIMULATED_<PHANTOM>"``), ``patient_id`` and
  ``simulation`` (a JSON record of the arguments, for provenance). The maps
  and the clean image are not stored: fastMRI files do not carry them.

  Args:
    key: a `jax.random` key (or an ``int`` seed).
    directory: output folder, created if missing.
    num_files: number of volumes (>= 1).
    **kwargs: arguments of `simulate` (``num_slices``, ``shape``, ...).

  Returns:
    The written paths, in order.

  Examples:
    >>> import tempfile, jax
    >>> from fdl.mri.io import read_fastmri
    >>> tmp = tempfile.TemporaryDirectory()
    >>> paths = simulate_to_fastmri(jax.random.key(1), tmp.name, 2, num_slices=1,
    ...                             shape=(16, 16), num_coils=4)
    >>> [p.name for p in paths], read_fastmri(paths[0])["kspace"].shape
    (['simulated_0000.h5', 'simulated_0001.h5'], (1, 4, 16, 16))
    >>> tmp.cleanup()
  """
  if int(num_files) < 1:
    raise ValueError(f"num_files must be >= 1; got {num_files}")
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  key = _as_key(key)
  paths = []
  for i in range(int(num_files)):
    out = simulate(jax.random.fold_in(key, i), **kwargs)
    h, w = out["kspace"].shape[-2:]
    record = {"generator": "fdl.mri.simulate.simulate", "file_index": i,
              **_simulate_defaults(), **kwargs}
    record["shape"] = [h, w]
    target = out["target"]
    attrs = {"max": float(target.max()), "norm": float(np.linalg.norm(target)),
             "acquisition": f"SIMULATED_{record['phantom'].upper()}",
             "patient_id": f"simulated_{i:04d}", "simulation": json.dumps(record)}
    path = directory / f"simulated_{i:04d}.h5"
    write_fastmri(path, out["kspace"], target=target, target_key="reconstruction_rss",
                  attrs=attrs, encoding_size=(h, w, 1), recon_size=(h, w, 1))
    paths.append(path)
  return paths


def _simulate_defaults() -> dict[str, Any]:
  params = inspect.signature(simulate).parameters.values()
  return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def _as_key(key):
  if isinstance(key, (int, np.integer)):
    return jax.random.key(int(key))
  return key
