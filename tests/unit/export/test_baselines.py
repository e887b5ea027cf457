"""The three baseline nets (pixel AE, DFR feature AE, global kNN) as plain torch modules: shapes and definitions."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("anomalib")

from torch import nn  # noqa: E402

from edge_ad.errors import ExportError  # noqa: E402
from edge_ad.export.families.baseline_nets import (  # noqa: E402
    FeatureAutoencoder,
    GlobalKnn,
    PixelAutoencoder,
    lightning_classes,
    pairwise_distances,
    pixel_error,
)

pytestmark = pytest.mark.export

BACKBONE = "tf_efficientnet_lite0"
DFR_LAYERS = ["blocks.1", "blocks.2", "blocks.3"]


class _Zeros(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def fitted_knn(images: torch.Tensor, k: int = 1, normalize: bool = True) -> GlobalKnn:
    knn = GlobalKnn(BACKBONE, "blocks.6", k, normalize).train()
    knn.store(images[:2])
    knn.store(images[2:])
    knn.fit()
    return knn.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("size", [128, 192])
def test_every_net_scores_each_image_and_maps_it_at_input_size(size):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    nets = [
        PixelAutoencoder(),
        FeatureAutoencoder(BACKBONE, DFR_LAYERS, size),
        fitted_knn(torch.rand(4, 3, size, size)),
    ]
    for net in nets:
        with torch.no_grad():
            out = net.eval()(x)
        assert out.pred_score.shape == (2,), type(net).__name__
        assert out.anomaly_map.shape == (2, 1, size, size), type(net).__name__
        assert torch.isfinite(out.anomaly_map).all() and (out.anomaly_map >= 0).all()
    assert PixelAutoencoder().reconstruct(torch.rand(1, 3, 100, 100)).shape == (1, 3, 100, 100)  # not a multiple of 8


def test_pixel_map_is_the_per_pixel_mse_over_channels_and_the_score_its_mean(monkeypatch):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    known = torch.full_like(x, 0.25)
    ae = PixelAutoencoder().eval()
    monkeypatch.setattr(ae, "reconstruct", lambda images: known)
    out = ae(x)
    expected = ((x - 0.25) ** 2).mean(dim=1, keepdim=True)
    torch.testing.assert_close(out.anomaly_map, expected)
    torch.testing.assert_close(out.pred_score, expected.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(pixel_error(x, x), torch.zeros(2, 1, 32, 32))
    # one pixel off by 0.3 in one channel: its map value is 0.09 / 3 channels, every other pixel 0
    y = x.clone()
    y[0, 1, 5, 7] += 0.3
    error = pixel_error(y, x)
    assert error[0, 0, 5, 7].item() == pytest.approx(0.03, rel=1e-4) and error.sum().item() == pytest.approx(0.03)


def test_feature_ae_grid_is_the_finest_layer_and_its_map_the_summed_squared_feature_error():
    net = FeatureAutoencoder(BACKBONE, DFR_LAYERS, 128).eval()
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    embedding = net.embed(x)
    assert embedding.shape == (1, 24 + 40 + 80, 32, 32)  # blocks.1 is stride 4
    net.ae = _Zeros()  # reconstruction 0: the error is the features' own squared norm
    out = net(x)
    error = embedding.pow(2).sum(dim=1, keepdim=True)
    upsampled = nn.functional.interpolate(error, size=(128, 128), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.anomaly_map, upsampled)
    torch.testing.assert_close(out.pred_score, upsampled.amax(dim=(1, 2, 3)))
    net.ae = nn.Identity()  # perfect reconstruction: nothing is anomalous
    assert net(x).anomaly_map.abs().max().item() == 0.0


def test_the_backbone_stays_frozen_and_only_the_autoencoder_trains():
    net = FeatureAutoencoder(BACKBONE, DFR_LAYERS, 128).train()
    for module in net.modules():  # as Lightning may leave them: every submodule in training mode
        module.training = True
    assert not any(p.requires_grad for p in net.backbone.parameters())
    gradient, _ = lightning_classes()
    module = gradient(net, False, 1e-3)
    (optimizer,) = [module.configure_optimizers()]
    trained = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert trained == sum(p.numel() for p in net.ae.parameters())
    running = net.backbone.feature_extractor.bn1.running_mean.clone()
    net.loss(torch.rand(2, 3, 128, 128)).backward()
    torch.testing.assert_close(net.backbone.feature_extractor.bn1.running_mean, running)  # ImageNet statistics kept
    assert not net.backbone.training and net.ae.training


def test_a_layer_that_is_no_block_is_refused_in_one_line():
    with pytest.raises(ExportError, match=r"blocks\.9"):
        FeatureAutoencoder(BACKBONE, ["blocks.1", "blocks.9"], 128)


def test_knn_distance_is_the_mean_over_the_k_nearest_good_vectors():
    knn = GlobalKnn(BACKBONE, "blocks.6", k=2, normalize=False)
    knn.memory = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    query = torch.tensor([[0.0, 1.0], [6.0, 8.0]])
    # by hand: (0,1) is 1 from (0,0) and sqrt(9 + 9) from (3,4); (6,8) is 0 from itself and 5 from (3,4)
    torch.testing.assert_close(knn.score(query), torch.tensor([(1 + math.sqrt(18)) / 2, 2.5]))
    knn.k = 1
    torch.testing.assert_close(knn.score(query), torch.tensor([1.0, 0.0]))
    knn.k = 10  # more neighbours than memory: all of it
    torch.testing.assert_close(knn.score(query[1:]), torch.tensor([(0 + 5 + 10) / 3]))
    torch.testing.assert_close(pairwise_distances(query, knn.memory), torch.cdist(query, knn.memory))


def test_knn_memory_holds_one_unit_vector_per_good_image_and_scores_them_zero(images):
    knn = fitted_knn(images)
    assert knn.memory.shape == (3, 320)
    torch.testing.assert_close(knn.memory.norm(dim=1), torch.ones(3))
    with torch.no_grad():
        out = knn(images)
        manual = knn.backbone(images)["blocks.6"].mean(dim=(2, 3))
    torch.testing.assert_close(out.pred_score, torch.zeros(3), atol=2e-3, rtol=0)  # each is its own neighbour
    torch.testing.assert_close(knn.memory, nn.functional.normalize(manual, dim=1))
    assert fitted_knn(images, normalize=False).memory.norm(dim=1).min() > 1.5  # raw pooled activations
