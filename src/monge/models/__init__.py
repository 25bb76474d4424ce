"""Field networks ``net(x, t, y=None)`` with time and class embeddings: an MLP and a small U-Net.

Every model maps ``x`` of shape ``[B, *shape]`` and ``t`` of shape ``[B]`` to a tensor of ``x``'s
shape; class-conditional models reserve the label ``num_classes`` (or ``y=None``) for the "null"
class used by classifier-free guidance. :func:`build_model` picks one from the data shape.
"""

from monge.models.embeddings import SinusoidalTimeEmbedding, as_batch_time, class_indices
from monge.models.energy import EnergyMLP
from monge.models.factory import MODEL_KINDS, build_model, count_parameters
from monge.models.mlp import ACTIVATIONS, MLP
from monge.models.unet import UNet

__all__ = [
    "ACTIVATIONS",
    "EnergyMLP",
    "MLP",
    "MODEL_KINDS",
    "SinusoidalTimeEmbedding",
    "UNet",
    "as_batch_time",
    "build_model",
    "class_indices",
    "count_parameters",
]
