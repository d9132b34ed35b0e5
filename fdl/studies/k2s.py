"""The K2S study: brain segmentation from under-sampled k-space.

At each acceleration of ``config.accelerations`` (1x, 4x, 8x), the same sealed
test slices (`fdl.tasks.segmentation.make_data`: colin27 and the ITK head, T1)
are segmented from

(a) ``fully_sampled``: the fully sampled image, by the segmenter trained on
    fully sampled images (``seg_fully_sampled``);
(b) ``zero_filled``: the zero-filled RSS image of the under-sampled k-space, by a
    segmenter trained on zero-filled images at that acceleration
    (``seg_zero_filled_<R>x``; at 1x the zero-filled image is the fully sampled
    acquisition and (a)'s segmenter is used);
(c) ``reconstructed``: a MoDL reconstruction (``modl_<R>x``,
    `fdl.tasks.reconstruction` on ``dataset="anatomy"``: trained on MNI152, so the
    test anatomy is new to it too) of that k-space, by (a)'s segmenter; at 1x the
    fully sampled k-space needs no reconstruction and (c) is the zero-filled RSS;
(d) ``joint``: at the highest acceleration only, a network trained end to end
    from the under-sampled k-space (``joint_<R>x``: `fdl.models.ReconSegmenter`,
    the MoDL of (c) followed by (a)'s segmenter, both initialized from those
    finished runs and fine-tuned together for ``config.joint.num_epochs`` epochs on
    the segmentation loss plus ``config.joint.recon_weight`` times the L1 of the
    reconstruction; `fdl.tasks.segmentation` with ``input="kspace"``).

With ``seg.label_set = "lesions"`` (``--config experiments/configs/segmentation.py:lesions``)
the classes are background and synthetic lesions (`fdl.data.synthesis`, exact masks),
and every score also counts lesions detected, missed and invented
(`fdl.evaluate.segmentation.lesion_detection`): whether under-sampling and
reconstruction hide lesions or make them up. The MoDLs are trained by the
reconstruction task on lesion-free anatomy, so lesions are new to them.

Each test slice keeps one mask per acceleration (`segmentation.slice_masks`, from
the seed, the volume and the slice), shared by (b) and (c). The summary's
``test`` holds the scores at the highest acceleration (8x), ``by_acceleration``
every one, and ``ssim_vs_dice`` the per-slice correlation (Pearson and Spearman)
between the SSIM of the image the segmenter sees (zero-filled and MoDL images,
every acceleration, against the fully sampled image) and that slice's mean
foreground Dice: whether reconstruction quality predicts segmentation quality.
Figures: ``dice_vs_acceleration.png``, ``ssim_vs_dice.png`` and
``segmentations.png`` (overlays at the highest acceleration).
"""

from __future__ import annotations

import json
import math
import os

import ml_collections
import numpy as np

from fdl import config_files
from fdl.studies import harness

METHODS = ("fully_sampled", "zero_filled", "reconstructed")  # at every acceleration
JOINT = "joint"  # (d), at the highest acceleration


# What the summary keeps of `fdl.tasks.segmentation.score_volumes` per method
# (``lesion_detection`` for the lesion label set: lesions detected, missed, invented).
_SCORE_KEYS = ("mean_dice", "dice", "hd95", "volume_diff_rel", "lesion_detection")


def _key(r: float) -> str:
  return f"{float(r):g}x"


def _configs(config: ml_collections.ConfigDict, workdir: str
             ) -> dict[str, ml_collections.ConfigDict]:
  """The sub-runs' configs: segmenters and MoDL runs on the same data settings.

  The joint run (last) starts from the sub-runs ``modl_<R>x`` and ``seg_fully_sampled``
  in `workdir`, at the highest acceleration R.
  """
  seg = ml_collections.ConfigDict(config.seg.to_dict())
  recon = ml_collections.ConfigDict(config.recon.to_dict())
  if config.smoke:
    seg.smoke, recon.smoke = True, True
    seg = config_files.resolve_smoke(seg, "segmentation")
    recon = config_files.resolve_smoke(recon, "mri_recon")
  # MoDL sees what the segmenters see: the same sizes, coils, SNR, masks, seed.
  recon.dataset = "anatomy"
  recon.maps = "true"
  for key in ("shape", "num_coils", "snr_db", "center_fraction", "mask", "seed"):
    recon[key] = seg[key]
  recon.anatomy.train_templates = tuple(seg.train_templates)
  recon.anatomy.test_templates = tuple(seg.test_templates)
  out = {"seg_fully_sampled": _with(seg, input="fully_sampled", acceleration=1.0)}
  for r in config.accelerations:
    if float(r) > 1:
      out[f"seg_zero_filled_{_key(r)}"] = _with(seg, input="zero_filled",
                                                acceleration=float(r))
      out[f"modl_{_key(r)}"] = _with(recon, acceleration=float(r))
  top = float(config.accelerations[-1])
  if top > 1:
    joint = _with(seg, input="kspace", acceleration=top,
                  num_epochs=int(seg.num_epochs if config.smoke else config.joint.num_epochs),
                  learning_rate=float(config.joint.learning_rate))
    joint.joint.update(recon="modl", recon_kwargs=recon.modl.to_dict(),
                       recon_weight=float(config.joint.recon_weight),
                       init_recon=os.path.join(workdir, f"modl_{_key(top)}"),
                       init_segmenter=os.path.join(workdir, "seg_fully_sampled"))
    out[f"{JOINT}_{_key(top)}"] = joint
  return out


