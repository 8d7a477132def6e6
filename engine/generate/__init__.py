"""Text-to-3D: grow a Gaussian scene by score distillation. Read loop.py first.

- config.py  `GenerateConfig`, `GenerateLearningRates`, `check_generate_config`, the methods and limits
- init.py    the starting scene: `primitive_scene`, `load_init_scene`, `initial_scene`
- loop.py    `iter_generate` (a generator of progress records), `run_generate` (the same with a callback)
"""

from .config import (
    MAX_INITIAL_GAUSSIANS,
    MAX_RESOLUTION,
    MAX_STEPS,
    METHODS,
    MIN_RESOLUTION,
    GenerateConfig,
    GenerateLearningRates,
    check_generate_config,
    default_densify,
)
from .init import PRIMITIVES, initial_scene, is_primitive, load_init_scene, primitive_scene
from .loop import build_loss, iter_generate, object_orbit, run_generate

__all__ = [
    "MAX_INITIAL_GAUSSIANS", "MAX_RESOLUTION", "MAX_STEPS", "METHODS", "MIN_RESOLUTION", "PRIMITIVES",
    "GenerateConfig", "GenerateLearningRates", "build_loss", "check_generate_config",
    "default_densify", "initial_scene", "is_primitive", "iter_generate", "load_init_scene", "object_orbit",
    "primitive_scene", "run_generate",
]
