"""Text2PDE-style latent flow: Burgers data, autoencoder, conditioned flow, CLI."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from monge.cli.pde_cmd import pde_app
from monge.errors import InputError
from monge.paths import LinearPath
from monge.sciml.references import spectral_burgers
from monge.sciml.text2pde import (
    ConditionalFlowLoss,
    Text2PDEConfig,
    sample_trajectories,
    train_text2pde,
    trajectory_errors,
)
from monge.sciml.text2pde_data import (
    burgers_pseudo_spectral,
    describe,
    dominant_wavenumber,
    energy,
    estimate_viscosity,
    make_burgers_trajectories,
)
from monge.sciml.text2pde_nets import DescriptorTokenizer, GridAutoencoder
from monge.train import FlowMatchingLoss

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return make_burgers_trajectories(72, seed=3, refine=2)


def test_batched_solver_matches_the_reference_solver():
    x = np.arange(64) / 64
    u0 = 0.8 * np.sin(2 * np.pi * x) + 0.3 * np.cos(4 * np.pi * x + 1.0)
    times = np.linspace(0, 0.25, 9)
    ref = spectral_burgers(u0, 0.02, 1.0, times, rtol=1e-11, atol=1e-13)
    ours = burgers_pseudo_spectral(u0, 0.02, times)[0]
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-6


def test_mass_conserved_and_energy_decays_faster_with_viscosity():
    x = np.arange(64) / 64
    u0 = 0.3 + np.sin(2 * np.pi * x) + 0.4 * np.sin(6 * np.pi * x + 0.5)
    times = np.linspace(0, 0.25, 32)
    u = burgers_pseudo_spectral(np.stack([u0] * 3), [0.005, 0.02, 0.05], times)
    assert np.abs(u.mean(axis=2) - u0.mean()).max() < 1e-6
    e = energy(u)
    assert (np.diff(e, axis=1) < 0).all()                 # dissipative in time
    assert e[0, -1] > e[1, -1] > e[2, -1]                 # and more so with more viscosity


def test_factors_are_read_back_from_the_trajectories(data):
    nu_hat = estimate_viscosity(data.u, data.times)
    assert np.abs(nu_hat / data.nu - 1).max() < 0.05
    assert (dominant_wavenumber(data.u) == data.waves).all()
    assert np.allclose(np.abs(data.u[:, 0]).max(axis=1), data.amplitude, atol=0.02)
    i = 5
    assert data.descriptors[i] == describe(data.nu[i], data.waves[i], data.amplitude[i])
    assert data.u.shape == (72, 32, 64)


def test_tokenizer_reads_numbers_and_rejects_unknown_words():
    tok = DescriptorTokenizer()
    a = tok.encode(["viscosity 0.01, 2 waves, amplitude 1.0"])
    b = tok.encode(["viscosity 0.02, 2 waves, amplitude 1.0"])
    assert a.shape == (1, tok.max_length) and (a != b).sum() == 1
    with pytest.raises(InputError, match="'foo'"):
        tok.encode(["viscosity 0.01, 2 foo"])
    with pytest.raises(InputError, match="max_length"):
        tok.encode(["viscosity 0.0123456789012345678901"])


def test_conditional_flow_loss_is_the_flow_matching_loss():
    x0, x1 = torch.randn(8, 4, 8, 8), torch.randn(8, 4, 8, 8)

    def net(x, t, cond=None):
        return x * t[:, None, None, None]

    ours = ConditionalFlowLoss()(net, x0, x1, torch.zeros(8, 3), torch.Generator().manual_seed(1))
    ref = FlowMatchingLoss(LinearPath(), "velocity")(net, x0, x1, None,
                                                     torch.Generator().manual_seed(1))
    assert torch.allclose(ours.loss, ref.loss)


def test_autoencoder_beats_the_trivial_baseline(data):
    cfg = Text2PDEConfig(conditions=("initial",), ae_steps=60, flow_steps=1, rollout_steps=0,
                         batch_size=16, lr=3e-3)
    models = train_text2pde(data.subset(slice(0, 64)), cfg)
    test = data.subset(slice(64, 72))
    u = torch.as_tensor(test.u / models.u_scale, dtype=torch.float32)
    with torch.no_grad():
        recon = models.autoencoder(u).double().numpy() * models.u_scale
    err = trajectory_errors(recon, test.u)[0].mean()
    zero = trajectory_errors(np.zeros_like(test.u), test.u)[0].mean()   # = 1
    mean = trajectory_errors(np.broadcast_to(data.u[:64].mean(0), test.u.shape), test.u)[0]
    assert err < 0.5 * min(zero, mean.mean())


def test_text_conditioned_flow_depends_on_the_descriptor(data):
    cfg = Text2PDEConfig(conditions=("text",), ae_steps=3, flow_steps=8, rollout_steps=0,
                         batch_size=8)
    models = train_text2pde(data.subset(slice(0, 32)), cfg)
    tokens = models.tokenizer.encode(["viscosity 0.005, 1 wave, amplitude 1.0",
                                      "viscosity 0.05, 3 waves, amplitude 0.5"])

    def sample(tok):
        g = torch.Generator().manual_seed(0)
        return sample_trajectories(models, "text", tok, steps=3, generator=g)[0]

    both = sample(tokens)
    again = sample(tokens[:1].expand(2, -1).contiguous())
    assert np.allclose(both[0], again[0], atol=1e-5)               # same descriptor, same noise
    assert np.abs(both[1] - again[1]).max() > 1e-4                 # other descriptor, same noise


def test_bad_inputs_raise_one_clear_error():
    ae = GridAutoencoder()
    with pytest.raises(InputError, match=r"\[B, 32, 64\]"):
        ae.encode(torch.zeros(2, 30, 64))
    bad = torch.zeros(2, 32, 64)
    bad[0, 3, 5] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        ae.encode(bad)
    with pytest.raises(InputError, match="NaN"):
        burgers_pseudo_spectral(np.full(16, np.nan), 0.01, [0.0, 0.1])
    with pytest.raises(InputError, match="viscosit"):
        burgers_pseudo_spectral(np.ones(16), -0.01, [0.0, 0.1])
    with pytest.raises(InputError, match="conditions"):
        Text2PDEConfig(conditions=("image",))


def test_cli_text2pde_writes_metrics(tmp_path):
    runner = CliRunner()
    out = tmp_path / "t2p"
    res = runner.invoke(pde_app, ["text2pde", "--out", str(out), "--train", "24", "--test", "6",
                                  "--ae-steps", "3", "--flow-steps", "3", "--rollout-steps",
                                  "3", "--sample-steps", "2", "--batch", "8", "--descriptor",
                                  "viscosity 0.01, 2 waves, amplitude 1.0"])
    assert res.exit_code == 0, res.output
    methods = json.loads((out / "metrics.json").read_text())["methods"]
    assert set(methods) == {"latent_flow", "latent_flow_text", "rollout", "ae_floor",
                            "spectral"}
    assert all(np.isfinite(m["relative_l2"]) for m in methods.values())
    assert methods["spectral"]["relative_l2"] < 1e-2 < methods["latent_flow"]["relative_l2"]
    for name in ("fields.png", "error_vs_time.png", "generated.png", "report.md"):
        assert (out / name).exists()
    bad = runner.invoke(pde_app, ["text2pde", "--out", str(tmp_path / "bad"), "--descriptor",
                                  "viscosity 0.01, 2 foo"])
    assert bad.exit_code == 1 and "'foo'" in bad.output and "Traceback" not in bad.output
