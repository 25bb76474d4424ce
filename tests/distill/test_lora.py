"""LoRA adapters on peft (monge.distill.lora): frozen base, exact merge/unmerge/disable,
adapter-only files, exact adapter sums (LCM-LoRA's τ′ + τ_LCM), and one-line errors."""

from __future__ import annotations

import copy
import importlib
import json
import math
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from monge.errors import DataError, InputError
from monge.models import MLP, UNet

pytest.importorskip("peft")

from monge.distill import lora  # noqa: E402
from monge.distill.lora import (  # noqa: E402
    adapter_fraction,
    adapter_state_dict,
    add_lora,
    combine,
    disabled,
    load_adapter,
    merge,
    merged_copy,
    save_adapter,
    set_active,
    target_names,
    unmerge,
)


def _mlp(seed: int = 0, hidden: int = 16) -> MLP:
    torch.manual_seed(seed)
    return MLP(2, hidden=hidden, depth=2, time_dim=8, num_classes=3)


def _unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(in_channels=1, base_channels=8, channel_mults=(1, 2), time_dim=16, groups=4)


def _inputs(net, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    shape = (5, 2) if isinstance(net, MLP) else (3, 1, 8, 8)
    x = torch.randn(shape, generator=g)
    t = torch.rand(shape[0], generator=g)
    y = torch.tensor([0, 1, 2, 3, 0]) if isinstance(net, MLP) else None
    return x, t, y


def _randomize(model, name: str = "default", seed: int = 0) -> None:
    """Give adapter ``name`` a nonzero B (peft starts it at zero, i.e. ΔW = 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if f".lora_B.{name}." in key:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _base_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}


def _delta(model, layer_name: str, name: str) -> torch.Tensor:
    """ΔW = (α/r)·B·A of one layer, from the adapter's A and B matrices."""
    layer = dict(model.get_base_model().named_modules())[layer_name]
    a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
    weight = layer.get_base_layer().weight
    return (layer.scaling[name] * (b.flatten(1) @ a.flatten(1))).reshape(weight.shape)


def test_add_lora_freezes_base_keeps_call_signature_and_attributes():
    net = _mlp()
    x, t, y = _inputs(net)
    reference = net(x, t, y=y)
    model = add_lora(net, rank=2)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A.default." in k or ".lora_B.default." in k
                             for k in trainable)
    assert trainable == {k for k, _ in model.named_parameters() if ".lora_" in k}
    assert torch.equal(model(x, t, y=y), reference)  # B = 0 at start: ΔW = 0
    assert model.config == net.config and model.num_classes == 3 and model.null_class == 3
    assert set(lora._adapter_layers(model, "default")) == {
        n for n, m in net.named_modules() if isinstance(m, lora._peft("t").tuners.lora.Linear)}
    assert len(lora._adapter_layers(model, "default")) == 5  # every Linear

    unet = _unet()
    names = target_names(unet, "all")
    assert "input_conv" in names and "output.2" in names and "time_mlp.0" in names
    assert set(target_names(unet, "linear")) < set(names)
    adapted = add_lora(unet, rank=1, targets="all")
    assert lora._adapter_layers(adapted, "default") == names
    assert adapted.downsampling_factor == 2 and adapted.config == unet.config

    # a second adapter becomes the active, only trainable one
    add_lora(model, rank=1, name="style")
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".style." in k for k in trainable)


def test_training_changes_outputs_and_leaves_base_weights_bitwise_equal():
    net = _mlp()
    x, t, y = _inputs(net)
    reference = net(x, t, y=y)
    model = add_lora(net, rank=2)
    base = _base_state(model)
    # the trainer hands every parameter to AdamW with weight decay; frozen ones have no grad
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    target = torch.randn_like(reference)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x, t, y=y), target).backward()
        opt.step()
    after = _base_state(model)
    assert after.keys() == base.keys() and all(torch.equal(after[k], base[k]) for k in base)
    assert (model(x, t, y=y) - reference).abs().max() > 1e-3
    with disabled(model):
        assert torch.equal(model(x, t, y=y), reference)


