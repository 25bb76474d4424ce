"""Classifier guidance: with the exact classifier p(y | x_t) at w = 1 the guided unconditional
model *is* the conditional model (Bayes' rule on scores); a trained noisy classifier steers
samples to their class; NFE and classifier calls are counted; bad input."""

import pytest
import torch
from test_cfg import FULL, MEANS, PARTS, K, _model, _purity  # noqa: E402  (same folder)
from torch import nn

from monge.errors import InputError
from monge.guidance import ClassifierGuidance, train_noisy_classifier
from monge.paths import ModelWrapper, VPPath
from monge.solvers import integrate, make_solver

PATH = VPPath("cosine")


class ExactClassifier(nn.Module):
    """log p(x_t, k) of the mixture: its log-softmax is the exact p(k | x_t)."""

    def forward(self, x, t):
        *_, logp = FULL._marginal(x, t, PATH)
        return logp


def _unconditional():
    return ModelWrapper(lambda x, t: FULL.posterior_mean(x, t, PATH), PATH, "x1")


def test_exact_classifier_guidance_at_w1_is_the_conditional_model():
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.arange(32) % K
    guided = ClassifierGuidance(_unconditional(), ExactClassifier(), 1.0, interval=(0.0, 1.0))
    conditional = _model(PATH)
    for t in (0.2, 0.5, 0.8):
        tt = torch.full((32,), t, dtype=torch.float64)
        torch.testing.assert_close(guided.predict("epsilon", x, tt, y=y),
                                   conditional.predict("epsilon", x, tt, y=y))
    assert guided.nfe == 3 and guided.classifier_calls == 3


def test_trained_noisy_classifier_steers_samples():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, K, (4000,), generator=g)
    x1 = torch.cat([PARTS[c].sample(1, generator=g) for c in y.tolist()])
    fit = train_noisy_classifier(PATH, x1, y, K, steps=400, batch_size=256, seed=0)
    assert fit.clean_accuracy > 0.75          # the classes overlap (std 1 at radius 2)
    x0 = torch.randn(1000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    labels = torch.arange(1000) % K
    purity = []
    for w in (0.0, 2.0):
        model = ClassifierGuidance(_unconditional(), fit.classifier.double(), w)
        res = integrate(model, x0, make_solver("dpmpp-2m"), steps=20, grid="logsnr",
                        cond={"y": labels})
        purity.append(_purity(res.x, labels))
    assert purity[0] < 0.4 < 0.8 < purity[1], purity
    assert MEANS.shape == (K, 2)


def test_bad_input():
    with pytest.raises(InputError, match=">= 0"):
        ClassifierGuidance(_unconditional(), ExactClassifier(), -1.0)
    with pytest.raises(InputError, match="needs class labels"):
        ClassifierGuidance(_unconditional(), ExactClassifier(), 1.0)(
            torch.zeros(2, 2, dtype=torch.float64), torch.full((2,), 0.5, dtype=torch.float64))
    with pytest.raises(InputError, match="labels"):
        train_noisy_classifier(PATH, torch.zeros(4, 2), torch.tensor([0, 1, 2, 9]), 4)
