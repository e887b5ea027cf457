"""Frame capture: OpenCV devices/streams/files and image-folder replay."""

from edge_ad.capture.sources import FolderSource, FrameSource, OpenCVSource, open_source

__all__ = ["FolderSource", "FrameSource", "OpenCVSource", "open_source"]