@pytest.mark.parametrize("make", [_mlp, _unet], ids=["mlp", "unet"])
def test_merge_unmerge_and_disabled_are_exact(make):
    net = make()
    x, t, y = _inputs(net)
    reference = net(x, t, y=y)
    model = add_lora(net, rank=1, targets="all")
    _randomize(model)
    base = _base_state(model)
    adapted = model(x, t, y=y)
    assert (adapted - reference).abs().max() > 1e-3
    merge(model)
    assert torch.allclose(model(x, t, y=y), adapted, atol=1e-5)
    merge(model)  # merging twice does nothing
    assert torch.allclose(model(x, t, y=y), adapted, atol=1e-5)
    with disabled(model):  # unmerged for the block, merged again after
        assert torch.equal(model(x, t, y=y), reference)
    assert lora._is_merged(model)
    unmerge(model)
    assert not lora._is_merged(model)
    assert torch.allclose(model(x, t, y=y), adapted, atol=1e-5)
    after = _base_state(model)
    assert all(torch.equal(after[k], base[k]) for k in base)  # W0 restored bit for bit
    with disabled(model):
        assert torch.equal(model(x, t, y=y), reference)


@pytest.mark.parametrize("make", [_mlp, _unet], ids=["mlp", "unet"])
def test_merged_copy_is_a_plain_network_that_loads_into_a_fresh_one(make):
    net = make()
    x, t, y = _inputs(net)
    model = add_lora(net, rank=1, targets="all")
    _randomize(model)
    adapted = model(x, t, y=y)
    plain = merged_copy(model)
    assert type(plain) is type(net)
    assert not any(".lora_" in k or "base_layer" in k for k in plain.state_dict())
    fresh = type(net)(**net.config)
    fresh.load_state_dict(plain.state_dict())  # strict
    assert torch.allclose(fresh(x, t, y=y), adapted, atol=1e-5)
    assert torch.equal(model(x, t, y=y), adapted)  # the adapted model is untouched


def test_save_load_round_trip_writes_adapter_tensors_only(tmp_path):
    torch.manual_seed(0)
    net = MLP(2, hidden=64, depth=2, time_dim=16)
    base_weights = copy.deepcopy(net.state_dict())
    x, t, _ = _inputs(_mlp())
    model = add_lora(net, rank=1, alpha=2.0)
    _randomize(model)
    adapted = model(x, t)
    path = save_adapter(model, tmp_path / "lcm.safetensors")

    with safe_open(str(path), framework="pt") as fh:
        keys, meta = set(fh.keys()), json.loads(fh.metadata()["monge_lora"])
    assert keys == set(adapter_state_dict(model, "default"))
    assert all(".lora_A." in k or ".lora_B." in k for k in keys)
    assert (meta["rank"], meta["alpha"]) == (1, 2.0)
    assert meta["targets"] == target_names(MLP(2, hidden=64, depth=2, time_dim=16))
    full = tmp_path / "full.safetensors"
    save_file(base_weights, str(full))
    fraction = adapter_fraction(model)
    n_adapter = sum(v.numel() for v in adapter_state_dict(model).values())
    assert math.isclose(fraction, n_adapter / sum(v.numel() for v in base_weights.values()))
    assert fraction < 0.1 and path.stat().st_size < 0.25 * full.stat().st_size

    # into a freshly adapted copy of the same base network
    fresh = MLP(2, hidden=64, depth=2, time_dim=16)
    fresh.load_state_dict(base_weights)
    fresh = add_lora(fresh, rank=1, alpha=2.0)
    assert not torch.equal(fresh(x, t), adapted)
    assert load_adapter(fresh, path) is fresh
    assert torch.equal(fresh(x, t), adapted)
    # into a plain network: the adapter is created from the file's metadata
    plain = MLP(2, hidden=64, depth=2, time_dim=16)
    plain.load_state_dict(base_weights)
    loaded = load_adapter(plain, path, name="lcm")
    assert torch.equal(loaded(x, t), adapted)
    assert loaded.peft_config["lcm"].lora_alpha == 2.0


def test_load_refuses_a_file_that_does_not_fit(tmp_path):
    model = add_lora(_mlp(), rank=2)
    path = save_adapter(model, tmp_path / "a.safetensors")
    other_rank = add_lora(_mlp(), rank=1)
    with pytest.raises(InputError, match="rank 2, alpha 2 do not match") as err:
        load_adapter(other_rank, path)
    assert "\n" not in str(err.value)
    fewer_layers = add_lora(_mlp(), rank=2, targets=["net.0", "net.2"])
    with pytest.raises(InputError, match="unexpected") as err:
        load_adapter(fewer_layers, path)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="does not have"):
        load_adapter(_unet(), path)


