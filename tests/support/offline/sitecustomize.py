"""Put this directory on PYTHONPATH to run a Python process with non-loopback networking blocked.

Every blocked attempt is appended to the file named by $EDGE_AD_BLOCKED_LOG.
"""

import atexit
import os
import sys

sys.path.insert(0, os.environ["EDGE_AD_REPO"])
from tests.support.net import block_network

_guard = block_network()
_attempts = _guard.__enter__()


@atexit.register
def _report() -> None:
    with open(os.environ["EDGE_AD_BLOCKED_LOG"], "a") as fh:
        fh.writelines(f"{a!r}\n" for a in _attempts)
