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


def _open_fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass        # the fd listdir itself used, closed by now
    return out


def pytest_sessionstart(session: object) -> None:
    session.config._rs3gw_fds = _open_fds()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """Resource balance: every ring, eventfd, buffer mapping and data file a test opened in this
    process is closed by the end of the run. Leaks show here with what they point at. Sockets are
    left out: the integration clients keep pooled keep-alive connections until exit, by design."""
    before = session.config._rs3gw_fds  # type: ignore[attr-defined]
    leaked = {fd: target for fd, target in _open_fds().items()
              if fd not in before and not target.startswith(("pipe:", "/dev/pts", "/dev/null", "socket:"))}
    if leaked and exitstatus == 0:
        import pytest
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # type: ignore[attr-defined]
        print(f"\nrs3gw resource balance: {len(leaked)} file descriptor(s) left open by the run: "
              + ", ".join(f"{fd}->{t}" for fd, t in sorted(leaked.items())[:20]))
