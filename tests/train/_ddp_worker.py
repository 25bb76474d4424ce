"""Worker for tests/train/test_distributed.py: one DDP training step per process (torchrun)."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from monge.models import MLP
from monge.paths import LinearPath
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig, distributed

CONFIG = dict(steps=1, batch_size=32, lr=1e-2, warmup_steps=0, schedule="constant",
              ema_decay=0.0, grad_clip=1.0, seed=7, checkpoint_every=10**6)


def make_model() -> MLP:
    torch.manual_seed(0)
    return MLP(2, hidden=16, depth=2, time_dim=8)


def sample_batch(n: int, g: torch.Generator):
    x1 = torch.randn(n, 2, generator=g) * 0.3 + torch.tensor([2.0, -1.0])
    return torch.randn(n, 2, generator=g), x1, None


if __name__ == "__main__":
    out = Path(sys.argv[1])
    info = distributed.init_from_env("cpu")
    trainer = Trainer(distributed.wrap(make_model(), info), FlowMatchingLoss(LinearPath()),
                      sample_batch, TrainerConfig(**CONFIG), out_dir=out, progress=False)
    trainer.fit()
    params = {k: v.detach().contiguous() for k, v in trainer.base_model.state_dict().items()}
    save_file(params, str(out / f"rank{info.rank}.safetensors"))
    torch.distributed.destroy_process_group()