def _with(config, **values) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(config.to_dict())
  config.update(values)
  return config


def _check_config(config) -> None:
  rs = [float(r) for r in config.accelerations]
  if not rs or any(not r >= 1 for r in rs) or sorted(rs) != rs or len(set(rs)) != len(rs):
    raise ValueError(f"config.accelerations must be increasing values >= 1; got "
                     f"{tuple(config.accelerations)!r}")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the study (module docstring) in `workdir`; returns its summary."""
  from fdl.tasks import segmentation  # pylint: disable=g-import-not-at-top
  _check_config(config)
  configs = _configs(config, workdir)
  subruns = []
  for name, sub in configs.items():
    if name.startswith("modl_"):
      subruns.append(harness.reconstruction_run(name, sub, describe="MoDL"))
    else:
      subruns.append(harness.SubRun(
          name, run=lambda d, c=sub: segmentation.train_and_evaluate(c, d),
          finished=_finished_segmentation,
          describe=("MoDL + segmenter, end to end" if sub.input == "kspace"
                    else f"segmenter on {sub.input}")))
  return harness.run_study(config, workdir, subruns,
                           lambda results: summarize(config, configs, workdir, results))


def _finished_segmentation(workdir: str) -> dict | None:
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _pearson(x, y) -> float:
  x, y = np.asarray(x, float), np.asarray(y, float)
  keep = np.isfinite(x) & np.isfinite(y)
  if keep.sum() < 3 or x[keep].std() == 0 or y[keep].std() == 0:
    return math.nan
  return float(np.corrcoef(x[keep], y[keep])[0, 1])


def _ranks(x) -> np.ndarray:
  from scipy import stats  # pylint: disable=g-import-not-at-top
  return stats.rankdata(x)


def summarize(config, configs, workdir: str, results: dict) -> dict:
  """Segments the test slices every way (module docstring) and scores them."""
  from fdl.mri import metrics  # pylint: disable=g-import-not-at-top
  from fdl.evaluate import segmentation as seg_eval  # pylint: disable=g-import-not-at-top
  from fdl.tasks import reconstruction, segmentation  # pylint: disable=g-import-not-at-top
  from fdl import models  # pylint: disable=g-import-not-at-top
  seg_config = configs["seg_fully_sampled"]
  volumes = segmentation.make_data(seg_config)["test"]
  model, variables, _ = segmentation.load_trained(os.path.join(workdir, "seg_fully_sampled"))
  batch = int(seg_config.batch_size)

  def segment(m, v, images):
    return segmentation.predict_labels(m.apply, v, images, batch)

  by_r, slices = {}, {"ssim": [], "dice": [], "method": [], "acceleration": []}
  shown = {}
  full_preds = [segment(model, variables, v["image"]) for v in volumes]
  for r in config.accelerations:
    r = float(r)
    masks = [segmentation.slice_masks(seg_config.seed, v["index"], len(v["label"]),
                                      seg_config.shape[1], acceleration=r,
                                      center_fraction=seg_config.center_fraction,
                                      mask=seg_config.mask) for v in volumes]
    zf_images = [segmentation.normalize_input(segmentation.zero_filled_rss(v["kspace"], m))
                 for v, m in zip(volumes, masks)]
    if r > 1:
      zf_model, zf_vars, _ = segmentation.load_trained(
          os.path.join(workdir, f"seg_zero_filled_{_key(r)}"))
      recon_model, recon_vars, _ = reconstruction.load_trained(
          os.path.join(workdir, f"modl_{_key(r)}"))
      rc_images = []
      for v, m in zip(volumes, masks):
        # The k-space scaled as the MoDL's training data were (centre-line rule).
        scale = segmentation.kspace_scale(v["kspace"], seg_config.center_fraction)
        image = models.reconstruct(recon_model, recon_vars,
                                   (v["kspace"] * scale).astype(np.complex64),
                                   m[:, None, None, :], v["maps"])
        rc_images.append(segmentation.normalize_input(image))
    else:
      zf_model, zf_vars, rc_images = model, variables, zf_images
    preds = {"fully_sampled": full_preds,
             "zero_filled": [segment(zf_model, zf_vars, x) for x in zf_images],
             "reconstructed": [segment(model, variables, x) for x in rc_images]}
    images = {"zero_filled": zf_images, "reconstructed": rc_images}
    joint_dir = os.path.join(workdir, f"{JOINT}_{_key(r)}")
    if r == float(config.accelerations[-1]) and f"{JOINT}_{_key(r)}" in configs:
      preds[JOINT], images[JOINT] = _joint_outputs(joint_dir, volumes, masks, seg_config)
    shown_methods = tuple(m for m in (*METHODS, JOINT) if m in preds)
    scores = {m: segmentation.score_volumes(preds[m], volumes) for m in shown_methods}
    ssim = {}
    for method, ims in images.items():
      values = []
      for v, x, p in zip(volumes, ims, preds[method]):
        ref = v["image"][..., 0]
        for s in range(len(ref)):
          values.append(float(metrics.ssim(ref[s], x[s, ..., 0], data_range=ref[s].max())))
          slices["dice"].append(seg_eval.mean_foreground_dice(
              p[s], v["label"][s], list(range(len(v["label_names"])))))
      slices["ssim"] += values
      slices["method"] += [method] * len(values)
      slices["acceleration"] += [r] * len(values)
      ssim[method] = float(np.mean(values))
    by_r[_key(r)] = {m: {k: scores[m][k] for k in _SCORE_KEYS if k in scores[m]}
                     for m in shown_methods}
    by_r[_key(r)]["ssim"] = ssim
    if r == float(config.accelerations[-1]):
      top = scores
      shown = {"images": images, "preds": preds}
  top_r = _key(config.accelerations[-1])
  x, y = np.asarray(slices["ssim"]), np.asarray(slices["dice"])
  summary = {
      "accelerations": [float(r) for r in config.accelerations],
      "test_acceleration": float(config.accelerations[-1]),
      "label_set": seg_config.label_set,
      "test": {m: {k: top[m][k] for k in (*_SCORE_KEYS, "per_volume") if k in top[m]}
               for m in (*METHODS, JOINT) if m in top},
      "by_acceleration": by_r,
      "ssim_vs_dice": {"pearson": _pearson(x, y),
                       "spearman": _pearson(_ranks(x), _ranks(y)),
                       "num_slices": int(len(x)),
                       "what": "per test slice, zero-filled and MoDL images at every "
                               "acceleration (and the joint network's at the highest): SSIM of the segmenter's input against the "
                               "fully sampled image vs its mean foreground Dice"},
      "goal": {"fully_sampled_mean_dice_ge_0.85": top["fully_sampled"]["mean_dice"] >= 0.85,
               "reconstructed_beats_zero_filled_at_" + top_r:
                   top["reconstructed"]["mean_dice"] > top["zero_filled"]["mean_dice"],
               **({f"joint_beats_zero_filled_at_{top_r}":
                   top[JOINT]["mean_dice"] > top["zero_filled"]["mean_dice"]}
                  if JOINT in top else {})},
      "subruns": {name: {k: s.get(k) for k in ("val_dice", "val_ssim", "best_epoch",
                                              "train_seconds_this_run")}
                  for name, s in results.items()},
  }
  if _is_writer():
    _plot_dice(os.path.join(workdir, "dice_vs_acceleration.png"), by_r,
               summary["accelerations"])
    _plot_scatter(os.path.join(workdir, "ssim_vs_dice.png"), slices,
                  summary["ssim_vs_dice"])
    n = min(int(seg_config.figure_slices), sum(len(v["label"]) for v in volumes))
    picks = [(k % len(volumes), len(volumes[k % len(volumes)]["label"]) // 2 + k // len(volumes))
             for k in range(n)]
    picks = [(v, s % len(volumes[v]["label"])) for v, s in picks]
    segmentation.plot_overlays(
        os.path.join(workdir, "segmentations.png"),
        np.stack([volumes[v]["image"][s, ..., 0] for v, s in picks]),
        np.stack([volumes[v]["label"][s] for v, s in picks]),
        {m: np.stack([shown["preds"][m][v][s] for v, s in picks])
         for m in (*METHODS, JOINT) if m in shown["preds"]},
        title=f"test slices at {top_r} (images: fully sampled)",
        names=volumes[0]["label_names"])
  return summary


def _joint_outputs(workdir: str, volumes, masks, seg_config):
  """(d)'s labels and its reconstructions (normalized as segmenter inputs) per volume."""
  from fdl.tasks import segmentation  # pylint: disable=g-import-not-at-top
  model, variables, config = segmentation.load_trained(workdir)
  labels, images = [], []
  for v, m in zip(volumes, masks):
    arrays = segmentation.stack([v], kspace=True, center_fraction=config.center_fraction)
    arrays["mask"] = m[:, None, None, :].astype(np.float32)  # the study's masks
    image, label = segmentation.predict_joint(model.apply, variables, arrays,
                                              int(seg_config.batch_size))
    labels.append(label)
    images.append(segmentation.normalize_input(image))
  return labels, images


