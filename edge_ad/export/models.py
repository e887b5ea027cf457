"""Model families: train with anomalib, then hand over an OpenVINO scoring graph.

Every family produces the same contract — an ``ov.Model`` taking one uint8 BGR NHWC frame and
returning ``pred_score [1]`` (raw, un-normalised) and ``anomaly_map`` — so the runtime does not
care which one made the bundle.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2
from tqdm import tqdm

from edge_ad.bundle import ModelSpec
from edge_ad.calibrate.coreset import kcenter_greedy
from edge_ad.datasets.layout import Category
from edge_ad.errors import ExportError, first_line
from edge_ad.export.recipe import ExportRecipe
from edge_ad.export.weights import load_backbone_weights, packaged_weights
from edge_ad.inference.patchcore_graph import MAP_OUTPUT, SCORE_OUTPUT, compose_patchcore, search_options
from edge_ad.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, embed_preprocessing, resize_frame

__all__ = ["EMBEDDING", "Trained", "train"]

logger = logging.getLogger(__name__)
EMBEDDING = "embedding"
BACKBONE_MARKERS = (".feature_extractor", ".teacher_model", ".student_model")


@dataclass
class Trained:
    """A fitted anomalib model and how to turn it into bundle files."""

    recipe: ExportRecipe
    module: nn.Module  # the anomalib Lightning module
    engine: object  # anomalib.engine.Engine (kept for Engine.predict comparisons)
    weights: Path
    params: dict = field(default_factory=dict)
    fit_seconds: float = 0.0

    @property
    def size(self) -> int:
        """Square input size."""
        return self.recipe.model.image_size

    def spec(self) -> ModelSpec:
        """Manifest description of the model."""
        m = self.recipe.model
        return ModelSpec(
            type=m.type,
            backbone=m.backbone,
            layers=m.resolved_layers(),
            weights=self.weights.name,
            params=self.params,
        )

    # Whether the recipe's int8.keep_fp32 (lite-backbone early layers, embedding pool) applies.
    honours_keep_fp32 = True

    @property
    def normalization(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(mean, std) on the 0..1 scale applied before the network."""
        return IMAGENET_MEAN, IMAGENET_STD

    def scoring_ir(self) -> ov.Model:
        """FP32 scoring model (uint8 frame in, raw score and map out)."""
        wrapper = _RawOutputs(self.module.model).eval()
        return _name_outputs(_convert(wrapper, self.size, *self.normalization))

    def head_ops(self, scoring: ov.Model) -> list[str]:
        """Ops that must stay FP32: everything that is not backbone (the anomaly head).

        The backbone is every op named after the anomalib feature-extractor modules plus all
        their ancestors (fused Conv+BN ops lose the module path in their names). The head's own
        Gaussian-blur convolution is thereby excluded from quantization too.
        """
        backbone: set[str] = set()
        for op in scoring.get_ordered_ops():
            if any(marker in op.get_friendly_name() for marker in BACKBONE_MARKERS):
                backbone |= _ancestors(op)
        return [op.get_friendly_name() for op in scoring.get_ordered_ops() if op.get_friendly_name() not in backbone]

    def fp32_types(self) -> list[str]:
        """Op types kept FP32 besides :meth:`head_ops`."""
        return []

    def write_extras(self, staging: Path, fp32: ov.Model, int8: ov.Model | None) -> None:
        """Extra bundle files (PatchCore: memory bank and feature IRs)."""


