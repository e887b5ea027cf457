"""FastFlow and Reverse Distillation on lite0: the backbone-specific parts, built offline (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("anomalib")

from edge_ad.errors import ExportError  # noqa: E402
from edge_ad.export.families import family  # noqa: E402
from edge_ad.export.families.lite0 import Lite0Features  # noqa: E402
from edge_ad.export.recipe import ExportRecipe, ModelOptions  # noqa: E402
from tests.support.net import block_network  # noqa: E402

pytestmark = pytest.mark.export

LITE0 = "tf_efficientnet_lite0"
LAYERS = ["blocks.1", "blocks.2", "blocks.3"]


def _module(kind: str, size: int, **options):
    recipe = ExportRecipe(data=Path("."), model=ModelOptions(type=kind, image_size=size, **options))
    with block_network() as attempts:
        module = family(kind).build(recipe)
    assert not attempts, f"{kind} tried the network while building: {attempts}"
    return module


@pytest.mark.parametrize("size", [128, 100])
def test_lite0_taps_any_block_at_strides_4_8_16(size):
    features = Lite0Features(LITE0, LAYERS, (size, size))
    assert features.channels == [24, 40, 80]  # blocks.3: not one of timm's feature layers
    side = [-(-size // s) for s in (4, 8, 16)]  # "same" padding rounds up
    assert features.shapes == [(s, s) for s in side]
    assert len(features.feature_extractor.blocks) == 4, "cut after the deepest tapped block"
    assert not any(p.requires_grad for p in features.parameters())
    out = features.eval()(torch.zeros(2, 3, size, size))
    assert list(out) == LAYERS and [tuple(f.shape) for f in out.values()] == [
        (2, c, s, s) for c, s in zip([24, 40, 80], side, strict=True)
    ]


@pytest.mark.parametrize("layers", [["blocks.7"], ["layer1"], ["blocks.2", "blocks.1"]])
def test_lite0_refuses_layers_it_cannot_tap(layers):
    with pytest.raises(ExportError, match=r"model\.layers"):
        Lite0Features(LITE0, layers, (128, 128))


@pytest.mark.parametrize("size", [128, 192, 256, 100])
def test_fastflow_builds_offline_with_flows_and_norms_for_lite0(size):
    module = _module("fastflow", size)
    model = module.model
    assert model.feature_extractor.channels == [24, 40, 80]
    dims = [
        [c, size // s + (size % s > 0), size // s + (size % s > 0)]
        for c, s in zip([24, 40, 80], (4, 8, 16), strict=True)
    ]
    assert [list(n.normalized_shape) for n in model.norms] == dims
    assert [list(b.shapes[0]) for b in model.fast_flow_blocks] == dims
    assert all(len(b) == 8 for b in model.fast_flow_blocks), "anomalib's 8 flow steps"
    model.train()
    hidden, jacobians = model(torch.rand(2, 3, size, size))
    assert [list(h.shape[1:]) for h in hidden] == dims and all(j.shape == (2,) for j in jacobians)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, size, size))
    assert out.pred_score.shape == (1, 1) and out.anomaly_map.shape == (1, 1, size, size)


@pytest.mark.parametrize("size", [128, 192, 100])
def test_reverse_distillation_decoder_reconstructs_every_encoder_map(size):
    module = _module("reverse_distillation", size)
    model = module.model
    encoder_features = list(model.encoder(torch.rand(2, 3, size, size)).values())
    bottleneck = model.bottleneck(encoder_features)
    side = -(-size // 32)  # one stride below the deepest map, as anomalib's OCBE
    assert tuple(bottleneck.shape) == (2, 160, side, side)
    decoded = model.decoder(bottleneck)
    assert [f.shape for f in decoded] == [f.shape for f in encoder_features]
    assert all(f.is_contiguous() for f in decoded), "anomalib's loss flattens with view()"
    loss = module.loss(encoder_features, decoded)
    loss.backward()
    assert model.decoder.layer3[0].conv1.weight.grad is not None


def test_reverse_distillation_needs_a_three_level_pyramid():
    with pytest.raises(ExportError, match="three blocks at strides s, 2s, 4s"):
        _module("reverse_distillation", 128, layers=["blocks.1", "blocks.2"])
    with pytest.raises(ExportError, match="three blocks at strides s, 2s, 4s"):
        _module("reverse_distillation", 128, layers=["blocks.3", "blocks.4", "blocks.5"])


def test_reverse_distillation_cosine_matches_torch():
    from edge_ad.export.families.reverse_distillation import cosine_similarity

    a, b = torch.randn(2, 40, 16, 16), torch.randn(2, 40, 16, 16)
    b[0, :, 0, 0] = 0  # a zero vector: the eps clamp
    torch.testing.assert_close(cosine_similarity(a, b), torch.nn.functional.cosine_similarity(a, b))


@pytest.mark.parametrize("kind", ["fastflow", "reverse_distillation"])
def test_packaged_imagenet_weights_fill_the_backbone(kind):
    from edge_ad.export.weights import load_backbone_weights, packaged_weights

    module = _module(kind, 128)
    backbone = family(kind).backbone(module)
    before = backbone.conv_stem.weight.clone()
    assert load_backbone_weights(backbone, packaged_weights(LITE0)) == len(backbone.state_dict())
    assert not torch.equal(before, backbone.conv_stem.weight)


def test_lite0_maps_are_contiguous_whatever_the_input_layout():
    """Images resized by the runtime's resize arrive channels-last; anomalib's RD loss flattens maps with view()."""
    import torch

    net = Lite0Features(LITE0, LAYERS, (128, 128))
    images = torch.rand(4, 128, 128, 3).permute(0, 3, 1, 2)  # NHWC memory, as RuntimeResize builds a batch
    assert all(m.is_contiguous() for m in net(images).values())
