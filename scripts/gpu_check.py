"""GPU path check (run on a machine with CUDA; CI never has one).

Checks that the same code runs on a GPU and agrees with the CPU:
1. every ODE solver on the analytic GMM field: CUDA result vs CPU result (float64);
2. a short training run with the minibatch-OT coupling on CUDA, and bit-identical resume there;
3. ``monge run --device cuda`` end to end (report written to $OUT/run when OUT is set).

Run: ``python scripts/gpu_check.py``; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from monge.couplings import MinibatchOTCoupling
from monge.models import MLP
from monge.paths import GaussianMixture, LinearPath
from monge.solvers import SOLVERS, PIController, integrate
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig


def check_solvers(dev: torch.device) -> None:
    gmm = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 1.0]]),
                          stds=torch.tensor([0.3, 0.5]))
    field = gmm.field(LinearPath())
    x0 = torch.randn(512, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, cls in ((e.name, e.factory) for e in SOLVERS):
        kw = ({"controller": PIController(rtol=1e-7, atol=1e-7)} if name == "dopri5"
              else {"steps": 16})
        cpu = integrate(field, x0, cls(), **kw)
        gpu = integrate(field, x0.to(dev), cls(), **kw)
        err = float((gpu.x.cpu() - cpu.x).abs().max())
        assert gpu.x.device.type == dev.type and err < 1e-9, (name, err)
        print(f"solver {name:>8}: cuda vs cpu max diff {err:.1e}, NFE {gpu.nfe} vs {cpu.nfe}")


def check_training(dev: torch.device) -> None:
    gmm = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 0.0]]),
                          stds=torch.tensor([0.3, 0.3]))
    means = gmm.means.to(dev, torch.float32)

    def sample(n, g):
        k = torch.randint(2, (n,), generator=g, device=dev)
        x1 = means[k] + 0.3 * torch.randn(n, 2, generator=g, device=dev)
        return torch.randn(n, 2, generator=g, device=dev), x1, None

    def trainer(out):
        torch.manual_seed(0)
        cfg = TrainerConfig(steps=60, batch_size=256, checkpoint_every=30, warmup_steps=5)
        return Trainer(MLP(2, hidden=64).to(dev), FlowMatchingLoss(
            LinearPath(), coupling=MinibatchOTCoupling()), sample, cfg, out_dir=out,
            progress=False)

    with tempfile.TemporaryDirectory() as tmp:
        full = trainer(Path(tmp) / "a")
        full.fit()
        trainer(Path(tmp) / "b").fit(stop_at=30)
        resumed = trainer(Path(tmp) / "b")
        resumed.fit(resume=True)
        for (k, a), (_, b) in zip(full.base_model.state_dict().items(),
                                  resumed.base_model.state_dict().items(), strict=True):
            assert torch.equal(a, b), f"resume on cuda differs at {k}"
    print("training on cuda with OT coupling: resume bit-identical")


def check_cli() -> None:
    out = Path(os.environ.get("OUT", tempfile.mkdtemp())) / "run"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "monge", "run", "--device", "cuda", "--quiet",
                    "--out", str(out)], check=True)
    m = json.loads((out / "metrics.json").read_text())
    e100 = next(e for e in m["evaluations"] if e["solver"] == "euler" and e["nfe"] == 100)
    print(f"monge run --device cuda: {time.perf_counter() - t0:.0f} s, train "
          f"{m['train_seconds']:.0f} s, W2@100 {e100['w2']:.4f}, floor {m['reference_w2']:.4f}")
    assert e100["w2"] <= 2.5 * m["reference_w2"]


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    device = torch.device("cuda")
    print(torch.cuda.get_device_name(0), torch.__version__)
    check_solvers(device)
    check_training(device)
    check_cli()
    print("GPU check passed")