class _RawOutputs(nn.Module):
    """anomalib torch model in eval mode -> (pred_score, anomaly_map), no post-processing."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.inner(x)
        return out.pred_score.reshape(1), out.anomaly_map.reshape(1, *out.anomaly_map.shape[-2:])


def _convert(
    module: nn.Module,
    size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> ov.Model:
    example = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        model = ov.convert_model(module, example_input=example, input=[1, 3, size, size])
    return embed_preprocessing(model, mean, std)


def _name_outputs(model: ov.Model) -> ov.Model:
    model.output(0).get_tensor().set_names({SCORE_OUTPUT})
    model.output(1).get_tensor().set_names({MAP_OUTPUT})
    return model


class _Embedder(nn.Module):
    """PatchCore's patch-embedding path (backbone, 3x3 average pool, upsample + concat)."""

    def __init__(self, patchcore_model: nn.Module) -> None:
        super().__init__()
        self.inner = patchcore_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.inner.feature_extractor(x)
        features = {layer: self.inner.feature_pooler(f) for layer, f in features.items()}
        return self.inner.generate_embedding(features)


@dataclass
class TrainedPatchcore(Trained):
    """PatchCore: our nearest-neighbour head (OpenVINO ops) on anomalib's patch embeddings."""

    def memory_bank(self) -> np.ndarray:
        """The fitted coreset ``[M, D]`` (float32)."""
        return self.module.model.memory_bank.detach().cpu().float().numpy()

    def features_ir(self) -> ov.Model:
        """uint8 frame -> patch embeddings ``[1, D, h, w]``."""
        model = _convert(_Embedder(self.module.model).eval(), self.size)
        model.get_results()[0].input_value(0).get_tensor().set_names({EMBEDDING})
        return model

    def scoring_ir(self) -> ov.Model:
        """Feature IR + nearest-neighbour head against the memory bank."""
        bank = self.memory_bank()
        return compose_patchcore(self.features_ir(), bank, **search_options(self.params, bank.shape[0]))

    def head_ops(self, scoring: ov.Model) -> list[str]:
        """Every op downstream of the embedding (the kNN head)."""
        embedding = _find_output(scoring, EMBEDDING)
        backbone = _ancestors(embedding.get_node())
        return [op.get_friendly_name() for op in scoring.get_ordered_ops() if op.get_friendly_name() not in backbone]

    def write_extras(self, staging: Path, fp32: ov.Model, int8: ov.Model | None) -> None:
        """memory_bank.npy plus the feature IRs cut out of the scoring models."""
        np.save(staging / "memory_bank.npy", self.memory_bank())
        for name, model in (("features", fp32), ("features_int8", int8)):
            if model is not None:
                embedding = _find_output(model, EMBEDDING)
                sub = ov.Model([embedding], model.get_parameters(), "patchcore_features")
                ov.save_model(sub, staging / f"{name}.xml", compress_to_fp16=False)


