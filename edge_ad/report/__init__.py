"""HTML reports a quality engineer signs: the export's evaluation and each recalibration.

Jinja2 templates (autoescaped) share one base; images are embedded, so every report is a single
offline file. Runtime-safe: no matplotlib or torch (the station renders recalibration reports).
"""

from edge_ad.report.histogram import Histogram, histogram
from edge_ad.report.render import data_uri, render_html

__all__ = ["Histogram", "data_uri", "histogram", "render_html"]