def _is_writer() -> bool:
  from fdl.train.metric_writer import is_writer  # pylint: disable=g-import-not-at-top
  return is_writer()


def _plot_dice(path, by_r, accelerations) -> None:
  from fdl.evaluate import figures  # pylint: disable=g-import-not-at-top
  plt = figures.pyplot()
  fig, ax = plt.subplots(figsize=(5, 4))
  for m in METHODS:
    ax.plot(accelerations, [by_r[_key(r)][m]["mean_dice"] for r in accelerations], "o-",
            label=m.replace("_", " "))
  top = _key(accelerations[-1])
  if JOINT in by_r[top]:
    ax.plot([accelerations[-1]], [by_r[top][JOINT]["mean_dice"]], "k*", markersize=12,
            label="joint (end to end)")
  ax.set_xlabel("acceleration")
  ax.set_ylabel("mean foreground Dice (test)")
  ax.set_xticks(accelerations)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _plot_scatter(path, slices, corr) -> None:
  from fdl.evaluate import figures  # pylint: disable=g-import-not-at-top
  plt = figures.pyplot()
  fig, ax = plt.subplots(figsize=(5, 4))
  method, r = np.asarray(slices["method"]), np.asarray(slices["acceleration"])
  x, y = np.asarray(slices["ssim"]), np.asarray(slices["dice"])
  for m in ("zero_filled", "reconstructed", JOINT):
    for a in sorted(set(r[method == m].tolist())):
      keep = (method == m) & (r == a)
      ax.scatter(x[keep], y[keep], s=12, label=f"{m.replace('_', ' ')} {a:g}x",
                 marker={"zero_filled": "o", "reconstructed": "^"}.get(m, "*"))
  ax.set_xlabel("SSIM of the segmenter's input")
  ax.set_ylabel("slice mean Dice")
  ax.set_title(f"Pearson {corr['pearson']:.2f}, Spearman {corr['spearman']:.2f}",
               fontsize=10)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def report(summary: dict) -> str:
  """What the entry point prints: Dice per method and acceleration, the correlation."""
  if "by_acceleration" not in summary:
    from fdl.tasks import segmentation  # pylint: disable=g-import-not-at-top
    return segmentation.report(summary)
  lines = [f"{'acceleration':<13}" + "".join(f"{m:>16}" for m in METHODS)
           + f"{'SSIM zf / MoDL':>18}"]
  for r, row in summary["by_acceleration"].items():
    lines.append(f"{r:<13}" + "".join(f"{row[m]['mean_dice']:>16.4f}" for m in METHODS)
                 + f"{row['ssim']['zero_filled']:>10.3f} / {row['ssim']['reconstructed']:.3f}")
  c = summary["ssim_vs_dice"]
  lines.append(f"SSIM vs slice Dice over {c['num_slices']} slices: Pearson "
               f"{c['pearson']:.3f}, Spearman {c['spearman']:.3f}")
  top = list(summary["by_acceleration"])[-1]
  if JOINT in summary["by_acceleration"][top]:
    row = summary["by_acceleration"][top]
    lines.append(f"joint (d, end to end from k-space) at {top}: "
                 f"{row[JOINT]['mean_dice']:.4f} (SSIM of its reconstruction "
                 f"{row['ssim'][JOINT]:.3f})")
  for r, row in summary["by_acceleration"].items():
    for m, scores in row.items():
      d = scores.get("lesion_detection") if m != "ssim" else None
      if d:
        lines.append(f"lesions at {r}, {m}: {d['detected']} of {d['num_reference']} "
                     f"detected, {d['missed']} missed, {d['invented']} invented")
  return "mean foreground Dice on the test slices:\n" + "\n".join(lines)


def run_or_task(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`run` for a K2S config (``config.study == "k2s"``), else the segmentation task."""
  if config.get("study") == "k2s":
    return run(config, workdir)
  from fdl.tasks import segmentation  # pylint: disable=g-import-not-at-top
  return segmentation.train_and_evaluate(config, workdir)
