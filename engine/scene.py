"""GaussianScene: the raw parameter tensors of a 3D Gaussian Splatting scene.

Parameters are stored *raw*, exactly as gsplat expects them, so that every backend and every file format
agrees on one representation:

    means      [N, 3]        world positions
    quats      [N, 4]        rotations as (w, x, y, z), not necessarily normalized
    scales     [N, 3]        log of the per-axis standard deviations
    opacities  [N]           logit of the opacity
    sh0        [N, 1, 3]     degree-0 spherical-harmonic coefficients (colour = SH eval + 0.5)
    shN        [N, K-1, 3]   higher-order coefficients, K = (sh_degree + 1) ** 2 (K-1 may be 0)

The scene is a plain value: operations return new scenes and never modify their input, which is what the
undo history and the "nothing outside the mask changes" guarantee rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")

# Zeroth-order SH basis constant: colour = C0 * sh0 + 0.5 for a degree-0 scene.
SH_C0 = 0.28209479177387814


class SceneError(ValueError):
    """A scene's parameters are inconsistent or invalid; the message says which and why."""


def sh_degree_from_coeffs(num_coeffs: int) -> int:
    """SH degree d such that (d + 1)^2 == num_coeffs; raises SceneError for any other count."""
    for degree in range(5):
        if (degree + 1) ** 2 == num_coeffs:
            return degree
    raise SceneError(f"{num_coeffs} SH coefficients per channel is not (degree+1)^2 for degree 0-4")


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """Colour in [0,1] -> degree-0 SH coefficient (the inverse of C0 * sh0 + 0.5)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    """Degree-0 SH coefficient -> base colour (not clamped)."""
    return sh0 * SH_C0 + 0.5


def _all_finite(value: Tensor, chunk: int = 1 << 20) -> bool:
    """torch.isfinite(value).all(), on CPU in slices with numpy: torch's isfinite allocates ~2 bytes of
    temporaries per input byte (breaking the file readers' <= ~1.3x-file-size memory budget on big scenes)
    and is ~30x slower than numpy's on a busy 2-core machine."""
    if value.device.type != "cpu" or value.dtype not in (torch.float32, torch.float64):
        return bool(torch.isfinite(value).all())
    flat = value.detach().reshape(-1)
    return all(bool(np.isfinite(flat[i : i + chunk].numpy()).all()) for i in range(0, flat.numel(), chunk))


@dataclass(frozen=True)
class GaussianScene:
    """A set of 3D Gaussians with raw (pre-activation) parameters in gsplat's convention."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] (w, x, y, z)
    scales: Tensor  # [N, 3] log-scales
    opacities: Tensor  # [N] logits
    sh0: Tensor  # [N, 1, 3]
    shN: Tensor  # [N, K-1, 3]

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ construction and checks
    @classmethod
    def create(
        cls,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4]
        scales: Tensor,  # [N, 3]
        opacities: Tensor,  # [N]
        sh0: Tensor,  # [N, 1, 3] or [N, 3]
        shN: Tensor | None = None,  # [N, K-1, 3]
    ) -> "GaussianScene":
        """Build a scene, accepting sh0 as [N, 3] and a missing shN (degree 0) for convenience."""
        if sh0.dim() == 2:
            sh0 = sh0[:, None, :]
        if shN is None:
            shN = sh0.new_zeros((sh0.shape[0], 0, 3))
        return cls(means, quats, scales, opacities, sh0, shN)

    @classmethod
    def trusted(cls, **params: Tensor) -> "GaussianScene":
        """A scene from tensors the caller has already checked, without validation (which costs several device
        syncs and a pass over every value): for hot loops that rebuild a scene from validated parts each step."""
        scene = object.__new__(cls)
        for name in PARAM_NAMES:
            object.__setattr__(scene, name, params[name])
        return scene

    def validate(self, check_finite: bool = True) -> None:
        """Check shapes, dtypes, devices and (optionally) finiteness; raise SceneError naming the problem."""
        tensors = dict(self.items())
        for name, value in tensors.items():
            if not isinstance(value, Tensor):
                raise SceneError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            if not value.dtype.is_floating_point:
                raise SceneError(f"{name} must be a floating-point tensor, got {value.dtype}")
        n = self.means.shape[0] if self.means.dim() >= 1 else -1
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "scales": (n, 3),
            "opacities": (n,),
        }
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise SceneError(f"{name} must have shape {list(shape)} (N={n}), got {list(tensors[name].shape)}")
        if self.sh0.dim() != 3 or tuple(self.sh0.shape) != (n, 1, 3):
            raise SceneError(f"sh0 must have shape [{n}, 1, 3], got {list(self.sh0.shape)}")
        if self.shN.dim() != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise SceneError(f"shN must have shape [{n}, K-1, 3], got {list(self.shN.shape)}")
        degree = sh_degree_from_coeffs(self.shN.shape[1] + 1)
        if degree > 3:
            raise SceneError(f"SH degree {degree} is not supported (0-3)")
        dtypes = {v.dtype for v in tensors.values()}
        if len(dtypes) != 1:
            raise SceneError(f"all parameters must share one dtype, got {sorted(str(d) for d in dtypes)}")
        devices = {v.device for v in tensors.values()}
        if len(devices) != 1:
            raise SceneError(f"all parameters must live on one device, got {sorted(str(d) for d in devices)}")
        if check_finite:
            for name, value in tensors.items():
                if value.numel() and not _all_finite(value):
                    bad = (~torch.isfinite(value.reshape(n, -1))).any(dim=1).nonzero().flatten()
                    raise SceneError(
                        f"{name} has {len(bad)} Gaussian(s) with NaN/Inf values (first at index {int(bad[0])})"
                    )

    # ------------------------------------------------------------------ basic facts
    def items(self) -> Iterator[tuple[str, Tensor]]:
        for name in PARAM_NAMES:
            yield name, getattr(self, name)

    def params(self) -> dict[str, Tensor]:
        return dict(self.items())

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def num_gaussians(self) -> int:
        return len(self)

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_coeffs(self.shN.shape[1] + 1)

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def sh(self) -> Tensor:
        """All SH coefficients [N, K, 3], the layout gsplat's `colors` argument takes."""
        return torch.cat([self.sh0, self.shN], dim=1)

    # ------------------------------------------------------------------ activations
    def activated_quats(self) -> Tensor:  # [N, 4]
        return torch.nn.functional.normalize(self.quats, dim=-1)

    def activated_scales(self) -> Tensor:  # [N, 3]
        return torch.exp(self.scales)

    def activated_opacities(self) -> Tensor:  # [N]
        return torch.sigmoid(self.opacities)

    def base_colors(self) -> Tensor:  # [N, 3]
        """View-independent colour (degree-0 term only), clamped at 0 like the renderers."""
        return sh0_to_rgb(self.sh0[:, 0, :]).clamp_min(0.0)

    # ------------------------------------------------------------------ structural operations
    def replace(self, **params: Tensor) -> "GaussianScene":
        """A new scene with some parameters swapped (shapes are re-validated)."""
        values = self.params()
        unknown = set(params) - set(values)
        if unknown:
            raise SceneError(f"unknown parameter(s): {sorted(unknown)}")
        values.update(params)
        return GaussianScene(**values)

    def map(self, fn) -> "GaussianScene":
        """Apply fn to every parameter tensor (device moves, dtype casts, detach, clone)."""
        return GaussianScene(**{name: fn(value) for name, value in self.items()})

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "GaussianScene":
        return self.map(lambda t: t.to(device=device, dtype=dtype))

    def clone(self) -> "GaussianScene":
        """A deep copy whose tensors share no storage with this scene."""
        return self.map(lambda t: t.detach().clone())

    def detach(self) -> "GaussianScene":
        return self.map(lambda t: t.detach())

    def subset(self, selection: Tensor | Sequence[int]) -> "GaussianScene":
        """The Gaussians picked by an index list/tensor or a boolean mask [N]."""
        index = self._as_index(selection)
        return self.map(lambda t: t[index])

    def remove(self, selection: Tensor | Sequence[int]) -> "GaussianScene":
        """All Gaussians except the selected ones."""
        keep = torch.ones(len(self), dtype=torch.bool, device=self.device)
        keep[self._as_index(selection)] = False
        return self.subset(keep)

    def with_sh_degree(self, degree: int) -> "GaussianScene":
        """Truncate or zero-pad the SH coefficients to `degree`."""
        if not 0 <= degree <= 3:
            raise SceneError(f"SH degree must be 0-3, got {degree}")
        k = (degree + 1) ** 2 - 1
        shN = self.shN[:, :k]
        if shN.shape[1] < k:
            pad = shN.new_zeros((len(self), k - shN.shape[1], 3))
            shN = torch.cat([shN, pad], dim=1)
        return self.replace(shN=shN)

    @staticmethod
    def concat(scenes: Sequence["GaussianScene"]) -> "GaussianScene":
        """Concatenate scenes; SH degrees are raised to the highest among them (zero-padded)."""
        if not scenes:
            raise SceneError("concat needs at least one scene")
        degree = max(s.sh_degree for s in scenes)
        scenes = [s.with_sh_degree(degree) for s in scenes]
        return GaussianScene(
            **{name: torch.cat([getattr(s, name) for s in scenes], dim=0) for name in PARAM_NAMES}
        )

    def bounding_box(self, quantile: float = 0.0) -> tuple[Tensor, Tensor]:
        """(min [3], max [3]) of the centres; quantile > 0 ignores that fraction of outliers at each end."""
        if len(self) == 0:
            raise SceneError("an empty scene has no bounding box")
        means = self.means.detach()
        if quantile <= 0.0:
            return means.min(dim=0).values, means.max(dim=0).values
        q = torch.tensor([quantile, 1.0 - quantile], dtype=means.dtype, device=means.device)
        lo_hi = torch.quantile(means.float(), q.float(), dim=0).to(means.dtype)
        return lo_hi[0], lo_hi[1]

    def _as_index(self, selection: Tensor | Sequence[int]) -> Tensor:
        if not isinstance(selection, Tensor):
            selection = torch.as_tensor(list(selection), dtype=torch.long)
        selection = selection.to(self.device)
        if selection.dtype == torch.bool:
            if selection.shape != (len(self),):
                raise SceneError(f"boolean selection must have shape [{len(self)}], got {list(selection.shape)}")
            return selection.nonzero().flatten()
        if selection.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise SceneError(f"selection must be a boolean mask or integer indices, got {selection.dtype}")
        selection = selection.long().flatten()
        if selection.numel() and (selection.min() < -len(self) or selection.max() >= len(self)):
            raise SceneError(f"selection index out of range for a scene of {len(self)} Gaussians")
        return selection

    def __repr__(self) -> str:
        return f"GaussianScene(N={len(self)}, sh_degree={self.sh_degree}, dtype={self.dtype}, device={self.device})"


def random_scene(
    num: int,
    *,
    sh_degree: int = 0,
    seed: int = 0,
    extent: float = 1.0,
    scale_range: tuple[float, float] = (0.01, 0.05),
    dtype: torch.dtype = torch.float32,
) -> GaussianScene:
    """A reproducible random scene (for tests and benchmarks): centres in a cube of half-size `extent`."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(num, 3, generator=g) * 2 - 1) * extent
    quats = torch.randn(num, 4, generator=g)
    lo, hi = scale_range
    scales = torch.log(torch.rand(num, 3, generator=g) * (hi - lo) + lo)
    opacities = torch.logit(torch.rand(num, generator=g) * 0.8 + 0.1)
    sh0 = rgb_to_sh0(torch.rand(num, 1, 3, generator=g))
    k = (sh_degree + 1) ** 2 - 1
    shN = torch.randn(num, k, 3, generator=g) * 0.1
    return GaussianScene(means, quats, scales, opacities, sh0, shN).to(dtype=dtype)
