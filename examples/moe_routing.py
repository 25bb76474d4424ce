"""Mixture-of-experts routing as sparsity-constrained OT (Liu, Puigcerver & Blondel, ICLR 2023).

Tokens (sources, uniform mass) are routed to experts (targets) with a capacity: each expert
takes at most `capacity` tokens. The cost is the negative router logit. We compare
  - greedy top-1 routing with capacity (tokens in order; overflow tokens are dropped),
  - sparsity-constrained OT (semi-dual, k = capacity non-zeros per expert column),
  - exact balanced assignment (the LP optimum with hard capacity, via POT's network simplex).
Reported: total router affinity of the kept assignments, dropped tokens and expert loads.

Run: python examples/moe_routing.py [--tokens 64 --experts 8 --seed 0]
"""

from __future__ import annotations

import argparse

import torch

from monge.ot import exact, sparsity_constrained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--gamma", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n, m = args.tokens, args.experts
    capacity = -(-n // m)
    g = torch.Generator().manual_seed(args.seed)
    # router logits with a popular expert, as in trained MoE layers
    logits = torch.randn(n, m, generator=g, dtype=torch.float64)
    logits[:, 0] += 1.0
    C = -logits

    # greedy top-1 with capacity
    load = [0] * m
    greedy = torch.zeros(n, m, dtype=torch.float64)
    for i in torch.argsort(logits.max(1).values, descending=True).tolist():
        j = int(logits[i].argmax())
        if load[j] < capacity:
            greedy[i, j] = 1.0
            load[j] += 1

    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64)
    scot = sparsity_constrained(a, b, C, gamma=args.gamma, k=capacity, formulation="semi_dual")
    T = scot.dense_plan()
    # hard routing from the sparse plan: each token goes to its heaviest expert if it has room
    routed = torch.zeros_like(T)
    load = [0] * m
    for i in torch.argsort(T.max(1).values, descending=True).tolist():
        for j in torch.argsort(T[i], descending=True).tolist():
            if T[i, j] > 0 and load[j] < capacity:
                routed[i, j] = 1.0
                load[j] += 1
                break
    lp = exact(a, b, C)
    lp_route = (lp.plan > 0).to(torch.float64)

    print(f"{n} tokens, {m} experts, capacity {capacity}, gamma {args.gamma}")
    print(f"SCOT plan: max non-zeros per expert {int((T > 0).sum(0).max())} (<= {capacity}), "
          f"expert marginal error {float((T.sum(0) - b).abs().sum()):.1e}, "
          f"L-BFGS iterations {scot.iterations}")
    print(f"{'router':>12} | {'affinity':>9} | {'dropped':>7} | expert loads")
    for name, R in (("greedy top-1", greedy), ("SCOT", routed), ("exact LP", lp_route)):
        dropped = int((R.sum(1) == 0).sum())
        print(f"{name:>12} | {float((R * logits).sum()):9.3f} | {dropped:7d} | "
              f"{[int(v) for v in R.sum(0).tolist()]}")


if __name__ == "__main__":
    main()
