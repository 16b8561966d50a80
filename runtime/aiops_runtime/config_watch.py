"""Live reload of the drift settings from a JSON file (a mounted ConfigMap).

The file holds the camelCase keys of a ModelService's ``spec.drift`` (detector, pValueThreshold,
windowSize, checkEvery, consecutive). It is polled: reading a small file every second is cheap and,
unlike inotify on the file, survives Kubernetes' ConfigMap update, which swaps the ``..data``
symlink to a new directory instead of writing the file in place. Opening the path follows the
symlinks, so comparing the bytes read sees every swap.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from aiops_runtime.settings import DriftConfig

log = logging.getLogger("aiops_runtime.drift")


class Watcher:
    """Polls one file and reports each valid change; ``stop()`` ends the polling thread."""

    def __init__(
        self, path: Path, interval_s: float, on_change: Callable[[DriftConfig], None]
    ) -> None:
        """Remember what to watch; ``start()`` begins."""
        self.path = Path(path)
        self.interval_s = interval_s
        self.on_change = on_change
        self._last: bytes | None = None
        self._complained: bytes | None = None
        self._missing_logged = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drift-config-watch", daemon=True)

    def start(self) -> Watcher:
        """Apply the file as it is now, then poll it in a daemon thread."""
        self.poll()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and join the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 5)

    def poll(self) -> bool:
        """Read the file once; call ``on_change`` if its content changed and is valid."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            if not self._missing_logged:
                log.warning("drift config file unreadable, keeping the current settings: %s", exc)
                self._missing_logged = True
            return False
        self._missing_logged = False
        if data == self._last:
            return False
        try:
            config = DriftConfig.model_validate(json.loads(data))
        except (ValueError, ValidationError) as exc:
            if data != self._complained:
                # One error per bad content, not one per poll.
                log.error(
                    "drift config file %s is invalid, keeping the last good settings: %s",
                    self.path,
                    _short(exc),
                )
                self._complained = data
            return False
        self._last = data
        self._complained = None
        try:
            self.on_change(config)
        except Exception:  # the watcher must outlive a failing callback
            log.exception("applying the drift config file failed")
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()


def watch_config_file(
    path: Path, interval_s: float, on_change: Callable[[DriftConfig], None]
) -> Watcher:
    """Start watching ``path``: its current valid content is applied at once, then each change."""
    return Watcher(path, interval_s, on_change).start()


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
