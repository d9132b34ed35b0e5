"""Experiment config files: loading one, their smoke sizes, comparing two configs.

Imports nothing heavy (no JAX, no trainer), so that ``experiments/configs/*.py``
can use it: a config built on another one (data crimes and scarce data start
from ``mri_recon.py``) loads it with `load_config`, and ``get_config("smoke")``
shrinks itself with `apply_smoke`.

Smoke, the one mechanism: every config has a bool ``smoke``. The sizes it
stands for are data, one dict per config file in `SMOKE` (nested dicts shrink
nested ConfigDicts key by key; a callable value is computed from the config
being shrunk). They are applied in one function, `apply_smoke`, reached in two
ways:

* ``--config path.py:smoke`` (``get_config("smoke")``): the config file calls
  `apply_smoke` itself, so command-line or Python overrides made afterwards
  win over the smoke sizes;
* ``--config.smoke=True`` (or ``config.smoke = True`` in Python): every task
  and study calls ``config = resolve_smoke(config, name)`` first, which
  applies ``SMOKE[name]`` to a copy; the smoke sizes then replace overrides
  of the same keys.

`apply_smoke` records ``smoke_applied = True`` (also in the nested configs it
shrinks that have a ``smoke`` key, such as a study's ``recon``), so a config is
shrunk once: a sub-run's config derived from a shrunk study config is not
shrunk again when the task resolves it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections

# Smoke sizes of the reconstruction task (experiments/configs/mri_recon.py), also
# the shrunk `recon` of the studies built on it: a run in well under 2 minutes.
_RECON = {
    "num_volumes": 4, "slices_per_volume": 2, "shape": (40, 36), "num_coils": 4,
    "val_volumes": 1, "test_volumes": 1,
    "center_fraction": 0.2,  # 7 of 36 columns; at 4x cf * R must stay < 1
    "maps": lambda c: "true" if c.dataset == "simulated" else c.maps,
    "unet": {"base_channels": 4, "num_pools": 2, "dropout": 0.0, "input_mode": "complex"},
    "modl": {"num_iters": 2, "cg_iters": 2, "depth": 2, "width": 4, "lam_init": 0.05},
    "varnet": {"num_cascades": 2, "channels": 4, "pools": 2, "sens_channels": 2,
               "sens_pools": 1},
    "num_epochs": 2, "cg_iters": 4, "cs_iters": 5, "log_every": 2, "progress": False,
    "figure_slices": 1,
}

# By config file name (experiments/configs/<name>.py).
SMOKE: dict[str, dict[str, Any]] = {
    "mri_recon": _RECON,
    "self_supervised": _RECON,
    "cifar": {
        "dataset": "synthetic", "model": "cnn",
        "model_kwargs": {"features": (8, 16), "dense": (32,)},
        "num_epochs": 2, "batch_size": 64, "val_size": 64, "log_every": 4,
        "progress": False},
    # The README's CPU recipe, tiny, on the real data (warm-up under one epoch).
    "cifar10_cpu": {
        "num_epochs": 1, "warmup_epochs": 0.5, "width": 2, "batch_size": 32,
        "val_size": 64, "progress": False},
    "nonlinearity": {
        "num_points": 200, "num_epochs": 3, "batch_size": 20, "mlp": {"hidden": (8,)},
        "progress": False},
    "mri_classical": {
        "num_slices": 2, "shape": (64, 64), "num_coils": 4, "calib_size": 10,
        "kernel_size": 4, "cs_iters": 10, "accelerations": (4,),
        "center_fractions": (0.16,)},
    # Two settings of each kind, each a smoke-sized reconstruction run.
    "data_crimes": {
        "zero_pad_factors": (1.0, 2.0), "jpeg_qualities": (90, 20), "recon": _RECON},
    # N = 2, 4 at smoke sizes: 1-3 minutes.
    "scarce_data": {
        "train_sizes": (2, 4), "steps": 6,
        "pretrain": {"num_volumes": 4, "slices_per_volume": 3, "num_epochs": 2},
        "target": {"num_volumes": 5, "slices_per_volume": 2},
        "recon": _RECON},
    # One to two minutes on a CPU; one pool: the U-Net's compilation dominates.
    "uncertainty": {
        "recon": {
            "num_volumes": 4, "slices_per_volume": 2, "shape": (32, 32), "num_coils": 2,
            "val_volumes": 1, "test_volumes": 1, "center_fraction": 0.125,
            "unet": {"base_channels": 4, "num_pools": 1, "dropout": 0.0,
                     "input_mode": "complex"},
            "modl": {"num_iters": 2, "cg_iters": 2, "depth": 2, "width": 4,
                     "lam_init": 0.05, "dropout": 0.0},
            "num_epochs": 2, "batch_size": 2, "cg_iters": 3, "cs_iters": 3,
            "log_every": 2, "figure_slices": 1},
        "mc_dropout": {"num_samples": 4}, "ensemble": {"num_members": 2},
        "calibration_bins": 4, "lesion_radius": 2.0},
    # About a minute on a CPU: a few small volumes, a one-pool U-Net, two epochs.
    "segmentation": {
        "train_volumes": 2, "val_volumes": 1, "slices_per_volume": 4,
        "test_slices_per_volume": 2, "shape": (32, 32), "num_coils": 2,
        "segmenter": {"base_channels": 4, "num_pools": 1, "dropout": 0.0},
        "joint": {"recon_kwargs": {"num_iters": 2, "cg_iters": 2, "depth": 2, "width": 4,
                                   "lam_init": 0.05}},
        "num_epochs": 2, "batch_size": 4, "log_every": 2, "progress": False,
        "figure_slices": 2},
    # Seconds on a CPU: the three cells, 16 hidden units, two epochs.
    "sequence": {
        "hidden": 16, "num_epochs": 2, "batch_size": 64, "log_every": 5,
        "progress": False},
    # Seconds on a CPU: 8x8 digits, 300 training images, tiny networks, two epochs.
    "generative": {
        "image_size": 8, "max_train_examples": 300, "features": (4, 8), "num_epochs": 2,
        "batch_size": 32, "gan": {"latent_dim": 8, "features": 4, "num_layers": 2,
                                          "num_epochs": 2},
        "scorer": {"features": (4,), "dense": (16,), "num_epochs": 1},
        "num_score_samples": 64, "log_every": 4, "progress": False},
    # About a minute: a tiny prior trained for a few steps, 2-iteration MoDLs, 3 DPS steps.
    "generative_recon": {
        "recon": {
            "num_volumes": 4, "slices_per_volume": 2, "shape": (24, 24), "num_coils": 2,
            "val_volumes": 1, "test_volumes": 1, "center_fraction": 0.1,
            "modl": {"num_iters": 2, "cg_iters": 2, "depth": 2, "width": 4,
                     "lam_init": 0.05},
            "num_epochs": 1, "batch_size": 2, "cg_iters": 3, "cs_iters": 3,
            "log_every": 2, "figure_slices": 1},
        "diffusion": {"model": {"base_channels": 4, "channel_mults": (1, 2),
                                "num_groups": 2},
                      "num_steps": 100, "num_epochs": 1, "steps_per_epoch": 2,
                      "batch_size": 2, "warmup_steps": 0},
        "sampler": {"num_samples": 2, "num_sample_steps": 3, "cg_iters": 2},
        "baselines": {"mc_dropout": {"num_samples": 2}, "ensemble": {"num_members": 2}},
        "calibration_bins": 4, "lesion_radius": 1.5},
}

# Keys (leaf names) whose values do not change what a run computes: a rerun
# that differs from the stored config only in these may reuse its work.
HARMLESS = ("progress", "log_every", "keep_checkpoints", "compilation_cache")


def load_config(path: str, arg: str | None = None, *,
                next_to: str | None = None) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of the config file at `path` (``experiments/configs/*.py``).

  Args:
    path: the config file.
    arg: the argument after ``path.py:`` on a command line (None: none).
    next_to: a file (a config file's ``__file__``) whose directory a relative
      `path` is taken from.

  Raises:
    FileNotFoundError: `path` does not exist.
    AttributeError: the file defines no ``get_config``.
  """
  if next_to is not None:
    path = os.path.join(os.path.dirname(os.path.abspath(next_to)), path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path} not found")
  name = "fdl_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise AttributeError(f"config file {path} defines no get_config()")
  return module.get_config(arg)