def test_missing_or_corrupt_adapter_file_is_one_data_error(tmp_path):
    model = add_lora(_mlp(), rank=2)
    with pytest.raises(DataError, match="not found"):
        load_adapter(model, tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(save_adapter(model, tmp_path / "ok.safetensors").read_bytes()[:-40])
    no_meta = tmp_path / "no_meta.safetensors"
    save_file({k: v.contiguous() for k, v in adapter_state_dict(model).items()}, str(no_meta))
    for bad in (garbage, truncated, no_meta):
        with pytest.raises(DataError) as err:
            load_adapter(model, bad)
        assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_combine_equals_the_sum_of_weighted_deltas():
    net = _unet()
    x, t, _ = _inputs(net)
    base = copy.deepcopy(net.state_dict())
    # different ranks, alphas and layer sets (the 1-channel output conv allows rank 1 only)
    rank2_layers = [n for n in target_names(net, "all") if n != "output.2"]
    model = add_lora(net, rank=2, alpha=3.0, targets=rank2_layers, name="lcm")
    add_lora(model, rank=1, alpha=0.5, targets="all", name="style")
    _randomize(model, "lcm", seed=1)
    _randomize(model, "style", seed=2)
    deltas = {n: (_delta(model, n, "lcm") if n in rank2_layers else 0.0,
                  _delta(model, n, "style")) for n in lora._adapter_layers(model, "style")}
    combine(model, {"lcm": 0.7, "style": -1.3}, name="mix")
    assert model.active_adapter == "mix" and model.peft_config["mix"].r == 3
    for n in ("down.0.conv1", "middle.embedding"):  # a Conv2d and a Linear layer
        d_lcm, d_style = deltas[n]
        assert torch.allclose(_delta(model, n, "mix"), 0.7 * d_lcm - 1.3 * d_style, atol=1e-6)
    manual = copy.deepcopy(base)
    for n, (d_lcm, d_style) in deltas.items():
        manual[f"{n}.weight"] = manual[f"{n}.weight"] + 0.7 * d_lcm - 1.3 * d_style
    reference = _unet()
    reference.load_state_dict(manual)
    assert torch.allclose(model(x, t), reference(x, t), atol=1e-5)
    # one adapter (peft then uses its "linear" type, exact for a single adapter)
    combine(model, {"style": -1.0}, name="minus_style")
    assert torch.allclose(_delta(model, "output.2", "minus_style"),
                          -deltas["output.2"][1], atol=1e-7)
    set_active(model, "lcm")
    assert model.active_adapter == "lcm"


def test_rank_above_a_layer_rank_is_one_input_error():
    with pytest.raises(InputError, match=r"layer 'net\.4' \(Linear weight \[2, 16\]\)") as err:
        add_lora(_mlp(), rank=3)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"'output\.2' \(Conv2d weight \[1, 8, 3, 3\]\)"):
        add_lora(_unet(), rank=2, targets="all")
    # a Conv2d's ΔW is [out, in·kh·kw]: 1 input channel with a 3x3 kernel allows rank 8
    add_lora(_unet(), rank=8, targets=["input_conv"])
    with pytest.raises(InputError, match="largest rank 8 of layer 'input_conv'"):
        add_lora(_unet(), rank=9, targets=["input_conv"])


def test_bad_arguments_are_input_errors():
    model = add_lora(_mlp(), rank=1)
    for call in (lambda: add_lora(_mlp(), rank=0),
                 lambda: add_lora(_mlp(), alpha=-1.0),
                 lambda: add_lora(_mlp(), targets="conv"),
                 lambda: add_lora(_mlp(), targets=["net.1"]),  # an activation
                 lambda: add_lora(model, rank=1),  # "default" exists
                 lambda: combine(model, {"default": 1.0}, name="default"),
                 lambda: combine(model, {"nope": 1.0}),
                 lambda: combine(model, {"default": float("nan")}),
                 lambda: adapter_state_dict(_mlp()),
                 lambda: merge(_mlp()),
                 lambda: set_active(model, "nope")):
        with pytest.raises(InputError) as err:
            call()
        assert "\n" not in str(err.value)


def test_missing_peft_is_an_input_error_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    importlib.reload(lora)  # the module itself imports without peft
    with pytest.raises(InputError, match=r"add_lora needs peft: pip install 'monge\[lora\]'"):
        lora.add_lora(_mlp())
    with pytest.raises(InputError, match="needs peft"):
        lora.load_adapter(_mlp(), "x.safetensors")
