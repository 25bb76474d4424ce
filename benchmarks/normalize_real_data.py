"""Raw-scale real data with and without standardisation (``data.normalize``).

scikit-learn's wine (178 × 13, features up to ~1700) and breast-cancer (569 × 30, up to ~4300)
features, saved unscaled as .npy files, trained with ``monge run --source gaussian --target FILE``
once with the default ``data.normalize: auto`` (standardised per feature, undone at sampling) and
once with ``none``. Acceptance: W2 at Euler NFE 100 within 2.5× the held-out floor with the
default. W2 is measured in the data's own units against held-out rows.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/normalize_real_data.py``
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_wine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """source: gaussian
target: {target}
out: {out}
data: {{normalize: {mode}, test_fraction: 0.3}}
model: {{hidden: 128, depth: 3}}
train: {{steps: 3000, batch_size: 128, lr: 0.002, checkpoint_every: 3000}}
eval: {{n_samples: 1000, solvers: [{{solver: euler, nfe: [100]}}], trajectories: 0,
       straightness_steps: 10}}
compare: {{couplings: []}}
"""


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, loader in (("wine", load_wine), ("breast-cancer", load_breast_cancer)):
            data = loader().data.astype(np.float32)
            path = Path(tmp) / f"{name}.npy"
            np.save(path, data)
            for mode in ("auto", "none"):
                out = Path(tmp) / f"{name}-{mode}"
                cfg = Path(tmp) / f"{name}-{mode}.yaml"
                cfg.write_text(CONFIG.format(target=path, out=out, mode=mode))
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "monge", "run", str(cfg), "--quiet"],
                               check=True, cwd=ROOT)
                m = json.loads((out / "metrics.json").read_text())
                w2 = m["evaluations"][0]["w2"]
                rows.append([name, f"{data.shape[0]} × {data.shape[1]}",
                             f"{float(np.abs(data).max()):.0f}", mode, f"{w2:.4g}",
                             f"{m['reference_w2']:.4g}", f"{w2 / m['reference_w2']:.2f}",
                             f"{time.perf_counter() - t0:.0f} s"])
                print(rows[-1])
    table = markdown_table(["data", "rows × features", "max abs value", "normalize", "W2 @ NFE 100",
                            "held-out floor", "W2 / floor", "wall"], rows)
    verdict = ("Acceptance (default `auto` within 2.5× floor): "
               + ", ".join(f"{r[0]} {'met' if float(r[6]) <= 2.5 else 'NOT met'} ({r[6]}×)"
                           for r in rows if r[3] == "auto"))
    append_results("Raw-scale real data: standardisation on vs off (data.normalize)",
                   "command: `python benchmarks/normalize_real_data.py` (3000 steps, 3×128 MLP; "
                   "machine shared with other jobs)\n\n" + table + "\n\n" + verdict + "\n")


if __name__ == "__main__":
    main()
