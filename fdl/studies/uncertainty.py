"""The uncertainty / hallucination experiment: MC dropout vs a deep ensemble.

`run(config, workdir)` is what `experiments/uncertainty.py` calls. It trains,
each through `fdl.tasks.reconstruction.train_and_evaluate` in its own
sub-directory (a finished one is reused, an unfinished one resumes),

* ``mc_dropout/``: the model ``recon.model`` (a U-Net, or MoDL) with
  channel-wise dropout ``mc_dropout.rate``;
* ``ensemble_<k>/``, k < ``ensemble.num_members``: the same model on the same
  data, split and masks (``seed``), from initial weights of ``init_seed =
  seed + k``;

then, on the shared test volumes (which no run trained on),
computes mean and std maps by `fdl.evaluate.uncertainty.mc_dropout` and
`~fdl.evaluate.uncertainty.ensemble`, the error-std correlation and the
calibration over the object's pixels, and the hallucination probe: a bright
disc with a sharp edge inserted in every test slice (fully sampled k-space
changed through the coil maps, then under-sampled with the slice's own mask).

``summary.json``:

* ``error_std_correlation``: ``{"mc_dropout": r, "ensemble": r}``, Pearson of
  ``|mean - target|`` and ``std`` over the object's pixels of all test slices;
* ``calibration``: ``{"mc_dropout": ..., "ensemble": ...}``, each the dict of
  `fdl.evaluate.uncertainty.calibration` (bins, ``within_1_std``,
  ``within_2_std``, coverage curve, ``rmse_over_rms_std``);
* ``lesion_probe``: ``lesion`` (radius, value, centres per slice) and, per
  method, the dict of `fdl.evaluate.uncertainty.lesion_probe`
  (``kept_fraction``, ``spill``, ``std_disc_over_ring``, ...);
* ``test``: NMSE / PSNR / SSIM (means over test slices) of the dropout model
  run deterministically, the MC mean, the ensemble mean and each member;
* ``runs``, ``num_test_slices``, ``num_object_pixels``, ``seconds`` (``train``:
  this invocation; ``per_run``: each run's training, from its summary).

Figures: ``calibration.png``, ``uncertainty_maps.png`` (reference,
reconstruction, ``|error|``, std per method) and ``lesion_probe.png``.
"""

from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import numpy as np

from fdl import data, models
from fdl.data.mri_volumes import estimate_coil_maps
from fdl import config_files
from fdl.evaluate import figures
from fdl.evaluate import reconstruction as evaluation
from fdl.evaluate import uncertainty as unc
from fdl.studies import harness
from fdl.tasks import reconstruction
from fdl.train.metric_writer import is_writer

METHODS = ("mc_dropout", "ensemble")
_LABELS = {"mc_dropout": "MC dropout", "ensemble": "deep ensemble"}


DROPOUT_MODELS = ("unet", "modl")  # the reconstruction models with a dropout field


def _check_config(config: ml_collections.ConfigDict) -> None:
  if config.recon.model not in DROPOUT_MODELS:
    raise ValueError(f"config.recon.model must be one of {DROPOUT_MODELS} (the models "
                     f"with dropout); got {config.recon.model!r}")
  if not 0 < config.mc_dropout.rate < 1:
    raise ValueError(f"config.mc_dropout.rate must be in (0, 1); got "
                     f"{config.mc_dropout.rate!r}")
  if int(config.ensemble.num_members) < config.std_ddof + 1:
    raise ValueError(f"config.ensemble.num_members must be >= {config.std_ddof + 1}; got "
                     f"{config.ensemble.num_members!r}")
  if not config.lesion_value >= 0:
    raise ValueError(f"config.lesion_value must be >= 0 (a multiple of the volume "
                     f"maximum); got {config.lesion_value!r}")