@dataclass
class TrainedEfficientAd(Trained):
    """EfficientAD: teacher, student and autoencoder are quantizable; map arithmetic stays FP32."""

    honours_keep_fp32 = False  # no lite backbone; PDN convolutions all run at high resolution, INT8 is the gain

    @property
    def normalization(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """EfficientAD normalises inside its forward pass; the frame only goes to 0..1."""
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def head_ops(self, scoring: ov.Model) -> list[str]:
        """Everything that is not inside the three networks."""
        nets: set[str] = set()
        for op in scoring.get_ordered_ops():
            name = op.get_friendly_name()
            if op.get_type_name() == "Convolution" and any(f".{n}." in name for n in ("teacher", "student", "ae")):
                nets |= _ancestors(op)
        return [op.get_friendly_name() for op in scoring.get_ordered_ops() if op.get_friendly_name() not in nets]


def _find_output(model: ov.Model, name: str) -> ov.Output:
    for op in model.get_ordered_ops():
        for out in op.outputs():
            if name in out.get_names():
                return out
    raise ValueError(f"no tensor named {name!r} in the model")


def _ancestors(node: ov.Node) -> set[str]:
    seen: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get_friendly_name() in seen:
            continue
        seen.add(current.get_friendly_name())
        stack.extend(inp.get_source_output().get_node() for inp in current.inputs())
    return seen


def patchcore_class(coreset: str):
    from anomalib.models import Patchcore

    class TimedPatchcore(Patchcore):
        """anomalib PatchCore whose coreset comes from :func:`kcenter_greedy` (unless ``coreset`` is "anomalib")."""

        seed = 0
        coreset_seconds = 0.0

        def fit(self) -> None:
            started = time.perf_counter()
            if coreset == "anomalib":
                super().fit()
            else:
                bank = torch.vstack(self.model.embedding_store)
                self.model.embedding_store.clear()
                n = max(1, int(bank.shape[0] * self.coreset_sampling_ratio))
                with tqdm(total=n, desc="coreset", unit="rows", leave=False) as bar:
                    idx = kcenter_greedy(
                        bank.numpy(), n, seed=self.seed, progress=bar.update, exact=coreset == "greedy"
                    )
                self.model.memory_bank = bank[torch.from_numpy(idx)]
            self.coreset_seconds = time.perf_counter() - started

    return TimedPatchcore


def _efficientad_class():
    from anomalib.models import EfficientAd
    from torch.utils.data import DataLoader, Dataset

    class _Photos(Dataset):
        def __init__(self, paths: list[Path], transform) -> None:
            self.paths, self.transform = paths, transform

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int):
            from PIL import Image

            with Image.open(self.paths[i]) as image:
                return self.transform(image.convert("RGB")), 0

    class OfflineEfficientAd(EfficientAd):
        """anomalib EfficientAD with our distilled teacher and a local penalty set (no downloads).

        Below 256 px the autoencoder's last encoder convolution shrinks with the input
        (kernel = size / 32; 8 at 256 px, as in the paper) so any multiple of 32 from 128 works.
        """

        teacher_state: dict
        penalty: list[Path]
        seed = 0
        image_size: int  # the model input; the datamodule's raw images may differ, so anomalib's hint is ignored

        def prepare_pretrained_model(self) -> None:
            self.model.teacher.load_state_dict(self.teacher_state)

        def _as_model_input(self, dataloader):
            """The statistics loops of anomalib read the dataloader raw; give them the pre-processed images."""
            for batch in dataloader:
                batch.image = self.pre_processor.transform(batch.image)
                yield batch

        def teacher_channel_mean_std(self, dataloader):
            return super().teacher_channel_mean_std(self._as_model_input(dataloader))

        def map_norm_quantiles(self, dataloader):
            return super().map_norm_quantiles(self._as_model_input(dataloader))

        def prepare_imagenette_data(self, image_size) -> None:
            from torchvision.transforms.v2 import CenterCrop, Compose, RandomGrayscale, Resize, ToTensor

            h = w = self.image_size
            self.data_transforms_imagenet = Compose(
                [Resize((h * 2, w * 2)), RandomGrayscale(p=0.3), CenterCrop((h, w)), ToTensor()]
            )
            generator = torch.Generator().manual_seed(self.seed)
            self.imagenet_loader = DataLoader(
                _Photos(self.penalty, self.data_transforms_imagenet), batch_size=1, shuffle=True, generator=generator
            )
            self.imagenet_iterator = iter(self.imagenet_loader)

    return OfflineEfficientAd


def _efficientad(recipe: ExportRecipe) -> nn.Module:
    from edge_ad.export.teacher import cached_teacher, load_teacher, penalty_images

    m = recipe.model
    teacher = m.teacher or cached_teacher(m.efficientad_size)
    state, channels = load_teacher(teacher, m.efficientad_size)
    module = _efficientad_class()(
        teacher_out_channels=channels,
        model_size=m.efficientad_size,
        lr=m.learning_rate,
        pre_processor=_pre_processor(recipe, normalize=False),
        visualizer=False,
    )
    module.teacher_state, module.penalty, module.seed = state, penalty_images(m.penalty_dir), recipe.seed
    module.image_size = m.image_size
    kernel = m.image_size // 32
    module.model.ae.encoder.enconv6 = nn.Conv2d(64, 64, kernel_size=kernel, stride=1, padding=0)
    return module


