"""Generative-prior MRI reconstruction: a diffusion prior with posterior sampling.

`run(config, workdir)` is what `experiments/generative_recon.py` calls. Sub-runs, each
in its own sub-directory (a finished one is reused, an unfinished one resumes):

* ``diffusion/``: a `fdl.models.DiffusionUNet` noise predictor trained (DDPM epsilon
  loss, `fdl.generative.diffusion`) on the *fully sampled* complex coil-combined
  images ``S^H F^{-1} y`` of the training volumes: no mask, no acceleration;
* ``modl_<R>x/`` for R in ``config.accelerations``: MoDL trained at R through
  `fdl.tasks.reconstruction.train_and_evaluate` (dataset ``anatomy``);
* ``uncertainty/``: the uncertainty study (`fdl.studies.uncertainty`: MC dropout and
  a deep ensemble) on the first acceleration's MoDL config (`baselines_config`).

Then, on the sealed test slices (the same volumes and, per R, the same masks as the
MoDL run at R saw at its test): zero-filled, CG-SENSE, CS (L1-Haar), MoDL and the
diffusion posterior (``config.sampler``: DDS, Chung, Lee & Ye, ICLR 2024, or DPS,
Chung et al., ICLR 2023; ``num_samples`` draws per slice: mean and per-pixel std of
the magnitude images). The mismatch case: MoDL trained at the first acceleration
applied at the others, while the one prior serves every R without retraining. The
posterior std goes through `fdl.evaluate.uncertainty` (error-std correlation,
calibration over the object's pixels; the lesion probe on every test slice at the
first acceleration), next to MC dropout's and the ensemble's on the same slices.

``summary.json``: ``test`` (method name -> nmse, psnr, ssim and their std over
slices, names suffixed by the acceleration: ``diffusion_posterior_mean_4x``,
``modl_4x``, ``cg_sense_4x``, ..., ``modl_trained_4x_at_8x``, ``mc_dropout_mean_4x``,
``ensemble_mean_4x``), ``error_std_correlation`` and ``calibration``
(``diffusion_<R>x``, ``mc_dropout_<R>x``, ``ensemble_<R>x``), ``lesion_probe``
(``diffusion``, ``mc_dropout``, ``ensemble``), ``sampler`` (its settings, mean final
data residual), ``diffusion`` (the prior's training record), ``baselines``,
``seconds``. Figures: ``reconstructions.png`` (every method and the std map),
``calibration.png`` and ``prior_samples.png`` (unconditional draws of the prior).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fdl import config_files, data, models
from fdl.evaluate import figures
from fdl.evaluate import reconstruction as evaluation
from fdl.evaluate import uncertainty as unc
from fdl.generative import diffusion as dif
from fdl.mri.sense import sense_adjoint
from fdl.studies import harness
from fdl.studies import uncertainty as unc_study
from fdl.tasks import reconstruction
from fdl.train.checkpoint import Checkpointer
from fdl.train.loop import fit
from fdl.train.metric_writer import is_writer, write_json
from fdl.train.optim import make_optimizer, make_schedule
from fdl.train.state import create_train_state, num_params

NAME = "generative_recon"
PRIOR_DIR = "diffusion"
BASELINES_DIR = "uncertainty"
SAMPLERS = ("dds", "dps")
SAMPLER_REFERENCES = {
    "dds": "Chung, Lee & Ye, Decomposed diffusion sampler for accelerating large-scale "
           "inverse problems, ICLR 2024",
    "dps": "Chung et al., Diffusion posterior sampling for general noisy inverse "
           "problems, ICLR 2023",
}


def _tag(acceleration: float) -> str:
  return f"{float(acceleration):g}x"


def _check_config(config: ml_collections.ConfigDict) -> None:
  accels = tuple(config.accelerations)
  if not accels or any(not a > 1 for a in accels):
    raise ValueError(f"config.accelerations must be a non-empty tuple of numbers > 1; got "
                     f"{accels!r}")
  if config.recon.dataset != "anatomy":
    raise ValueError(f"config.recon.dataset must be 'anatomy' (trained on MNI152, tested on "
                     f"other anatomies); got {config.recon.dataset!r}")
  sampler = config.sampler
  if sampler.method not in SAMPLERS:
    raise ValueError(f"config.sampler.method must be one of {SAMPLERS}; got "
                     f"{sampler.method!r}")
  if int(sampler.num_samples) < 2:
    raise ValueError(f"config.sampler.num_samples must be >= 2 (a std needs two draws); "
                     f"got {sampler.num_samples!r}")
  if sampler.method == "dps" and not sampler.zeta > 0:
    raise ValueError(f"config.sampler.zeta must be > 0; got {sampler.zeta!r}")
  if sampler.method == "dds" and not int(sampler.cg_iters) >= 1:
    raise ValueError(f"config.sampler.cg_iters must be >= 1; got {sampler.cg_iters!r}")


def run_configs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """The MoDL runs' `train_and_evaluate` configs by sub-directory name (``modl_4x``...)."""
  runs = {}
  for accel in config.accelerations:
    run_config = ml_collections.ConfigDict(config.recon.to_dict())
    run_config.seed = int(config.seed)
    run_config.model = "modl"
    run_config.acceleration = float(accel)
    runs[f"modl_{_tag(accel)}"] = run_config
  return runs


