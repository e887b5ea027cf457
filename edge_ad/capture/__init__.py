"""Frame capture: OpenCV devices/streams/files and image-folder replay."""

from edge_ad.capture.sources import FolderSource, FrameSource, OpenCVSource, open_source
from edge_ad.capture.supervisor import CaptureSupervisor, EndOfSource

__all__ = ["CaptureSupervisor", "EndOfSource", "FolderSource", "FrameSource", "OpenCVSource", "open_source"]
