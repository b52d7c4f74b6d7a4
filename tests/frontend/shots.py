"""Where the browser tests save their screenshots of the tabs.

With ``LISA_SCREENSHOTS=1`` they go to docs/screenshots (the pictures in the README: refresh them that way);
otherwise to a temporary folder, so that a test run leaves the working tree as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests.support import ROOT

DOCS = ROOT / "docs" / "screenshots"
SCRATCH = Path(tempfile.gettempdir()) / "lisa-test-screenshots"


def screenshot_path(name: str) -> str:
    folder = DOCS if os.environ.get("LISA_SCREENSHOTS") == "1" else SCRATCH
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / name)
