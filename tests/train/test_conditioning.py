"""Label conditioning: unconditional models never see labels; dropout rate and null class."""

import pytest
import torch

from monge.errors import InputError
from monge.train.conditioning import LabelConditioning


def test_unconditional_model_gets_no_labels():
    y = torch.arange(10)
    assert LabelConditioning(None)(y, None) == {}
    assert LabelConditioning(10)(None, None) == {}
    assert torch.equal(LabelConditioning(10)(y, None)["y"], y)


def test_dropout_rate_and_null_class():
    y = torch.randint(0, 5, (40000,), generator=torch.Generator().manual_seed(0))
    out = LabelConditioning(5, dropout=0.1)(y, torch.Generator().manual_seed(1))["y"]
    dropped = out == 5
    assert abs(float(dropped.float().mean()) - 0.1) < 0.006
    assert torch.equal(out[~dropped], y[~dropped])


def test_invalid_settings():
    with pytest.raises(InputError, match="cond_dropout"):
        LabelConditioning(None, dropout=0.1)
    with pytest.raises(InputError, match="cond_dropout"):
        LabelConditioning(3, dropout=1.0)
