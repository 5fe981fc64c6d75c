"""Loading with the exact missing and dropped keys checked (networks/checkpoints/load.py): encoder into
classifier heads, keys named when missing or without a place, refusals naming the file, and rebuilding from a
file (build_from_checkpoint)."""

from __future__ import annotations

import re

import pytest
import torch

from monai_ext.networks import checkpoints as ck
from monai_ext.networks.classifier import ViTClassifier
from monai_ext.networks.mae import MaskedAutoencoderViT
from tests.networks.checkpoints.helpers import TINY, TINY_ENC


def test_cls_pooling_keeps_the_pretrained_norm() -> None:
    mae = MaskedAutoencoderViT(**TINY)
    clf = ViTClassifier(3, global_pool="cls", **TINY_ENC)
    report = ck.load_encoder_weights(clf, mae.state_dict())
    assert report.missing == ["head.bias", "head.weight"]
    torch.testing.assert_close(clf.norm.weight, mae.norm.weight)


def test_missing_encoder_keys_are_named() -> None:
    sd = MaskedAutoencoderViT(**TINY).state_dict()
    del sd["blocks.1.mlp.fc2.bias"]
    with pytest.raises(ValueError, match="blocks.1.mlp.fc2.bias"):
        ck.load_encoder_weights(ViTClassifier(2, **TINY_ENC), sd)
    with pytest.raises(ValueError, match="blocks.1.mlp.fc2.bias"):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), sd)


def test_encoder_into_linear_probe_head() -> None:
    clf = ViTClassifier(3, linear_probe=True, **TINY_ENC)
    report = ck.load_encoder_weights(clf, MaskedAutoencoderViT(**TINY).state_dict())
    assert report.missing == ["fc_norm.bias", "fc_norm.weight", "head.0.running_mean", "head.0.running_var",
                              "head.1.bias", "head.1.weight"]


@pytest.mark.parametrize("extra, named", [
    ({"depth": 3}, "blocks.2."),                       # a deeper encoder, cut to fit
    ("layerscale", "blocks.0.ls1.gamma"),              # LayerScale gammas (1e-5) thrown away: branches 1e5 too strong
])
def test_encoder_keys_the_model_has_no_place_for_are_refused(extra, named) -> None:
    state = MaskedAutoencoderViT(**{**TINY, **extra}).state_dict() if isinstance(extra, dict) else \
        MaskedAutoencoderViT(**TINY).state_dict()
    if extra == "layerscale":
        state.update({f"blocks.{i}.ls{j}.gamma": torch.full((TINY["embed_dim"],), 1e-5)
                      for i in range(TINY["depth"]) for j in (1, 2)})
    with pytest.raises(ck.CheckpointError, match=f"have no place in this model, e.g. .*'{named}"):
        ck.load_encoder_weights(ViTClassifier(2, **TINY_ENC), state)


@pytest.mark.parametrize("content", [{}, {"model_ema": {"w": torch.zeros(1)}}])
def test_a_layout_refusal_names_the_file(tmp_path, content) -> None:
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(ck.CheckpointError, match=f"^{re.escape(str(path))}: "):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), path)


def test_a_refusal_while_fitting_the_file_names_it(tmp_path) -> None:
    sd = MaskedAutoencoderViT(**TINY).state_dict()
    sd["pos_embed"] = sd["pos_embed"][0]  # saved without its batch axis
    path = tmp_path / "flat.pth"
    torch.save(sd, path)
    with pytest.raises(ck.CheckpointError, match=re.escape(f"{path}: pos_embed: checkpoint shape (17, 32)")):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), path)


def test_foreign_file_cannot_be_rebuilt() -> None:
    with pytest.raises(ValueError, match="no architecture record"):
        ck.build_from_checkpoint(MaskedAutoencoderViT(**TINY).state_dict())


