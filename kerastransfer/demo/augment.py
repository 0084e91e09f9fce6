"""Augmentation of the pretraining source (numpy + scipy, vectorized, seeded).

Each call draws, per image: an affine map (rotation, anisotropic scale, shear,
translation) composed with an elastic displacement field (Simard et al.,
2003; smooth random displacements) in one bilinear resampling; a
stroke-width change (grey dilation or erosion) for some images; a
resolution loss for some (block-averaged to 8x8 or 16x16 and interpolated
back: a scanner's blur); contrast scaling and Gaussian noise. Only the
source is augmented; the demo's target is never seen in pretraining.
"""

from __future__ import annotations

import numpy as np

ROTATION_DEGREES = 12.0
SCALE_RANGE = (0.85, 1.15)
SHEAR = 0.2
SHIFT_PIXELS = 2.5
ELASTIC_ALPHA, ELASTIC_SIGMA = 6.0, 8  # displacement scale and knot spacing (px)
STROKE_PROBABILITY = 0.4  # half thicker, half thinner
LOW_RESOLUTION_PROBABILITY = 0.3
NOISE_STD = 0.08


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return randomly deformed copies of square grayscale images in [0, 1].

    Args:
        images: float array `(n, s, s, 1)` or `(n, s, s)`, `s` divisible by 8.
        rng: the random generator (the caller seeds it for determinism).

    Returns:
        float32 array of the same shape, in [0, 1].

    Raises:
        ValueError: if the images are not square or `s` is not a multiple of 8.
    """
    from scipy import ndimage

    shape = images.shape
    x = np.asarray(images, dtype=np.float32).reshape(shape[0], shape[1], shape[2])
    n, size, width = x.shape
    if size != width or size % 8:
        raise ValueError(
            "augment() needs square images whose side is a multiple of 8. Resize "
            f"them first. Received: images.shape={shape}")
    # --- Affine + elastic, one resampling ----------------------------------
    angle = np.deg2rad(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES, n))
    scale = rng.uniform(*SCALE_RANGE, (n, 2))
    shear = rng.uniform(-SHEAR, SHEAR, n)
    shift = rng.uniform(-SHIFT_PIXELS, SHIFT_PIXELS, (n, 2))
    cos, sin = np.cos(angle), np.sin(angle)
    # Output (r, c) samples input centre + A @ ((r, c) - centre) + shift.
    a = np.empty((n, 2, 2))
    a[:, 0, 0], a[:, 0, 1] = cos / scale[:, 0], (sin + shear) / scale[:, 0]
    a[:, 1, 0], a[:, 1, 1] = -sin / scale[:, 1], cos / scale[:, 1]
    centre = (size - 1) / 2.0
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"))
    grid = grid.reshape(2, -1) - centre
    coords = np.einsum("nij,jp->nip", a, grid) + centre + shift[:, :, None]
    coords = coords.reshape(n, 2, size, size).astype(np.float32)
    # Smooth random displacements: uniform noise on a coarse grid (one knot
    # every ELASTIC_SIGMA pixels), interpolated up to full resolution.
    knots = size // ELASTIC_SIGMA
    coarse = rng.uniform(-1, 1, (n * 2, knots, knots)).astype(np.float32)
    up = _upsampling_matrix(size, knots)
    field = up @ coarse @ up.T
    coords += ELASTIC_ALPHA / 4 * field.reshape(n, 2, size, size)
    index = np.broadcast_to(np.arange(n)[:, None, None], (n, size, size))
    out = ndimage.map_coordinates(
        x, [index, coords[:, 0], coords[:, 1]], order=1, mode="constant", cval=0.0)
    # --- Stroke width -------------------------------------------------------
    stroke = rng.uniform(size=n)
    thick = stroke < STROKE_PROBABILITY / 2
    thin = (stroke >= STROKE_PROBABILITY / 2) & (stroke < STROKE_PROBABILITY)
    if thick.any():
        out[thick] = ndimage.grey_dilation(out[thick], size=(1, 2, 2))
    if thin.any():
        eroded = ndimage.grey_erosion(out[thin], size=(1, 2, 2))
        # Keep glyphs that erosion would erase (hairline strokes).
        keep = eroded.reshape(len(eroded), -1).max(axis=1) > 0.3
        out[np.flatnonzero(thin)[keep]] = eroded[keep]
    # --- Resolution loss ----------------------------------------------------
    low = rng.uniform(size=n) < LOW_RESOLUTION_PROBABILITY
    if low.any():
        factor = int(rng.choice([size // 8, size // 16]))
        small = out[low].reshape(-1, size // factor, factor, size // factor, factor)
        small = small.mean(axis=(2, 4))
        up = _upsampling_matrix(size, size // factor)
        out[low] = up @ small.astype(np.float32) @ up.T
    # --- Contrast and noise -------------------------------------------------
    out *= rng.uniform(0.7, 1.0, (n, 1, 1))
    out += (rng.standard_normal(out.shape, dtype=np.float32)
            * rng.uniform(0, NOISE_STD, (n, 1, 1)).astype(np.float32))
    return np.clip(out, 0.0, 1.0).astype(np.float32).reshape(shape)


def _upsampling_matrix(size: int, small: int) -> np.ndarray:
    """`(size, small)` bilinear interpolation weights (pixel-centre aligned,
    edges clamped): `m @ image @ m.T` resizes a `small x small` image."""
    position = np.clip((np.arange(size) + 0.5) * small / size - 0.5, 0, small - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, small - 1)
    weight = (position - low).astype(np.float32)
    matrix = np.zeros((size, small), np.float32)
    matrix[np.arange(size), low] += 1 - weight
    matrix[np.arange(size), high] += weight
    return matrix
