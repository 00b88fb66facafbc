"""The one shape of an id that bulk puts into a URL or a header.

Here rather than in the plan because configuration checks the network id
with it too, and `_core` imports no stage.
"""

from __future__ import annotations

import re

__all__ = ["UUID_PATTERN"]

# Canonical (lower-case) UUID.
UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