def baselines_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `fdl.studies.uncertainty` config of the MC-dropout and ensemble baselines.

  Their runs are MoDLs of the first acceleration's config (same data, split, masks
  and test slices as ``modl_<R>x``), scored with this study's object threshold,
  calibration bins and lesion, so that their numbers stand next to the posterior's.
  """
  first = next(iter(run_configs(config).values()))
  out = ml_collections.ConfigDict()
  out.seed = int(config.seed)
  out.smoke = False  # the recon config is derived from this (resolved) config
  out.recon = ml_collections.ConfigDict(first.to_dict())
  out.mc_dropout = ml_collections.ConfigDict(config.baselines.mc_dropout.to_dict())
  out.ensemble = ml_collections.ConfigDict(config.baselines.ensemble.to_dict())
  for key in ("object_threshold", "calibration_bins", "lesion_radius", "lesion_value",
              "lesion_prefer", "lesion_gap"):
    out[key] = config[key]
  out.std_ddof = 1
  out.figure_slice = 0
  out.compilation_cache = False  # this study's cache is on already
  return out


# --- the prior -----------------------------------------------------------------------------


def prior_model(config: ml_collections.ConfigDict) -> models.DiffusionUNet:
  return models.create_model("diffusion_unet", out_channels=2,
                             **config.diffusion.model.to_dict())


def training_images(run_config: ml_collections.ConfigDict) -> np.ndarray:
  """Fully sampled complex images ``S^H F^{-1} y`` of the training slices: complex64 [N, H, W].

  Through the reconstruction pipeline's own split (`ReconPipeline.acquire` with an
  all-ones mask), so the prior sees exactly the training slices MoDL trains on.
  """
  pipeline = reconstruction.make_pipeline(run_config)
  ids = np.sort(pipeline.train_order(0))
  full = np.ones((len(ids), *pipeline.mask_shape), np.float32)
  batch = pipeline.acquire("train", ids, full)
  return np.asarray(sense_adjoint(jnp.asarray(batch["kspace"]), jnp.asarray(batch["maps"]),
                                  jnp.asarray(full)))


def _prior_state(config, image_shape, steps_total: int):
  model = prior_model(config)
  d = config.diffusion
  schedule = make_schedule("warmup_cosine" if d.warmup_steps else "cosine",
                           learning_rate=d.learning_rate, total_steps=steps_total,
                           warmup_steps=int(d.warmup_steps))
  tx = make_optimizer("adam", schedule, grad_clip_norm=d.grad_clip_norm or None)
  specs = (jax.ShapeDtypeStruct((1, *image_shape, 2), jnp.float32),
           jax.ShapeDtypeStruct((1,), jnp.int32))
  return model, create_train_state(model, tx, example_inputs=specs, seed=int(config.seed)), \
      schedule


def noise_schedule(config: ml_collections.ConfigDict) -> dif.Schedule:
  return dif.make_schedule(config.diffusion.schedule, int(config.diffusion.num_steps))


def train_prior(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the diffusion prior in `workdir` (resumes its checkpoints); returns its summary."""
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "config.json"), config.to_dict())
  first = run_configs(config)[next(iter(run_configs(config)))]
  images = training_images(first)
  # Network units: images / scale, so the training images' magnitudes reach 1.
  scale = float(np.abs(images).max())
  x = np.asarray(dif.image_to_channels(jnp.asarray(images), scale))
  d = config.diffusion
  steps_per_epoch, batch_size = int(d.steps_per_epoch), int(d.batch_size)
  model, state, schedule = _prior_state(config, x.shape[1:3],
                                        int(d.num_epochs) * steps_per_epoch)
  train_step = dif.make_diffusion_train_step(noise_schedule(config), learning_rate=schedule)

  def train_data(epoch: int):
    # Batches drawn with replacement; a random horizontal flip and global phase
    # (symmetries of the data: the phase of an MR image is arbitrary).
    rng = np.random.default_rng([int(config.seed), 7, epoch])
    for _ in range(steps_per_epoch):
      pick = rng.integers(0, len(x), batch_size)
      batch = x[pick].copy()
      flip = rng.random(batch_size) < 0.5
      batch[flip] = batch[flip, :, ::-1]
      phase = np.exp(1j * rng.uniform(0, 2 * np.pi, batch_size))[:, None, None]
      z = (batch[..., 0] + 1j * batch[..., 1]) * phase
      yield {"image": np.stack([z.real, z.imag], -1).astype(np.float32)}

  start = time.perf_counter()
  result = fit(state, train_step, train_data, num_epochs=int(d.num_epochs),
               workdir=workdir, log_every=int(config.recon.log_every),
               progress=bool(config.recon.progress))
  if result.interrupted:
    return {"interrupted": True, "signal": result.signal}
  summary = {
      "num_training_images": int(len(x)), "image_shape": list(x.shape[1:3]),
      "image_scale": scale, "steps": int(result.state.step),
      "final_step": int(result.state.step),
      "train_loss": result.history[-1]["train/loss"],
      "loss_per_epoch": [h["train/loss"] for h in result.history],
      "num_params": num_params(result.state.params),
      "train_seconds_this_run": time.perf_counter() - start,
      "undersampling": "none (fully sampled images only)",
  }
  write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def finished(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """The summary if `workdir` holds a finished run of `config`, else None.

  Raises:
    ValueError: `workdir` holds a run of another config.
  """
  if not os.path.exists(os.path.join(workdir, "config.json")):
    return None
  config_files.check_workdir_config(config, workdir)
  summary = os.path.join(workdir, "summary.json")
  if not os.path.exists(summary):
    return None
  with open(summary, encoding="utf-8") as f:
    return json.load(f)


def load_prior(config: ml_collections.ConfigDict, workdir: str, summary: dict):
  """``(eps_fn, scale)`` of the trained prior in `workdir`."""
  d = config.diffusion
  model, like, _ = _prior_state(config, tuple(summary["image_shape"]),
                                int(d.num_epochs) * int(d.steps_per_epoch))
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = checkpointer.restore(like, step=summary["final_step"])
  checkpointer.close()
  variables = state.variables

  def eps_fn(x, t):
    return model.apply(variables, x, t, train=False)

  return eps_fn, float(summary["image_scale"])


# --- the study ----------------------------------------------------------------------------


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the prior and the MoDLs, compares them on the test slices (module docstring)."""
  config = config_files.resolve_smoke(config, NAME)
  _check_config(config)
  start = time.perf_counter()
  runs = run_configs(config)
  subruns = [harness.SubRun(PRIOR_DIR, run=lambda d: train_prior(config, d),
                            finished=lambda d: finished(config, d),
                            describe="diffusion prior, fully sampled images")]
  subruns += [harness.reconstruction_run(name, rc, describe=f"MoDL at {_tag(rc.acceleration)}")
              for name, rc in runs.items()]
  baselines = baselines_config(config)
  subruns.append(harness.SubRun(
      BASELINES_DIR, run=lambda d: unc_study.run(baselines, d),
      finished=lambda d: finished(baselines, d),
      describe="MC dropout and deep ensemble of MoDLs at "
               f"{_tag(baselines.recon.acceleration)}"))
  return harness.run_study(
      config, workdir, subruns,
      lambda results: _evaluate(config, workdir, runs, results,
                                time.perf_counter() - start))


def _posterior(config, sampler, test: dict, key) -> tuple[np.ndarray, np.ndarray, float]:
  """Posterior mean and std of the magnitude over ``num_samples`` draws; final residual."""
  n = int(config.sampler.num_samples)
  kspace, mask, maps = (np.asarray(test[k]) for k in ("kspace", "mask", "maps"))
  slices = kspace.shape[0]
  rep = lambda a: np.concatenate([a] * n)  # sample-major: [n * S, ...]
  images, residual = sampler(key, jnp.asarray(rep(kspace)), jnp.asarray(rep(maps)),
                             jnp.asarray(rep(mask)))
  mags = np.abs(np.asarray(images)).reshape(n, slices, *images.shape[1:])
  return (mags.mean(0).astype(np.float32), mags.std(0, ddof=1).astype(np.float32),
          float(np.asarray(residual)[-1].mean()))


def make_sampler(config: ml_collections.ConfigDict, eps_fn, scale: float):
  """The jitted ``sampler(key, kspace, maps, mask) -> (images, residuals)`` of the config."""
  schedule = noise_schedule(config)
  s = config.sampler
  steps = dif.sample_timesteps(schedule.num_steps, int(s.num_sample_steps))
  if s.method == "dds":
    draw = lambda key, y, maps, mask: dif.dds_sample(
        eps_fn, schedule, key, y, maps, mask, timesteps=steps, cg_iters=int(s.cg_iters),
        eta=float(s.eta), scale=scale)
  else:
    draw = lambda key, y, maps, mask: dif.dps_sample(
        eps_fn, schedule, key, y, maps, mask, timesteps=steps, zeta=float(s.zeta),
        eta=float(s.eta), scale=scale)
  return jax.jit(draw)


def _evaluate(config, workdir, runs, results, train_seconds: float) -> dict:
  start = time.perf_counter()
  eps_fn, scale = load_prior(config, os.path.join(workdir, PRIOR_DIR), results[PRIOR_DIR])
  sampler = make_sampler(config, eps_fn, scale)
  trained = {name: reconstruction.load_trained(os.path.join(workdir, name))[:2]
             for name in runs}
  first = next(iter(runs))
  key = jax.random.PRNGKey(int(config.seed))
  scores, correlation, calibration, residuals = {}, {}, {}, {}
  shown, lesion = {}, {k: [] for k in ("mean", "std", "mean_lesion", "std_lesion",
                                       "target", "target_lesion", "disc", "ring")}
  for a_index, accel in enumerate(config.accelerations):
    tag = _tag(accel)
    run_config = runs[f"modl_{tag}"]
    pipeline = reconstruction.make_pipeline(run_config)
    tests = list(pipeline.test_volumes())
    probe_here = a_index == 0 and config.lesion_probe
    full = unc_study.full_test_volumes(run_config, tests) if probe_here else None
    maps_all = {"mean": [], "std": [], "target": [], "inside": []}
    for v_index, test in enumerate(tests):
      args = (test["kspace"], test["mask"], test["maps"])
      images, _ = evaluation.classical_reconstructions(run_config, *args)
      images = {f"{m}_{tag}": im for m, im in images.items()}
      images[f"modl_{tag}"] = models.reconstruct(*trained[f"modl_{tag}"], *args,
                                                 batch_size=run_config.batch_size)
      if f"modl_{tag}" != first:  # the mismatch: MoDL trained at another acceleration
        images[f"modl_trained_{first[5:]}_at_{tag}"] = models.reconstruct(
            *trained[first], *args, batch_size=run_config.batch_size)
      volume_key = jax.random.fold_in(jax.random.fold_in(key, a_index), v_index)
      mean, std, res = _posterior(config, sampler, test, volume_key)
      residuals.setdefault(tag, []).append(res)
      images[f"diffusion_posterior_mean_{tag}"] = mean
      for name, image in images.items():
        scores.setdefault(name, []).append(
            evaluation.score_slices(test["target"], image, float(test["data_range"])))
      maps_all["mean"].append(mean)
      maps_all["std"].append(std)
      maps_all["target"].append(test["target"])
      maps_all["inside"].append(unc.object_region(test["target"], config.object_threshold))
      if v_index == 0:
        shown[tag] = {"reference": test["target"][0], "std": std[0],
                      **{n: np.asarray(im)[0] for n, im in images.items()}}
      if probe_here:
        # The lesion of the uncertainty study, on every test slice; the same key, so
        # that the difference is the lesion's effect, not sampling noise.
        lesioned = unc_study.with_lesions(config, run_config, test, full[v_index])
        mean_l, std_l, _ = _posterior(config, sampler, lesioned, volume_key)
        for k, v in (("mean", mean), ("std", std), ("mean_lesion", mean_l),
                     ("std_lesion", std_l), ("target", test["target"]),
                     ("target_lesion", lesioned["target"]), ("disc", lesioned["disc"]),
                     ("ring", lesioned["ring"])):
          lesion[k].append(v)
    cat = {k: np.concatenate(v) for k, v in maps_all.items()}
    num_slices = int(cat["target"].shape[0])
    correlation[f"diffusion_{tag}"] = unc.error_std_correlation(
        cat["mean"], cat["std"], cat["target"], cat["inside"])
    calibration[f"diffusion_{tag}"] = unc.calibration(
        cat["mean"], cat["std"], cat["target"], cat["inside"],
        num_bins=int(config.calibration_bins))
  probe = None
  if config.lesion_probe:
    cat = {k: np.concatenate(v) for k, v in lesion.items()}
    out = unc.lesion_probe(reference=cat["target"], reference_lesion=cat["target_lesion"],
                           recon=cat["mean"], recon_lesion=cat["mean_lesion"],
                           std=cat["std"], std_lesion=cat["std_lesion"], disc=cat["disc"],
                           ring=cat["ring"])
    probe = {"diffusion": {k: v for k, v in out.items() if k != "per_slice"}}
  test_scores = {}
  for name, per_volume in scores.items():
    entry = {}
    for s in evaluation.SCORES:
      values = np.concatenate([v[s] for v in per_volume])
      entry[s], entry[f"{s}_std"] = float(values.mean()), float(values.std())
    test_scores[name] = entry
  # The baselines, measured by the uncertainty study on the same test slices.
  base = results[BASELINES_DIR]
  base_tag = _tag(config.accelerations[0])
  for method in unc_study.METHODS:
    correlation[f"{method}_{base_tag}"] = base["error_std_correlation"][method]
    calibration[f"{method}_{base_tag}"] = base["calibration"][method]
    if probe is not None:
      probe[method] = {k: v for k, v in base["lesion_probe"][method].items()
                       if k != "per_slice"}
  for name in ("mc_dropout_mean", "ensemble_mean"):
    test_scores[f"{name}_{base_tag}"] = base["test"][name]
  if probe is not None:
    probe.update(acceleration=float(config.accelerations[0]),
                 num_slices=int(np.concatenate(lesion["target"]).shape[0]),
                 radius=float(config.lesion_radius),
                 value_times_volume_max=float(config.lesion_value))
  s = config.sampler
  summary = {
      "test": test_scores,
      "num_test_slices": num_slices,
      "error_std_correlation": correlation,
      "calibration": calibration,
      "lesion_probe": probe,
      "sampler": {"method": s.method, "reference": SAMPLER_REFERENCES[s.method],
                  "num_samples": int(s.num_samples),
                  "num_sample_steps": int(s.num_sample_steps), "eta": float(s.eta),
                  **({"cg_iters": int(s.cg_iters)} if s.method == "dds"
                     else {"zeta": float(s.zeta)}),
                  "final_data_residual": {t: float(np.mean(v))
                                          for t, v in residuals.items()}},
      "diffusion": results[PRIOR_DIR],
      "modl": {name: {"val_ssim": results[name].get("val_ssim"),
                      "train_seconds": results[name].get("train_seconds_this_run")}
               for name in runs},
      "baselines": {"model": base["model"], "mc_dropout": base["mc_dropout"],
                    "ensemble": base["ensemble"], "seconds": base["seconds"]},
      "mismatch": f"MoDL trained at {first[5:]} applied at the other accelerations "
                  "(modl_trained_<R>_at_<R'>); the diffusion prior was trained without "
                  "under-sampling and serves every acceleration unchanged",
      "seconds": {"train": train_seconds, "evaluate": time.perf_counter() - start},
  }
  if is_writer():
    plot_reconstructions(os.path.join(workdir, "reconstructions.png"), shown, correlation)
    plot_calibration(os.path.join(workdir, "calibration.png"), calibration, correlation)
    plot_prior_samples(os.path.join(workdir, "prior_samples.png"),
                       prior_samples(config, eps_fn, key), config)
  return summary


def prior_samples(config: ml_collections.ConfigDict, eps_fn, key,
                  num: int = 8) -> np.ndarray:
  """Unconditional draws of the prior: deterministic DDIM on the sampler's steps.

  Returns:
    float32 ``[num, H, W]`` magnitudes in network units (training images reach 1).
  """
  schedule = noise_schedule(config)
  shape = (num, *config.recon.shape, 2)
  steps = dif.sample_timesteps(schedule.num_steps, int(config.sampler.num_sample_steps))
  x = jax.jit(lambda k: dif.ddim_sample(eps_fn, schedule, jax.random.normal(k, shape),
                                        steps))(jax.random.fold_in(key, 10**6))
  return np.abs(np.asarray(dif.channels_to_image(x)))


def report(summary: dict) -> str:
  """What ``experiments/generative_recon.py`` prints: the test table and the uncertainty one."""
  lines = [f"test ({summary['num_test_slices']} slices per acceleration):",
           f"{'method':34s} {'PSNR':>7s} {'SSIM':>7s} {'NMSE':>7s}"]
  for name, s in summary["test"].items():
    lines.append(f"{name:34s} {s['psnr']:7.2f} {s['ssim']:7.4f} {s['nmse']:7.4f}")
  probe = summary["lesion_probe"] or {}
  lines += ["", "uncertainty (error-std correlation r, |error| within 1 / 2 std; lesion "
            f"probe at {probe.get('acceleration', '-')}x: kept fraction, spill, std disc/ring):",
            f"{'std of':16s} {'r':>6s} {'1 std':>6s} {'2 std':>6s} {'kept':>6s} {'spill':>6s}"
            f" {'std d/r':>7s}"]
  probe_tag = _tag(probe["acceleration"]) if probe else None
  for name, r in summary["error_std_correlation"].items():
    c = summary["calibration"][name]
    method, tag = name.rsplit("_", 1)
    p = probe.get(method) if tag == probe_tag else None
    tail = (f" {p['kept_fraction']:6.3f} {p['spill']:6.3f} {p['std_disc_over_ring']:7.3f}"
            if p else "")
    lines.append(f"{name:16s} {r:6.3f} {c['within_1_std']:6.3f} {c['within_2_std']:6.3f}"
                 + tail)
  lines += ["", "seconds: " + json.dumps({k: round(v, 1) for k, v in
                                          summary["seconds"].items()})]
  return "\n".join(lines)


# --- figures --------------------------------------------------------------------------


def plot_reconstructions(path: str, shown: dict, correlation: dict) -> None:
  """Per acceleration: reference, each method, |error| and std of the posterior."""
  plt = figures.pyplot()
  rows = list(shown)
  names = [n for n in shown[rows[0]] if n not in ("reference", "std")]
  cols = 1 + max(len([n for n in shown[r] if n not in ("reference", "std")])
                 for r in rows) + 2
  fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.4 * len(rows) + 0.3),
                           squeeze=False)
  for row, tag in zip(axes, rows):
    s = shown[tag]
    vmax = float(s["reference"].max())
    names = [n for n in s if n not in ("reference", "std")]
    dif_name = next(n for n in names if n.startswith("diffusion"))
    error = np.abs(s[dif_name] - s["reference"])
    top = float(np.percentile(s["std"], 99.5)) or 1.0
    panels = [(s["reference"], "gray", vmax, f"reference ({tag})")]
    panels += [(s[n], "gray", vmax, (n if "_at_" in n else n[:-len(tag) - 1]
                                     ).replace("_", " ")) for n in names]
    panels += [(error, "magma", top, "|posterior mean - ref|"),
               (s["std"], "magma", top,
                f"posterior std, r = {correlation[f'diffusion_{tag}']:.2f}")]
    for ax in row:
      ax.axis("off")
    for ax, (image, cmap, vtop, label) in zip(row, panels):
      ax.axis("on")
      ax.imshow(image, cmap=cmap, vmin=0, vmax=vtop)
      ax.set_title(label, fontsize=7)
  figures.save_image_grid(fig, axes, path, "first test slice; |error| and std share a scale")


def plot_prior_samples(path: str, samples: np.ndarray, config) -> None:
  """A row of the prior's unconditional samples (`prior_samples`)."""
  plt = figures.pyplot()
  fig, axes = plt.subplots(1, len(samples), figsize=(1.6 * len(samples), 2.0),
                           squeeze=False)
  for ax, image in zip(axes[0], samples):
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
  figures.save_image_grid(
      fig, axes, path, f"prior samples (DDIM, {int(config.sampler.num_sample_steps)} "
      "steps, eta 0), trained on fully sampled images only", fontsize=8)


def plot_calibration(path: str, calibration: dict, correlation: dict) -> None:
  """The uncertainty study's calibration figure for the posterior std per acceleration."""
  unc_study.plot_calibration(path, calibration, correlation,
                             labels={m: (f"{m} posterior" if m.startswith("diffusion")
                                         else m).replace("_", " ") for m in calibration})
