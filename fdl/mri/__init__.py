"""MRI physics and classical reconstruction in pure jax.numpy.

Conventions (DESIGN.md): k-space complex64 ``[batch, coils, H, W]``, centered
orthonormal FFT over the last two axes, coil maps ``[batch, coils, H, W]``,
masks real and broadcastable to k-space. Nothing here imports `fdl.models` or
`fdl.train`.
"""

from fdl.mri.cg import cg
from fdl.mri.data_audit import audit
from fdl.mri.coil_models import loop_coil_maps
from fdl.mri.coils import estimate_maps, rss
from fdl.mri.fft import fft2c, fft2c_host, ifft2c, ifft2c_host
from fdl.mri.io import SliceDataset, read_fastmri, write_fastmri
from fdl.mri.masks import (equispaced_mask, mask_for_kspace, num_low_frequencies,
                           poisson_mask, random_mask)
from fdl.mri.metrics import center_crop, nmse, psnr, slice_metrics, ssim, volume_metrics
from fdl.mri.phantoms import image_grid, random_phantom, shepp_logan
from fdl.mri.recon import cg_sense, cs_wavelet, lipschitz_bound, zero_filled
from fdl.mri.sense import (check_kspace, check_mask, check_sense_args, sense_adjoint,
                           sense_forward, sense_normal)
from fdl.mri.simulate import simulate, simulate_to_fastmri
from fdl.mri.wavelets import haar_forward, haar_inverse

__all__ = [
    "SliceDataset", "audit", "center_crop", "cg", "cg_sense", "check_kspace", "check_mask", "check_sense_args",
    "cs_wavelet", "equispaced_mask", "estimate_maps", "haar_forward",
    "haar_inverse", "lipschitz_bound", "rss", "zero_filled",
    "fft2c", "fft2c_host", "ifft2c", "ifft2c_host", "image_grid", "loop_coil_maps", "mask_for_kspace", "nmse",
    "num_low_frequencies", "poisson_mask", "psnr", "random_mask", "random_phantom",
    "read_fastmri", "sense_adjoint", "sense_forward", "sense_normal", "shepp_logan",
    "simulate", "simulate_to_fastmri", "slice_metrics", "ssim", "volume_metrics",
    "write_fastmri",
]
