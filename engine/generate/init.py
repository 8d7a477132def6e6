"""Starting scenes for text-to-3D generation: a primitive of Gaussians, or a mesh / point cloud from a file.

Score distillation sculpts an existing cloud of Gaussians; it does not conjure one from nothing. The usual start
(DreamGaussian, GaussianDreamer) is a blob of semi-transparent Gaussians with random colours filling the volume
where the object will be, which is what `primitive_scene` makes: Gaussians uniformly inside a sphere or an
ellipsoid, isotropic, sized so that neighbours overlap (the blob renders as a solid, mottled shape and every
pixel of the object has a Gaussian to push). A user mesh or point cloud is turned into Gaussians by
`engine.io.load` (engine/io/mesh.py) and used as is: its Gaussians already form a usable scene.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..scene import GaussianScene, SceneError, rgb_to_sh0

if TYPE_CHECKING:
    from .config import GenerateConfig

PRIMITIVES = ("sphere", "ellipsoid")


def is_primitive(init: str) -> bool:
    """Whether `init` names a built-in primitive (else it is a file path)."""
    return init in PRIMITIVES


def initial_scene(config: GenerateConfig) -> GaussianScene:
    """The starting scene of `config.init`: a primitive (seeded by `config.seed`) or the file's Gaussians."""
    if is_primitive(config.init):
        return primitive_scene(
            config.init, config.num_gaussians, radius=config.init_radius, axes=config.ellipsoid_axes,
            opacity=config.init_opacity, sh_degree=config.sh_degree, seed=config.seed,
        )
    return load_init_scene(Path(config.init).expanduser())


def primitive_scene(
    shape: str,
    num: int,
    *,
    radius: float = 0.5,
    axes: tuple[float, float, float] = (1.0, 1.0, 1.0),
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
    opacity: float = 0.3,
    sh_degree: int = 0,
    seed: int = 0,
) -> GaussianScene:
    """`num` Gaussians uniformly inside a sphere of `radius` ("sphere") or that sphere stretched by `axes`
    ("ellipsoid", axes relative to `radius`), with random colours and opacity `opacity`.

    Each Gaussian's standard deviation is 0.7 x the mean spacing (volume / num)^(1/3), so neighbours overlap.
    """
    if shape not in PRIMITIVES:
        raise ValueError(f"unknown primitive {shape!r}; choose one of {', '.join(PRIMITIVES)}")
    if num < 1:
        raise ValueError(f"a primitive needs at least 1 Gaussian, got {num}")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"primitive radius must be a positive number, got {radius}")
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"initial opacity must be in (0, 1), got {opacity}")
    stretch = torch.tensor(axes if shape == "ellipsoid" else (1.0, 1.0, 1.0), dtype=torch.float64)
    if stretch.shape != (3,) or not bool((stretch > 0).all()) or not bool(torch.isfinite(stretch).all()):
        raise ValueError(f"ellipsoid axes must be three positive numbers, got {axes}")

    g = torch.Generator().manual_seed(int(seed))
    # Uniform in the unit ball: an isotropic direction and a radius distributed as u^(1/3).
    direction = torch.nn.functional.normalize(torch.randn(num, 3, generator=g, dtype=torch.float64), dim=-1)
    r = torch.rand(num, 1, generator=g, dtype=torch.float64) ** (1.0 / 3.0)
    means = direction * r * radius * stretch + torch.tensor(center, dtype=torch.float64)

    volume = 4.0 / 3.0 * math.pi * radius**3 * float(stretch.prod())
    sigma = 0.7 * (volume / num) ** (1.0 / 3.0)
    quats = torch.zeros(num, 4, dtype=torch.float64)
    quats[:, 0] = 1.0
    scales = torch.full((num, 3), math.log(sigma), dtype=torch.float64)
    opacities = torch.full((num,), math.log(opacity / (1.0 - opacity)), dtype=torch.float64)
    sh0 = rgb_to_sh0(torch.rand(num, 1, 3, generator=g, dtype=torch.float64))
    shN = torch.zeros(num, (sh_degree + 1) ** 2 - 1, 3, dtype=torch.float64)
    return GaussianScene(means, quats, scales, opacities, sh0, shN).to(dtype=torch.float32)


def load_init_scene(path: str | os.PathLike) -> GaussianScene:
    """A scene file, mesh or point cloud (anything `engine.io.load` reads) as the starting scene.

    Raises ValueError (engine.io's FormatError, or ours) naming the file when it cannot be read, holds no
    Gaussians (an empty mesh or point cloud), or holds NaN/Inf values.
    """
    from ..io import load

    p = Path(path)
    scene = load(p)
    if len(scene) == 0:
        raise ValueError(f"{p}: the initial mesh / point cloud is empty (no points to start from)")
    try:
        scene.validate(check_finite=True)
    except SceneError as exc:
        raise ValueError(f"{p}: cannot start from this scene: {exc}") from exc
    return scene