def run_configs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """The `train_and_evaluate` config of every run, by sub-directory name."""
  runs = {}
  # Ensemble members share the data (config.seed) and differ in their initial
  # weights and dropout/step RNG (init_seed = seed + k).
  for name, init_seed, rate in [("mc_dropout", config.seed, config.mc_dropout.rate)] + [
      (f"ensemble_{k}", config.seed + k, config.ensemble.dropout)
      for k in range(int(config.ensemble.num_members))]:
    run_config = ml_collections.ConfigDict(config.recon.to_dict())
    run_config.seed = int(config.seed)
    run_config.init_seed = int(init_seed)
    run_config[run_config.model].dropout = float(rate)
    runs[name] = run_config
  return runs


def full_test_volumes(run_config, tests: list[dict]) -> list[data.Volume]:
  """The fully sampled test volumes, loaded as `make_pipeline` loads them.

  Checked against the pipeline's masked test k-space, so a change to how the
  pipeline loads data cannot go unnoticed here.
  """
  by_name = {v.name: v for v in reconstruction.load_volumes(run_config)}
  out = []
  for test in tests:
    volume = by_name[test["name"]]
    if not (np.array_equal(volume.kspace * test["mask"], test["kspace"])
            and np.array_equal(volume.target, test["target"])):
      raise RuntimeError(f"test volume {test['name']}: reloaded k-space differs from the "
                         "pipeline's; full_test_volumes must load as make_pipeline does")
    out.append(volume)
  return out


def with_lesions(config, run_config, test: dict, volume: data.Volume) -> dict:
  """`test` with a lesion in every slice, plus the discs, rings and centres."""
  target = test["target"]
  radius, gap = float(config.lesion_radius), float(config.lesion_gap)
  inside = unc.object_region(target, config.object_threshold)
  shape = target.shape[1:]
  centres, discs, rings = [], [], []
  for s in range(target.shape[0]):
    centre = unc.lesion_center(inside[s], radius, margin=gap + radius + 1,
                               prefer=tuple(config.lesion_prefer))
    disc, ring = unc.lesion_rings(shape, centre, radius, gap=gap)
    centres.append(list(centre))
    discs.append(disc)
    rings.append(ring)
  discs, rings = np.stack(discs), np.stack(rings)
  maps = volume.maps if volume.maps is not None else test["maps"]
  value = float(config.lesion_value) * float(test["data_range"])
  kspace, new_target = unc.insert_lesion(volume.kspace, maps, target, discs, value)
  kspace = kspace * test["mask"]
  if run_config.maps == "true":
    recon_maps = test["maps"]
  else:  # as the pipeline would: ESPIRiT from the (changed) centre columns
    recon_maps = estimate_coil_maps(kspace, run_config.center_fraction,
                                    calib_size=run_config.calib_size,
                                    kernel_size=run_config.kernel_size)
  return {**test, "kspace": kspace, "maps": recon_maps, "target": new_target,
          "disc": discs, "ring": rings, "centres": centres, "value": value}


def _run_seconds(workdir: str) -> float | None:
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    return json.load(f).get("train_seconds_this_run")