def test_a_training_checkpoint_given_for_a_model_is_named_in_a_short_message() -> None:
    """checkpoint_iteration=N.pt lies beside models/model.pt: the message quoted the whole content it was given
    (megabytes of tensors on one line) instead of the file, and did not say which file to give."""
    training = {"network": MaskedAutoencoderViT(**TINY).state_dict(), "optimizer": {"state": {}},
                "arch": {"format": "monai_ext", "kind": "classifier"}}
    with pytest.raises(ValueError) as raised:
        ck.build_from_checkpoint(training, "run/models/checkpoint_iteration=8.pt")
    assert str(raised.value) == ("run/models/checkpoint_iteration=8.pt: not a monai_ext model checkpoint; a training "
                                 "checkpoint, for resuming a run; give the run's models/model.pt (the best model)")


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"].pop("head.bias"), r"keys do not match its architecture record: missing \['head.bias'\]"),
    (lambda c: c["arch"]["arch_args"].update(bogus=1), "its architecture record does not build a classifier: .*bogus"),
])
def test_an_edited_own_file_is_refused_naming_it(tmp_path, edit, message) -> None:
    """A hand-edited file (or one with a newer version's arguments) gave torch's key dump or a TypeError."""
    path = tmp_path / "model.pt"
    ck.save_model_checkpoint(path, ViTClassifier(2, **TINY_ENC), "classifier")
    content = torch.load(path, weights_only=True)
    edit(content)
    with pytest.raises(ck.CheckpointError, match=f"^edited.pt: {message}"):
        ck.build_from_checkpoint(content, "edited.pt")


@pytest.mark.parametrize("names, refused", [(["a", "b"], False), (["a", "b", "c"], True), (["a"], True), (None, False)])
def test_a_record_naming_another_number_of_classes_than_the_network_has_is_refused(tmp_path, names, refused) -> None:
    """A bundle run given --num_classes 3 on a two-class datalist saved such a file; its unnamed class was left out
    of every summary. Records without class names (files saved outside a bundle run) pass."""
    path = tmp_path / "model.pt"
    ck.save_model_checkpoint(path, ViTClassifier(2, **TINY_ENC), "classifier",
                             {"class_names": names} if names is not None else None)
    if refused:
        with pytest.raises(ck.CheckpointError, match=rf"model\.pt: its network has 2 output classes but it names "
                                                      rf"{len(names)}, {re.escape(repr(names))}"):
            ck.build_from_checkpoint(path)
    else:
        ck.build_from_checkpoint(path)


@pytest.mark.parametrize("content, named", [([1, 2, 3], "list"), ((torch.zeros(2),), "tuple"), (7, "int"),
                                            (torch.zeros(3), "Tensor")])
@pytest.mark.parametrize("given", ["path", "content"])
def test_a_checkpoint_that_is_no_dict_is_refused_naming_the_file(tmp_path, content, named, given) -> None:
    """torch.save([1, 2, 3]) was taken for the path '1,2,3': "checkpoint '1,2,3' does not exist"."""
    path = tmp_path / "listed.pth"
    torch.save(content, path)
    source = path if given == "path" else ck.read_checkpoint(path)
    expected = rf"^{re.escape(str(path))}: a checkpoint must be a dict, got '{named}'$"
    for load in (ck.load_mae_weights, lambda model, src, name: ck.build_from_checkpoint(src, name)):
        with pytest.raises(ck.CheckpointError, match=expected):
            load(MaskedAutoencoderViT(**TINY), source, name=None if given == "path" else str(path))


def test_content_given_without_a_name_is_not_taken_for_a_path() -> None:
    with pytest.raises(ck.CheckpointError, match=r"^<in-memory checkpoint>: a checkpoint must be a dict, got 'list'"):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), [1, 2, 3])


@pytest.mark.parametrize("load", ["mae", "build"])
def test_a_path_typed_as_a_number_is_still_read(tmp_path, monkeypatch, load) -> None:
    """``--ckpt_path 2024`` arrives from the command line as an int: it names the file "2024", as before."""
    monkeypatch.chdir(tmp_path)
    model = MaskedAutoencoderViT(**TINY)
    ck.save_model_checkpoint(tmp_path / "2024", model, "mae")
    if load == "mae":
        assert ck.load_mae_weights(MaskedAutoencoderViT(**TINY), 2024).layout == "monai_ext"
    else:
        assert isinstance(ck.build_from_checkpoint(2024), MaskedAutoencoderViT)