def datamodule(category: Category, recipe: ExportRecipe):
    from anomalib.data import Folder

    kinds = category.defect_kinds
    has_masks = all((category.root / "ground_truth" / k).is_dir() for k in kinds)
    return Folder(
        name=category.name,
        root=category.root,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir=[f"test/{k}" for k in kinds],
        mask_dir=[f"ground_truth/{k}" for k in kinds] if has_masks else None,
        train_batch_size=1 if recipe.model.type == "efficientad" else recipe.model.batch_size,
        eval_batch_size=recipe.model.batch_size,
        num_workers=0,
        val_split_mode="same_as_test",
        seed=recipe.seed,
    )


def _pre_processor(recipe: ExportRecipe, normalize: bool = True):
    """Anomalib pre-processor doing what the runtime does: ROI crop, resize, ImageNet normalisation."""
    from anomalib.pre_processing import PreProcessor

    steps = [] if recipe.roi is None else [_RoiCrop(recipe.roi)]
    steps.append(_RuntimeResize(recipe.model.image_size))
    if normalize:
        steps.append(v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)))
    return PreProcessor(transform=v2.Compose(steps))


class _RoiCrop(v2.Transform):
    """Crop x, y, width, height (pixels of the original frame), images and masks alike."""

    def __init__(self, roi: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.roi = roi

    def transform(self, inpt, params):
        x, y, w, h = self.roi
        return v2.functional.crop(inpt, y, x, h, w)

    _transform = transform  # older torchvision name


class _RuntimeResize(v2.Transform):
    """Resize images exactly as the device does (:func:`resize_frame` on uint8); masks nearest.

    Training and evaluation thus see the pixels the station will see: OpenCV's area filter when
    shrinking, bilinear when enlarging, rounded to uint8 in between (the source images are uint8).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def transform(self, inpt, params):
        size = [self.size, self.size]
        if isinstance(inpt, tv_tensors.Mask):
            return v2.functional.resize(inpt, size, interpolation=v2.InterpolationMode.NEAREST)
        if tuple(inpt.shape[-2:]) == (self.size, self.size):
            return inpt
        flat = inpt.reshape(-1, *inpt.shape[-3:])
        pixels = (flat.permute(0, 2, 3, 1).detach().cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        out = np.stack([resize_frame(p, self.size, self.size).reshape(self.size, self.size, -1) for p in pixels])
        tensor = torch.from_numpy(out.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        tensor = tensor.reshape(*inpt.shape[:-2], self.size, self.size).to(inpt.device)
        return tv_tensors.wrap(tensor, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else tensor

    _transform = transform  # older torchvision name


def _module(recipe: ExportRecipe) -> nn.Module:
    from anomalib.models import Padim, Stfpm

    m = recipe.model
    layers = m.resolved_layers()
    if m.type == "efficientad":
        return _efficientad(recipe)
    if m.type == "patchcore":
        module = patchcore_class(m.coreset)(
            backbone=m.backbone,
            layers=layers,
            pre_trained=False,
            coreset_sampling_ratio=m.coreset_ratio,
            num_neighbors=m.num_neighbors,
            pre_processor=_pre_processor(recipe),
            visualizer=False,
        )
        module.seed = recipe.seed
        return module
    if m.type == "padim":
        return Padim(
            backbone=m.backbone,
            layers=layers,
            pre_trained=False,
            n_features=m.n_features,
            pre_processor=_pre_processor(recipe),
            visualizer=False,
        )
    with _offline_stfpm_teacher():
        return Stfpm(
            backbone=m.backbone,
            layers=layers,
            pre_processor=_pre_processor(recipe),
            visualizer=False,
        )


@contextlib.contextmanager
def _offline_stfpm_teacher() -> Iterator[None]:
    """Anomalib's STFPM always builds its teacher with ``pre_trained=True`` (a hub download).

    Build it without weights instead; :func:`train` then loads the local ImageNet weights.
    """
    from anomalib.models.image.stfpm import torch_model

    original = torch_model.TimmFeatureExtractor
    torch_model.TimmFeatureExtractor = lambda *args, **kwargs: original(*args, **{**kwargs, "pre_trained": False})
    try:
        yield
    finally:
        torch_model.TimmFeatureExtractor = original


def feature_extractor(module: nn.Module) -> nn.Module:
    inner = module.model
    if hasattr(inner, "teacher_model"):  # STFPM: only the teacher is pretrained
        return inner.teacher_model.feature_extractor
    return inner.feature_extractor.feature_extractor


def check_layers(backbone: str, layers: list[str]) -> None:
    """Fail early, in one line, on a backbone timm does not know or a layer it cannot tap.

    anomalib only warns about such a layer and then fails deep inside training with a KeyError.
    """
    import timm

    try:
        model = timm.create_model(backbone, pretrained=False, features_only=True, exportable=True)
    except RuntimeError as exc:
        hint = "use a timm model name such as tf_efficientnet_lite0"
        raise ExportError(f"model.backbone: {first_line(exc)}; {hint}") from None
    available = [info["module"] for info in model.feature_info.info]
    unknown = [layer for layer in layers if layer not in available]
    if unknown:
        raise ExportError(
            f"model.layers: {', '.join(unknown)} not a feature layer of {backbone}; choose from {', '.join(available)}"
        )


def train(category: Category, recipe: ExportRecipe, workdir: Path) -> Trained:
    """Fit the recipe's model on the category's good training images, offline.

    The backbone's ImageNet weights come from ``recipe.model.weights`` or the installed weights
    package; anomalib is never allowed to download anything.
    """
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    kind = recipe.model.type
    if recipe.model.image_size is None:
        raise ValueError("train() needs model.image_size; export_bundle chooses it when the recipe does not")
    if kind != "efficientad":  # before seeding: building timm's model draws from the RNG
        check_layers(recipe.model.backbone, recipe.model.resolved_layers())
    seed_everything(recipe.seed, workers=True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    weights = recipe.model.weights or packaged_weights(recipe.model.backbone)
    module = _module(recipe)
    if kind != "efficientad":  # EfficientAD's teacher was distilled from these weights already
        loaded = load_backbone_weights(feature_extractor(module), weights)
        logger.info("backbone %s: %d tensors from %s", recipe.model.backbone, loaded, weights)
    epochs = kind in ("stfpm", "efficientad")  # the families trained for several epochs
    extra = {"max_epochs": recipe.model.epochs} if epochs else {}
    engine = Engine(
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=workdir,
        enable_progress_bar=epochs,
        enable_model_summary=False,
        **extra,
    )
    started = time.perf_counter()
    engine.fit(model=module, datamodule=datamodule(category, recipe))
    fit_seconds = time.perf_counter() - started
    cls = {"patchcore": TrainedPatchcore, "efficientad": TrainedEfficientAd}.get(kind, Trained)
    params: dict = {"image_size": recipe.model.image_size, "seed": recipe.seed}
    if kind == "patchcore":
        bank = module.model.memory_bank
        params.update(
            coreset=recipe.model.coreset,
            coreset_ratio=recipe.model.coreset_ratio,
            num_neighbors=recipe.model.num_neighbors,
            **(
                {"coarse_fraction": recipe.model.coarse_fraction, "exact_patches": recipe.model.exact_patches}
                if recipe.model.coarse_fraction
                else {}
            ),
            coreset_seconds=round(module.coreset_seconds, 3),
            memory_bank_rows=int(bank.shape[0]),
            feature_dim=int(bank.shape[1]),
        )
    elif kind == "stfpm":
        params.update(epochs=recipe.model.epochs)
    elif kind == "efficientad":
        params.update(
            epochs=recipe.model.epochs,
            size=recipe.model.efficientad_size,
            learning_rate=recipe.model.learning_rate,
            teacher_channels=int(module.model.teacher_out_channels),
            penalty_images=len(module.penalty),
        )
    return cls(
        recipe=recipe,
        module=module,
        engine=engine,
        weights=Path(weights),
        params=params,
        fit_seconds=fit_seconds,
    )
