"""Suite-wide settings only; layer-specific fixtures live next to their tests."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# No deadlines: tests assert behaviour, never timing (the machine may be busy building or serving).
settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    max_examples=200,
    derandomize=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))
