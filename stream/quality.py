"""Image quality measures used to validate trained styles.

All functions take ``uint8`` HxWx3 arrays (any channel order, as long as both agree) and return
decibels. PSNR is computed on the 0..255 scale.
"""
from __future__ import annotations

import cv2
import numpy as np

PEAK = 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio between two equally sized uint8 images, in dB."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(PEAK * PEAK / mse))


STROKE_SHARE = 0.05  # of a picture's pixels: those the teacher moves furthest from the photo


def stroke_mask(photo: np.ndarray, target: np.ndarray, share: float = STROKE_SHARE) -> np.ndarray:
    """H x W bool: the ``share`` of pixels where ``target`` (a teacher's output) is furthest from ``photo``
    (mean |difference| over the channels): what a style paints of its own (a portrait style's eyes and
    brows), which a whole-picture PSNR barely sees."""
    moved = np.abs(target.astype(np.int16) - photo.astype(np.int16)).mean(axis=2)
    return moved >= np.quantile(moved, 1.0 - share)


def psnr_where(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """:func:`psnr` of two H x W x 3 uint8 images on the pixels where the H x W ``mask`` is true."""
    if a.shape != b.shape or a.shape[:2] != mask.shape:
        raise ValueError(f"shape mismatch: {a.shape}, {b.shape}, mask {mask.shape}")
    return psnr(a[mask], b[mask])


def best_grade(photo: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The best global colour grade of ``photo`` towards ``target``: a per-channel quadratic
    ``a + b*x + c*x**2`` fitted by least squares to that very target (an upper bound on what a
    pure recolouring can score)."""
    x = photo.reshape(-1, 3).astype(np.float64) / PEAK
    y = target.reshape(-1, 3).astype(np.float64) / PEAK
    out = np.empty_like(x)
    for ch in range(3):
        basis = np.stack([np.ones_like(x[:, ch]), x[:, ch], x[:, ch] ** 2], axis=1)
        coef, *_ = np.linalg.lstsq(basis, y[:, ch], rcond=None)
        out[:, ch] = basis @ coef
    return np.clip(out * PEAK + 0.5, 0, 255).astype(np.uint8).reshape(photo.shape)


def half(img: np.ndarray) -> np.ndarray:
    """Downscale by two with area averaging (the resolution quality is reported at)."""
    h, w = img.shape[:2]
    return cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def baselines(photo: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """PSNR of the untouched photo and of its best global grade against ``target``, in dB."""
    return {"psnr_photo": round(psnr(photo, target), 2),
            "psnr_grade": round(psnr(best_grade(photo, target), target), 2)}


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) of
    two equally sized uint8 images, the mean over pixels and channels; 1.0 for identical images."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * PEAK) ** 2, (0.03 * PEAK) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())
