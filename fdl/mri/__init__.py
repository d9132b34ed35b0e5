"""MRI physics and classical reconstruction in pure jax.numpy.

Conventions (DESIGN.md): k-space complex64 ``[batch, coils, H, W]``, centered
orthonormal FFT over the last two axes, coil maps ``[batch, coils, H, W]``,
masks real and broadcastable to k-space.
"""

from fdl.mri.cg import cg
from fdl.mri.fft import fft2c, ifft2c
from fdl.mri.sense import check_sense_args, sense_adjoint, sense_forward, sense_normal

__all__ = ["cg", "check_sense_args", "fft2c", "ifft2c", "sense_adjoint",
           "sense_forward", "sense_normal"]
