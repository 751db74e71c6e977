"""``python -m eddy.cli`` = the ``eddy`` command."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())
