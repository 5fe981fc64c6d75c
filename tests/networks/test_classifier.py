"""ViTClassifier: pooling modes, drop path, linear probe, every parameter used, MONAI export helpers."""

from __future__ import annotations

import pytest
import torch

from monai_ext.networks.classifier import ViTClassifier, build_classifier

TINY_ENC = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4)


@pytest.mark.parametrize("pool", ["avg", "cls"])
@pytest.mark.parametrize("linear_probe", [False, True])
def test_logits_shape_and_every_parameter_gets_a_gradient(pool: str, linear_probe: bool) -> None:
    model = ViTClassifier(5, global_pool=pool, linear_probe=linear_probe, drop_path_rate=0.1, **TINY_ENC).train()
    logits = model(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 5)
    logits.square().sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def test_avg_pool_is_mean_of_patch_tokens() -> None:
    model = ViTClassifier(2, **TINY_ENC).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = model.forward_tokens(x)
    expected = torch.nn.functional.layer_norm(tokens[:, 1:].mean(1), (32,), model.fc_norm.weight,
                                              model.fc_norm.bias, 1e-6)
    torch.testing.assert_close(model.forward_features(x), expected)


def test_drop_path_is_identity_in_eval_and_random_in_train() -> None:
    model = ViTClassifier(2, drop_path_rate=0.5, **TINY_ENC)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


@pytest.mark.parametrize("pool", ["avg", "cls"])
def test_torchscript_script_and_trace_match_eager(pool: str) -> None:
    model = build_classifier("vit_tiny_patch16", 2, img_size=32, global_pool=pool, drop_path_rate=0.1).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(torch.jit.script(model)(x), model(x))
    torch.testing.assert_close(torch.jit.trace(model, torch.randn(1, 3, 32, 32))(x), model(x))
    keys = set(model.state_dict())
    assert ("fc_norm.weight" in keys) == (pool == "avg") and ("norm.weight" in keys) == (pool == "cls")


@pytest.mark.parametrize("kwargs, match", [(dict(num_classes=0), "num_classes must be at least 1, got 0"),
                                           (dict(num_classes=2, global_pool="max"), "'max'"),
                                           (dict(num_classes=2, drop_path_rate=1.0), "drop_path_rate.*1.0")])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ViTClassifier(**{**TINY_ENC, **kwargs})


def test_an_unknown_architecture_is_refused_naming_the_mae_names_too() -> None:
    """The bundles' default and documented --arch is an MAE name; the refusal listed only the classifier names."""
    with pytest.raises(ValueError, match=r"'nonsense'.*vit_tiny_patch16.*mae_vit_tiny_patch16_dec128d2b"):
        build_classifier("nonsense", 2)
