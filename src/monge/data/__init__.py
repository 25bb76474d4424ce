"""Built-in and user data sets: 2-D toys, scikit-learn's 8x8 digits, procedural images rendered
exactly from known factors, array files, PNG folders.

The usual entry point is :func:`load_dataset`, which returns a :class:`Dataset` with a held-out
test split. No code path downloads anything.
"""

from monge.data.dataset import DATASET_NAMES, Dataset, load_dataset
from monge.data.digits import load_digits
from monge.data.files import load_array, load_image_folder, load_labeled_array
from monge.data.procedural import (
    PROCEDURAL_DATASETS,
    SHAPE_KINDS,
    ProceduralData,
    ProceduralImages,
    SceneFactors,
    load_procedural,
)
from monge.data.toys import (
    TOY_DATASETS,
    checkerboard,
    eight_gaussians,
    gaussian,
    moons,
    rings,
    spirals,
    swissroll,
)
from monge.data.transform import NORMALIZE_MODES, AffineMap, standardizer

__all__ = [
    "PROCEDURAL_DATASETS",
    "SHAPE_KINDS",
    "ProceduralData",
    "ProceduralImages",
    "SceneFactors",
    "load_procedural",
    "NORMALIZE_MODES",
    "AffineMap",
    "standardizer",
    "DATASET_NAMES",
    "TOY_DATASETS",
    "Dataset",
    "checkerboard",
    "eight_gaussians",
    "gaussian",
    "load_array",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_labeled_array",
    "moons",
    "rings",
    "spirals",
    "swissroll",
]
