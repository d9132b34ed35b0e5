"""Generative models: denoising diffusion priors and posterior sampling for MRI (DPS).

See :mod:`fdl.generative.diffusion`. Builds on `fdl.models` (the noise predictor),
`fdl.mri` (the SENSE operator) and `fdl.train` (the train state); `fdl.studies` use it.
"""

from fdl.generative.diffusion import (
    SCHEDULES, Schedule, channels_to_image, cosine_schedule, ddim_sample, ddim_step,
    ddpm_sample, ddpm_step, diffusion_loss, dps_sample, dps_step, image_to_channels,
    linear_schedule, make_diffusion_train_step, make_schedule, posterior_mean_variance,
    predict_x0, q_mean_variance, q_sample, sample_timesteps, schedule_from_betas,
    sense_residual)

__all__ = [
    'SCHEDULES', 'Schedule', 'channels_to_image', 'cosine_schedule', 'ddim_sample',
    'ddim_step', 'ddpm_sample', 'ddpm_step', 'diffusion_loss', 'dps_sample', 'dps_step',
    'image_to_channels', 'linear_schedule', 'make_diffusion_train_step', 'make_schedule',
    'posterior_mean_variance', 'predict_x0', 'q_mean_variance', 'q_sample',
    'sample_timesteps', 'schedule_from_betas', 'sense_residual',
]