def test_an_encoder_only_file_given_for_a_whole_mae_is_named_as_such(tmp_path) -> None:
    """Facebook's encoder-only mae_pretrain_vit_base.pth (or a timm ViT) given for the MAE: the refusal listed some
    40 decoder keys and never said what the file held."""
    from monai_ext.io.checkpoints import CheckpointError
    from monai_ext.networks.checkpoints import load_mae_weights
    from monai_ext.networks.mae import MaskedAutoencoderViT

    model = MaskedAutoencoderViT(**TINY)
    encoder = {k: v for k, v in model.state_dict().items() if not k.startswith(("decoder_", "mask_token"))}
    path = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save({"model": encoder}, path)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: holds an encoder only \(layout "
                                              r"'facebook_mae', no decoder or mask token"):
        load_mae_weights(MaskedAutoencoderViT(**TINY), path)


def test_a_whole_mae_without_its_fixed_decoder_grid_is_not_called_an_encoder(tmp_path) -> None:
    """A whole MAE saved without its non-trainable ``decoder_pos_embed`` was refused as "holds an encoder only"."""
    from monai_ext.io.checkpoints import CheckpointError
    from monai_ext.networks.checkpoints import load_mae_weights
    from monai_ext.networks.mae import MaskedAutoencoderViT

    state = {k: v for k, v in MaskedAutoencoderViT(**TINY).state_dict().items() if k != "decoder_pos_embed"}
    torch.save({"model": state}, tmp_path / "mae.pth")
    with pytest.raises(CheckpointError, match=r"Missing beyond the expected: \['decoder_pos_embed'\]"):
        load_mae_weights(MaskedAutoencoderViT(**TINY), tmp_path / "mae.pth")


def test_a_file_of_another_depth_is_refused_quoting_some_keys_and_counting_the_rest() -> None:
    """A file with fewer blocks listed every key of each block it lacks: a 6 KB "one line" for a 1-block ViT-B."""
    shallow = MaskedAutoencoderViT(**{**TINY, "depth": 1}).state_dict()
    with pytest.raises(ck.CheckpointError) as refused:
        ck.load_mae_weights(MaskedAutoencoderViT(**{**TINY, "depth": 3}), shallow, name="shallow.pth")
    message = str(refused.value)
    assert message.startswith("shallow.pth: keys do not match the model. Missing beyond the expected: "
                              "['blocks.1.attn.proj.bias', ") and "] and 16 more; expected missing" in message
    assert len(message) < 600, message


WRAPPERS = {
    "compiled": lambda m: torch.compile(m, backend="eager"),
    "data_parallel": torch.nn.DataParallel,
    "compiled_data_parallel": lambda m: torch.compile(torch.nn.DataParallel(m), backend="eager"),
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
@pytest.mark.parametrize("kind", ["mae", "classifier"])
def test_a_wrapped_model_is_loaded_through_the_network_it_wraps(wrapper: str, kind: str) -> None:
    """A model compiled or wrapped before its weights were loaded (``_orig_mod.`` / ``module.`` keys) ended in a
    bare ``KeyError: 'patch_embed.proj.weight'``."""
    torch.manual_seed(0)
    source = MaskedAutoencoderViT(**TINY)
    torch.manual_seed(1)
    network = MaskedAutoencoderViT(**TINY) if kind == "mae" else ViTClassifier(2, **TINY_ENC)
    wrapped = WRAPPERS[wrapper](network)
    load = ck.load_mae_weights if kind == "mae" else ck.load_encoder_weights
    report = load(wrapped, source.state_dict())
    assert report.missing == ([] if kind == "mae" else ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"])
    torch.testing.assert_close(network.blocks[1].attn.qkv.weight, source.blocks[1].attn.qkv.weight, atol=0, rtol=0)


def test_an_mae_given_to_the_encoder_loader_is_named_with_the_loader_to_use() -> None:
    """It was an AttributeError: 'MaskedAutoencoderViT' object has no attribute 'encoder_parameter_names'."""
    with pytest.raises(TypeError, match="not of a MaskedAutoencoderViT; an MAE loads a whole MAE with load_mae_weights"):
        ck.load_encoder_weights(MaskedAutoencoderViT(**TINY), MaskedAutoencoderViT(**TINY).state_dict())