def _shrink(config: ml_collections.ConfigDict, sizes: Mapping[str, Any]) -> None:
  for key, value in sizes.items():
    if isinstance(value, Mapping) and isinstance(config.get(key),
                                                 ml_collections.ConfigDict):
      _shrink(config[key], value)
      continue
    if callable(value):
      value = value(config)
    config[key] = (ml_collections.ConfigDict(dict(value)) if isinstance(value, Mapping)
                   else value)
  if "smoke" in config:
    config.smoke = True
    config.smoke_applied = True


def apply_smoke(config: ml_collections.ConfigDict,
                sizes: str | Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Shrinks `config` in place to `sizes` (a name in `SMOKE`, or a dict); returns it.

  Sets ``smoke`` and ``smoke_applied`` to True, in `config` and in every nested
  config shrunk that has a ``smoke`` key. `config` must not be locked against new
  keys (a config file's own, or a copy).
  """
  if isinstance(sizes, str):
    if sizes not in SMOKE:
      raise ValueError(f"no smoke sizes named {sizes!r}; known: {sorted(SMOKE)}")
    sizes = SMOKE[sizes]
  config.smoke = True
  _shrink(config, sizes)
  return config


def resolve_smoke(config: ml_collections.ConfigDict, name: str
                  ) -> ml_collections.ConfigDict:
  """`config` if it asks for no smoke or is shrunk already, else a shrunk copy.

  What every task and study calls first (see the module docstring); `name` is
  its config file's, the key of `SMOKE`.
  """
  if not config.get("smoke") or config.get("smoke_applied"):
    return config
  return apply_smoke(ml_collections.ConfigDict(config.to_dict()), name)


def as_json(config: ml_collections.ConfigDict | Mapping) -> dict:
  """`config` as it reads back from ``config.json`` (tuples as lists, ...)."""
  plain = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return json.loads(json.dumps(plain, default=str))


def differing_keys(stored: Mapping, wanted: Mapping, *,
                   ignore: Iterable[str] = ()) -> list[str]:
  """Dotted keys whose values differ between two JSON configs, sorted.

  Args:
    stored, wanted: configs as `as_json` gives them (nested dicts).
    ignore: keys left out of the comparison: a dotted key (``recon.progress``)
      or a leaf name, anywhere (``progress``).
  """
  ignore = set(ignore)
  out = []

  def walk(a, b, prefix):
    for key in sorted(set(a) | set(b)):
      dotted = prefix + key
      if dotted in ignore or key in ignore:
        continue
      x, y = a.get(key), b.get(key)
      if isinstance(x, dict) and isinstance(y, dict):
        walk(x, y, dotted + ".")
      elif x != y or (key in a) != (key in b):
        out.append(dotted)

  walk(stored, wanted, "")
  return out


def check_workdir_config(config: ml_collections.ConfigDict, workdir: str, *,
                         harmless: Iterable[str] = HARMLESS) -> None:
  """Raises ValueError if `workdir` holds a ``config.json`` of another config.

  Differences in the `harmless` keys only are allowed (see the module docstring).
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8") as f:
    stored = json.load(f)
  changed = differing_keys(stored, as_json(config),
                                        ignore=harmless)
  if changed:
    raise ValueError(
        f"{workdir} holds a run of another config (keys {changed} differ from its "
        "config.json); rerunning would mix its finished runs with new ones. Use "
        "another --workdir, delete that directory, or restore those values")
