"""Neural PDE solvers and the classical references they are measured against.

| module | what |
|---|---|
| :mod:`~monge.sciml.fields` | coordinate networks (SIREN, MLP) and CQ-NIR coordinate quantisation |
| :mod:`~monge.sciml.references` | numpy/scipy grid solvers: upwind, Lax–Wendroff, semi-Lagrangian, spectral, Crank–Nicolson, Taylor–Green |
| :mod:`~monge.sciml.insr` | INSR: a neural field advanced in time by optimisation-based integrators |
| :mod:`~monge.sciml.pinn` | standard PINN and Lagrangian PINN for 1-D convection / Burgers |
| :mod:`~monge.sciml.dcdm` | Deep Conjugate Direction Method, CG, IC(0)-PCG, AMG-PCG |
| :mod:`~monge.sciml.text2pde_data` | Burgers trajectories from known factors, text descriptors, viscosity read-back |
| :mod:`~monge.sciml.text2pde_nets` | Text2PDE networks: descriptor tokeniser/transformer, grid autoencoder, latent velocity net, rollout net |
| :mod:`~monge.sciml.text2pde` | Text2PDE-style latent flow: training, sampling, evaluation against the rollout and the AE floor |

Submodules are imported on use (``from monge.sciml.dcdm import dcdm_solve``); this package
imports nothing heavy itself.
"""  # noqa: E501
