"""Exported bundles in tests: anomalib's own scores for agreement, and the daemon run on a bundle over MQTT."""

from __future__ import annotations

import shutil
from pathlib import Path

import jsonschema
import numpy as np

from edge_ad.datasets.layout import list_images
from edge_ad.publish import load_schema
from tests.support.broker import Broker, Recorder
from tests.support.station import edge_ad, station_config

__all__ = ["anomalib_predict", "judge_replay", "negated_score", "replay_folder"]


def anomalib_predict(result) -> tuple[np.ndarray, np.ndarray]:
    """Image scores and labels from anomalib's own Lightning model via Engine.predict, in test-split order."""
    from anomalib.data import PredictDataset
    from torch.utils.data import DataLoader

    trained = result.trained
    scores = {}
    for path in result.test_paths:
        dataset = PredictDataset(path=path, image_size=None)
        loader = DataLoader(dataset, collate_fn=dataset.collate_fn)
        for batch in trained.engine.predict(model=trained.module, dataloaders=loader):
            scores[path] = (float(batch.pred_score.reshape(-1)[0]), bool(batch.pred_label.reshape(-1)[0]))
    paths = result.test_paths
    return np.array([scores[p][0] for p in paths]), np.array([scores[p][1] for p in paths])


def replay_folder(tmp_path: Path, category: str = "brick") -> tuple[Path, dict[str, int]]:
    """10 good + 12 defect frames never seen by the export (another seed), labelled by name (1 = defect)."""
    from edge_ad.datasets.synthetic import DatasetSpec, make_dataset

    fresh = make_dataset(tmp_path / "fresh", [category], DatasetSpec(train=0, test_good=10, test_defect=4, seed=1))[0]
    folder = tmp_path / "replay"
    folder.mkdir()
    labels = {}
    for kind_dir in sorted((fresh / "test").iterdir()):
        for image in list_images(kind_dir):
            name = f"{kind_dir.name}_{image.name}"
            shutil.copy(image, folder / name)
            labels[name] = 0 if kind_dir.name == "good" else 1
    return folder, labels


def judge_replay(bundle: Path, broker: Broker, tmp_path: Path, station: str, **model: object) -> tuple[list, dict]:
    """``edge-ad run`` on the bundle's models root over a fresh replay folder, read back over MQTT.

    Returns:
        (every verdict in arrival order, each checked against the verdict schema; the frames' labels).
    """
    folder, labels = replay_folder(tmp_path)
    config = station_config(tmp_path, str(folder), bundle.parent, broker.port, model=model, station=station)
    with Recorder(broker, topic=f"edge_ad/{station}/#") as rec:
        proc = edge_ad("run", "--config", str(config))
        assert proc.returncode == 0, proc.stderr
        rec.wait_for(lambda r: any(s["state"] == "offline" for s in r.on("status")))
    verdicts = rec.on("verdict")
    schema = load_schema("verdict")
    for v in verdicts:
        jsonschema.validate(v, schema)
    return verdicts, labels


def negated_score(model):
    """An NNCF model with its score negated: an INT8 variant the gate must refuse (still quantized).

    Whether real quantization wrecks a model depends on the CPU the export runs on (AVX2 without VNNI
    saturates u8 x s8 products; VNNI/AMX do not), so a refused INT8 is made deterministic this way.
    """
    import openvino.opset15 as ops

    from edge_ad.inference.patchcore_graph import SCORE_OUTPUT

    for result in model.get_results():
        source = result.input_value(0)
        if SCORE_OUTPUT in source.get_names():
            negated = ops.negative(source)
            source.get_tensor().set_names(set())
            negated.output(0).get_tensor().set_names({SCORE_OUTPUT})
            result.input(0).replace_source_output(negated.output(0))
    model.validate_nodes_and_infer_types()
    return model
