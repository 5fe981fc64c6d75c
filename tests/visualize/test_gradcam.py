"""Token Grad-CAM: against a hand computation, free of side effects on the model, and safe under concurrent use."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch

from monai_ext.networks.classifier import ViTClassifier
from monai_ext.visualize.gradcam import gradcam_overlay, has_token_blocks, token_gradcam

IMAGE_SHAPE = (1, 3, 32, 48)  # a 4 x 6 patch grid: rows and columns cannot be swapped unnoticed


def tiny_classifier(seed: int = 0, global_pool: str = "avg") -> ViTClassifier:
    """A 2-block ViT (D = 16, P = 8) with a non-trivial head and norm, in eval mode."""
    torch.manual_seed(seed)
    model = ViTClassifier(num_classes=3, img_size=IMAGE_SHAPE[2:], patch_size=8, embed_dim=16, depth=2, num_heads=2,
                          global_pool=global_pool)
    norm = model.fc_norm if global_pool == "avg" else model.norm
    with torch.no_grad():  # the reference head starts at N(0, 2e-5): make the logits depend on the features
        model.head.weight.normal_(0, 0.5)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 0.1)
    return model.eval()


def images(count: int, seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(IMAGE_SHAPE, generator=generator) for _ in range(count)]


def hand_gradcam(model: ViTClassifier, image: torch.Tensor, class_index: int) -> np.ndarray:
    """Grad-CAM of the average-pooled classifier in numpy (float64), with the LayerNorm derivative written out.

    logit = w_c . LN(m) + b_c with m the mean of the L patch tokens, so every patch token has the same gradient
    g = J_LN(m)^T (gamma * w_c) / L, where J_LN(m)^T u = (u - mean(u) - xhat (u . xhat) / D) / sigma.
    """
    with torch.no_grad():
        tokens = model.forward_tokens(image)[0, 1:].double().numpy()  # (L, D)
    gamma = model.fc_norm.weight.detach().double().numpy()
    w_c = model.head.weight[class_index].detach().double().numpy()
    m = tokens.mean(axis=0)
    sigma = np.sqrt(m.var() + model.fc_norm.eps)
    xhat = (m - m.mean()) / sigma
    u = gamma * w_c
    g = (u - u.mean() - xhat * (u @ xhat) / len(u)) / sigma / len(tokens)
    gh, gw = model.patch_embed.grid_size
    cam = np.maximum(tokens @ g, 0).reshape(gh, gw)
    # OpenCV's bilinear resize uses the half-pixel centres of torch's align_corners=False
    cam = cv2.resize(cam, (image.shape[-1], image.shape[-2]), interpolation=cv2.INTER_LINEAR)
    return cam / cam.max()


@pytest.mark.parametrize("class_index", [0, 1, 2])
@pytest.mark.parametrize("seed", [0, 3])
def test_equals_the_hand_computation(class_index: int, seed: int) -> None:
    model = tiny_classifier(seed)
    image = images(1, seed + 10)[0]
    cam = token_gradcam(model, image, class_index)
    assert cam.shape == IMAGE_SHAPE[2:]
    expected = hand_gradcam(model, image, class_index)
    assert 0 < (expected > 0).mean() < 1  # some patches count for the class and some against it
    np.testing.assert_allclose(cam.numpy(), expected, atol=2e-5)


def hooked_gradcam(model: ViTClassifier, image: torch.Tensor, class_index: int, layer: str) -> torch.Tensor:
    """The classic recipe on a private copy: a forward hook keeps ``layer``'s output, ``.backward()`` fills its grad.

    Returns the normalised map, or NaNs when every weighted activation is 0 (0 / 0).
    """
    model = copy.deepcopy(model)
    kept = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        kept["tokens"] = output

    dict(model.named_modules())[layer].register_forward_hook(keep)
    model(image)[0, class_index].backward()
    tokens, grads = kept["tokens"][0, 1:], kept["tokens"].grad[0, 1:]
    cam = torch.relu((tokens * grads).sum(-1)).detach().reshape(1, 1, *model.patch_embed.grid_size)
    cam = torch.nn.functional.interpolate(cam, size=IMAGE_SHAPE[2:], mode="bilinear", align_corners=False)[0, 0]
    return cam / cam.max()


@pytest.mark.parametrize("class_index", [0, 2])
def test_cls_pooling_explains_the_last_blocks_input(class_index: int) -> None:
    # after the last block a cls-pooled logit depends on the cls token only: the map is taken one block earlier
    model, image = tiny_classifier(5, global_pool="cls"), images(1, 6)[0]
    cam = token_gradcam(model, image, class_index)
    assert float(cam.max()) == 1.0
    torch.testing.assert_close(cam, hooked_gradcam(model, image, class_index, "blocks.0"), rtol=0, atol=2e-5)
    assert hooked_gradcam(model, image, class_index, "blocks.1").isnan().all()  # the last block's output: all 0


def test_leaves_no_hooks_no_gradients_and_the_image_untouched() -> None:
    model = tiny_classifier()
    image = images(1)[0]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    token_gradcam(model, image, 1)
    assert all(p.grad is None for p in model.parameters())
    for module in model.modules():
        assert not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                    or module._backward_pre_hooks), module
    assert not image.requires_grad and image.grad is None
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert not model.training


def test_a_frozen_encoder_gives_the_same_map() -> None:
    model, image = tiny_classifier(), images(1)[0]
    trainable = token_gradcam(model, image, 2)
    for param in model.parameters():  # linear probing freezes everything but the head; here even the head
        param.requires_grad_(False)
    torch.testing.assert_close(token_gradcam(model, image, 2), trainable, rtol=0, atol=0)


def test_concurrent_requests_on_one_shared_model_equal_sequential_ones() -> None:
    model, batch = tiny_classifier(), images(8)
    sequential = [token_gradcam(model, image, index % 3) for index, image in enumerate(batch)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            concurrent = list(pool.map(lambda job: token_gradcam(model, job[1], job[0] % 3), enumerate(batch)))
            for got, want in zip(concurrent, sequential):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(sequential[0], sequential[1])  # the images' maps differ, so a mix-up would show


def test_overlay_is_uint8_rgb_and_cnn_networks_have_no_token_blocks() -> None:
    model = tiny_classifier()
    overlay = gradcam_overlay(model, images(1)[0], 0)
    assert overlay.shape == (*IMAGE_SHAPE[2:], 3) and overlay.dtype == np.uint8
    assert has_token_blocks(model) and has_token_blocks(torch.nn.Sequential()) is False


@pytest.mark.parametrize("display_shape", [(90, 50), (30, 200, 3), (7, 5, 4)])
def test_overlay_over_the_displayed_file_has_its_size_and_a_resized_map(display_shape) -> None:
    # the served and saved heat maps must line up with the file a viewer shows, not with the network's square input
    model, image = tiny_classifier(), images(1)[0]
    dark = np.zeros(display_shape, np.uint8)
    overlay = gradcam_overlay(model, image, 1, dark)
    assert overlay.shape == (*display_shape[:2], 3) and overlay.dtype == np.uint8
    # over black, the overlay is the jet colours of the map alone: the map resized bilinearly to the file's size
    cam = cv2.resize(token_gradcam(model, image, 1).numpy(), (display_shape[1], display_shape[0]),
                     interpolation=cv2.INTER_LINEAR)
    jet = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    np.testing.assert_array_equal(overlay, (0.4 * jet).astype(np.uint8))
    bright = gradcam_overlay(model, image, 1, np.full(display_shape, 255, np.uint8))
    assert (bright.astype(int) >= overlay.astype(int)).all() and (bright > overlay).any()  # the file's pixels show


@pytest.mark.parametrize("shape, class_index, message", [((2, 3, 32, 48), 0, "shape"), (IMAGE_SHAPE, 3, "class_index"),
                                                         (IMAGE_SHAPE, -1, "class_index")])
def test_bad_arguments(shape: tuple[int, ...], class_index: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        token_gradcam(tiny_classifier(), torch.zeros(shape), class_index)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_low_precision_model_gives_a_float32_map_and_overlays(dtype: torch.dtype) -> None:
    """A model cast to bfloat16 (to serve it) gave a bfloat16 map, which NumPy cannot hold: every overlay failed."""
    model, image = tiny_classifier().to(dtype), images(1)[0].to(dtype)
    cam = token_gradcam(model, image, 1)
    assert cam.dtype == torch.float32 and cam.shape == IMAGE_SHAPE[2:] and float(cam.max()) == 1.0
    full = token_gradcam(tiny_classifier(), image.float(), 1)
    assert float((cam - full).abs().max()) < 0.2  # the same map, at the type's precision
    assert gradcam_overlay(model, image, 1).shape == (*IMAGE_SHAPE[2:], 3)  # over the network's input
    assert gradcam_overlay(model, image, 1, np.zeros((20, 30), np.uint8)).shape == (20, 30, 3)  # over the file