def _mean_scores(per_volume: list[dict]) -> dict:
  return {k: float(np.mean(np.concatenate([v[k] for v in per_volume])))
          for k in evaluation.SCORES}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the runs, measures uncertainty and the lesion probe (module docstring).

  Returns:
    The summary dict (``{"interrupted": True, ...}`` if a training run was stopped;
    `fdl.studies.harness.run_study`).
  """
  config = config_files.resolve_smoke(config, "uncertainty")
  _check_config(config)
  start = time.perf_counter()
  runs = run_configs(config)
  subruns = [harness.reconstruction_run(
      name, run_config,
      describe=f"{run_config.model}, init_seed {run_config.init_seed}, dropout "
               f"{run_config[run_config.model].dropout:g}")
             for name, run_config in runs.items()]
  return harness.run_study(
      config, workdir, subruns,
      lambda _: _evaluate(config, workdir, runs, time.perf_counter() - start))


def _evaluate(config: ml_collections.ConfigDict, workdir: str,
              runs: dict[str, ml_collections.ConfigDict], train_seconds: float) -> dict:
  """The uncertainty maps, calibration and lesion probe of the trained runs."""
  start = time.perf_counter()
  dropout_model, dropout_vars, _ = reconstruction.load_trained(
      os.path.join(workdir, "mc_dropout"))
  members = [reconstruction.load_trained(os.path.join(workdir, name))[:2]
             for name in runs if name.startswith("ensemble_")]
  base = runs["mc_dropout"]
  pipeline = reconstruction.make_pipeline(base)
  tests = list(pipeline.test_volumes())
  full = full_test_volumes(base, tests)
  key = jax.random.PRNGKey(config.seed)
  ddof = int(config.std_ddof)

  images = {m: {"mean": [], "std": [], "mean_lesion": [], "std_lesion": []}
            for m in METHODS}
  refs = {"target": [], "target_lesion": [], "inside": [], "disc": [], "ring": []}
  centres, scores = [], {}
  for index, (test, volume) in enumerate(zip(tests, full)):
    lesioned = with_lesions(config, base, test, volume)
    volume_key = jax.random.fold_in(key, index)
    for tag, inputs in (("", test), ("_lesion", lesioned)):
      args = (inputs["kspace"], inputs["mask"], inputs["maps"])
      # The same dropout draws with and without the lesion: their difference is
      # the lesion's effect, not sampling noise.
      mean, std = unc.mc_dropout(dropout_model, dropout_vars, *args, key=volume_key,
                                 num_samples=int(config.mc_dropout.num_samples),
                                 batch_size=base.batch_size, ddof=ddof)
      images["mc_dropout"]["mean" + tag].append(mean)
      images["mc_dropout"]["std" + tag].append(std)
      mean, std = unc.ensemble(members, *args, batch_size=base.batch_size, ddof=ddof)
      images["ensemble"]["mean" + tag].append(mean)
      images["ensemble"]["std" + tag].append(std)
    refs["target"].append(test["target"])
    refs["target_lesion"].append(lesioned["target"])
    refs["inside"].append(unc.object_region(test["target"], config.object_threshold))
    refs["disc"].append(lesioned["disc"])
    refs["ring"].append(lesioned["ring"])
    centres.extend(lesioned["centres"])

    shown = {"dropout_model": models.reconstruct(
        dropout_model, dropout_vars, test["kspace"], test["mask"], test["maps"],
        batch_size=base.batch_size),
             "mc_dropout_mean": images["mc_dropout"]["mean"][-1],
             "ensemble_mean": images["ensemble"]["mean"][-1]}
    for k, (model, variables) in enumerate(members):
      shown[f"ensemble_member_{k}"] = models.reconstruct(
          model, variables, test["kspace"], test["mask"], test["maps"],
          batch_size=base.batch_size)
    for name, image in shown.items():
      scores.setdefault(name, []).append(evaluation.score_slices(
          test["target"], image, float(test["data_range"])))

  refs = {k: np.concatenate(v) for k, v in refs.items()}
  images = {m: {k: np.concatenate(v) for k, v in d.items()} for m, d in images.items()}
  correlation, calibration, probe = {}, {}, {}
  for method in METHODS:
    mean, std = images[method]["mean"], images[method]["std"]
    correlation[method] = unc.error_std_correlation(mean, std, refs["target"],
                                                    refs["inside"])
    calibration[method] = unc.calibration(mean, std, refs["target"], refs["inside"],
                                          num_bins=int(config.calibration_bins))
    probe[method] = unc.lesion_probe(
        reference=refs["target"], reference_lesion=refs["target_lesion"],
        recon=mean, recon_lesion=images[method]["mean_lesion"], std=std,
        std_lesion=images[method]["std_lesion"], disc=refs["disc"], ring=refs["ring"])
  evaluate_seconds = time.perf_counter() - start

  summary = {
      "error_std_correlation": correlation,
      "calibration": calibration,
      "lesion_probe": {
          "lesion": {"kind": "uniform disc, sharp edge", "radius": config.lesion_radius,
                     "value_times_volume_max": config.lesion_value,
                     "centres": centres},
          **probe},
      "test": {name: _mean_scores(values) for name, values in scores.items()},
      "runs": {"mc_dropout": "mc_dropout",
               "ensemble": [n for n in runs if n.startswith("ensemble_")]},
      "model": config.recon.model,
      "mc_dropout": {"rate": config.mc_dropout.rate,
                     "num_samples": config.mc_dropout.num_samples},
      "ensemble": {"num_members": len(members),
                   "init_seeds": [runs[n].init_seed for n in runs
                                  if n.startswith("ensemble_")],
                   "dropout": config.ensemble.dropout},
      "std_ddof": ddof,
      "num_test_slices": int(refs["target"].shape[0]),
      "num_object_pixels": int(refs["inside"].sum()),
      # train: this invocation (0 when every run was reused); per_run: each run's
      # training as its summary.json records it.
      "seconds": {"train": train_seconds, "evaluate": evaluate_seconds,
                  "per_run": {name: _run_seconds(os.path.join(workdir, name))
                              for name in runs}},
  }
  if is_writer():
    pick = min(int(config.figure_slice), refs["target"].shape[0] - 1)
    plot_calibration(os.path.join(workdir, "calibration.png"), calibration, correlation)
    plot_uncertainty_maps(os.path.join(workdir, "uncertainty_maps.png"), refs["target"][pick],
                          {m: (images[m]["mean"][pick], images[m]["std"][pick])
                           for m in METHODS}, correlation,
                          title=f"test slice {pick}; r: error-std correlation over all "
                                f"{refs['target'].shape[0]} test slices")
    plot_lesion_probe(os.path.join(workdir, "lesion_probe.png"),
                      refs["target_lesion"][pick], refs["disc"][pick],
                      {m: {k: v[pick] for k, v in images[m].items()} for m in METHODS},
                      {m: {k: v[pick] for k, v in probe[m]["per_slice"].items()}
                       for m in METHODS},
                      title=f"lesion probe, test slice {pick} (numbers: this slice; "
                            f"summary.json: means over {refs['target'].shape[0]} slices)")
  return summary


def report(summary: dict) -> str:
  """What ``experiments/uncertainty.py`` prints: correlation, calibration, lesion probe."""
  calibration = summary["calibration"]
  shown = {
      "error_std_correlation": summary["error_std_correlation"],
      "within_1_std": {m: c["within_1_std"] for m, c in calibration.items()},
      "within_2_std": {m: c["within_2_std"] for m, c in calibration.items()},
      "rmse_over_rms_std": {m: c["rmse_over_rms_std"] for m, c in calibration.items()},
      "lesion_probe": {m: {k: p[k] for k in ("kept_fraction", "spill",
                                             "std_disc_over_ring")}
                       for m, p in summary["lesion_probe"].items() if m != "lesion"},
      "test_ssim": {m: s["ssim"] for m, s in summary["test"].items()},
      "seconds": summary["seconds"],
  }
  return json.dumps(shown, indent=2)


# --- figures ------------------------------------------------------------------------



def plot_calibration(path: str, calibration: dict, correlation: dict, *,
                     labels: dict | None = None) -> None:
  """Observed vs Gaussian-expected mean |error| per std bin, and the coverage curve.

  Args:
    labels: legend name per method of `calibration` (default: this study's).
  """
  plt = figures.pyplot()
  labels = _LABELS if labels is None else labels
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
  top = 0.0
  for method, style in zip(calibration, ("o-", "s-", "^-", "d-")):
    cal = calibration[method]
    expected = [b["expected_mean_abs_error"] for b in cal["bins"]]
    observed = [b["mean_abs_error"] for b in cal["bins"]]
    top = max(top, *expected, *observed)
    left.plot(expected, observed, style, markersize=4,
              label=f"{labels[method]} (r = {correlation[method]:.2f})")
    cov = cal["coverage"]
    right.plot(cov["k"], cov["observed"], style, markersize=4, label=labels[method])
  left.plot([0, top], [0, top], "k--", lw=1, label="calibrated")
  left.set_xlabel("expected mean |error| = mean std x sqrt(2/pi)")
  left.set_ylabel("observed mean |error|")
  left.set_title("pixels binned by predicted std (equal counts)", fontsize=9)
  left.legend(fontsize=8)
  cov = next(iter(calibration.values()))["coverage"]
  right.plot(cov["k"], cov["gaussian"], "k--", lw=1, label="Gaussian")
  right.set_xlabel("k")
  right.set_ylabel("fraction of pixels with |error| <= k std")
  right.set_ylim(0, 1.02)
  right.set_title("coverage", fontsize=9)
  right.legend(fontsize=8)
  for ax in (left, right):
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_uncertainty_maps(path: str, reference: np.ndarray,
                          results: dict[str, tuple[np.ndarray, np.ndarray]],
                          correlation: dict, *, title: str = "") -> None:
  """Per method: reference, mean reconstruction, |error| and std of one slice."""
  plt = figures.pyplot()
  fig, axes = plt.subplots(len(results), 4, figsize=(10, 2.8 * len(results) + 0.3),
                           squeeze=False)
  vmax = float(reference.max())
  for row, (method, (mean, std)) in zip(axes, results.items()):
    error = np.abs(mean - reference)
    scale = float(np.percentile(error, 99.5)) or 1.0
    panels = [(reference, "gray", vmax, "reference"),
              (mean, "gray", vmax, f"{_LABELS[method]}: mean"),
              (error, "magma", scale, f"|error| (0 to {scale:.3f})"),
              (std, "magma", float(np.percentile(std, 99.5)) or 1.0,
               f"std (0 to {float(np.percentile(std, 99.5)):.3f}), "
               f"r = {correlation[method]:.2f}")]
    for ax, (image, cmap, top, label) in zip(row, panels):
      ax.imshow(image, cmap=cmap, vmin=0, vmax=top)
      ax.set_title(label, fontsize=8)
  figures.save_image_grid(fig, axes, path, title)


def plot_lesion_probe(path: str, reference_lesion: np.ndarray, disc: np.ndarray,
                      results: dict[str, dict[str, np.ndarray]], probe: dict, *,
                      title: str = "") -> None:
  """Per method: the lesion's reference, reconstruction, effect and std maps."""
  plt = figures.pyplot()
  fig, axes = plt.subplots(len(results), 5, figsize=(12.5, 3.1 * len(results) + 0.3),
                           squeeze=False)
  vmax = float(reference_lesion.max())
  rows, cols = np.nonzero(disc)
  centre, radius = (rows.mean(), cols.mean()), (rows.max() - rows.min()) / 2 + 0.5
  for row, (method, maps) in zip(axes, results.items()):
    p = probe[method]
    effect = maps["mean_lesion"] - maps["mean"]
    std_top = float(max(maps["std_lesion"].max(), maps["std"].max())) or 1.0
    panels = [
        (reference_lesion, "gray", 0, vmax, "reference with lesion"),
        (maps["mean_lesion"], "gray", 0, vmax,
         f"{_LABELS[method]}: kept {p['kept_fraction']:.2f}"),
        (effect, "RdBu_r", -vmax, vmax, f"with - without lesion\nspill {p['spill']:.2f}"),
        (maps["std_lesion"], "magma", 0, std_top,
         f"std with lesion\ndisc/ring {p['std_disc_over_ring']:.2f}"),
        (maps["std"], "magma", 0, std_top, "std without lesion"),
    ]
    for ax, (image, cmap, low, top, label) in zip(row, panels):
      ax.imshow(image, cmap=cmap, vmin=low, vmax=top)
      ax.add_patch(plt.Circle((centre[1], centre[0]), radius + 1.5, fill=False,
                              color="cyan", lw=0.8, ls=":"))
      ax.set_title(label, fontsize=8)
  figures.save_image_grid(fig, axes, path, title)
