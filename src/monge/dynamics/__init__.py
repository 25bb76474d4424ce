"""Training-dynamics tools: curvature and SGD stability, policy gradients, dataset distillation
and implicit (equilibrium / homotopy ODE) models.

- :mod:`~monge.dynamics.hessian`: Hessian trace (exact, Hutchinson, Gauss–Newton), sharpness,
  SLQ density (Wu & Su 2023).
- :mod:`~monge.dynamics.stability`: the tr(H) ≤ 2B/η check, plain SGD, sharpness callback.
- :mod:`~monge.dynamics.envs`: exact LQR (Riccati), gymnasium adapters.
- :mod:`~monge.dynamics.policies`: linear Gaussian and softmax policies.
- :mod:`~monge.dynamics.policy_gradient`: GPOMDP, momentum, N-PG-IGT, (N-)HARPG
  (Fatkhullin et al. 2023).
- :mod:`~monge.dynamics.tesla`: trajectory-matching distillation with a constant-memory exact
  gradient (Cui et al. 2023).
- :mod:`~monge.dynamics.homoode`: HomoODE vs neural ODE vs DEQ (Ding et al. 2023).

Submodules are imported on demand (``from monge.dynamics.hessian import hessian_trace``).
"""
