"""Few-step generation: reflow and one-step distillation, flow maps and MeanFlow.

- :mod:`monge.distill.reflow`: k-rectified flow from a teacher's coupled pairs, and one-step
  distillation T(z) = z + v(z, 0) (Liu et al. 2023).
- :mod:`monge.distill.flow_map`: a learned jump X(x, t → s) = x + (s − t)·u(x, t, s) and its
  sampler (consistency models, shortcut models and MeanFlow are special cases).
- :mod:`monge.distill.shortcut`: step-size-conditioned flow maps trained by self-consistency
  (Frans et al. 2024).
- :mod:`monge.distill.meanflow`: the MeanFlow identity as a loss (Geng et al. 2025).
- :mod:`monge.distill.consistency`: consistency distillation with any one-step teacher solver,
  an EMA target and pseudo-Huber loss; multistep consistency sampling (Song et al. 2023); LCM's
  guided, skipping-step variant (Luo et al. 2023).
- :mod:`monge.distill.mdt`: MDT-dist's velocity matching and velocity distillation (Zhou et al.
  2025).
- :mod:`monge.distill.lora`: LoRA adapters on ``peft`` for LCM-LoRA (Luo et al. 2023).
- :mod:`monge.distill.jvp`: forward-mode JVP with a finite-difference fallback.
"""

from monge.distill.consistency import ConsistencyDistillationLoss, consistency_sample
from monge.distill.flow_map import EndpointNetwork, FlowMap, TwoTimeMLP, flow_map_sample
from monge.distill.jvp import jvp
from monge.distill.mdt import MDTLoss
from monge.distill.meanflow import MeanFlowLoss
from monge.distill.reflow import OneStepLoss, PairSet, generate_pairs
from monge.distill.shortcut import ShortcutLoss

__all__ = ["ConsistencyDistillationLoss", "EndpointNetwork", "FlowMap", "MDTLoss", "MeanFlowLoss",
           "OneStepLoss", "PairSet", "ShortcutLoss", "TwoTimeMLP",
           "consistency_sample", "flow_map_sample", "generate_pairs", "jvp"]
