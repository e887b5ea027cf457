"""edge_ad: unsupervised visual anomaly detection for inspection stations.

The runtime (config, capture, inference, bundle, publish, service, calibrate) needs only
OpenVINO, OpenCV, numpy, paho-mqtt, PyYAML and pydantic. Training and quantization live in
``edge_ad.export`` and are imported lazily by the CLI.
"""

__version__ = "0.1.0"
