"""DDP on CPU (gloo, 2 processes via torchrun): one step equals the averaged-gradient step."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from _ddp_worker import CONFIG, make_model, sample_batch
from safetensors.torch import load_file

from monge.core.checks import make_generator
from monge.paths import LinearPath
from monge.train import FlowMatchingLoss, TrainerConfig, load_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_step_matches_gradient_average_over_ranks(tmp_path):
    worker = Path(__file__).with_name("_ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(worker),
           str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "PYTHONPATH": str(worker.parent)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    for k in rank0:  # DDP keeps the replicas identical
        assert torch.equal(rank0[k], rank1[k]), k

    # Replay the two ranks' batches (generators seeded seed + rank) in one process: the DDP
    # step is AdamW on the gradient averaged over ranks, clipped after averaging.
    cfg = TrainerConfig(**CONFIG)
    model = make_model()
    loss = FlowMatchingLoss(LinearPath())
    grads = []
    for rank in range(2):
        g = make_generator(cfg.seed + rank)
        x0, x1, y1 = sample_batch(cfg.batch_size, g)
        model.zero_grad()
        loss(model, x0, x1, y1, g).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for p, g0, g1 in zip(model.parameters(), *grads, strict=True):
        p.grad = 0.5 * (g0 + g1)
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr_at(0), betas=cfg.betas,
                            weight_decay=cfg.weight_decay)
    opt.step()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(rank0[k], v, rtol=1e-5, atol=1e-6)

    # one checkpoint, written by rank 0, holding each rank's own generator state
    tensors, state = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert state["step"] == 1
    assert not torch.equal(tensors["rng.train.0"], tensors["rng.train.1"])
