"""The progress bar of a run: tqdm when installed, else a plain one."""

from __future__ import annotations

import time


class _SimpleBar:
    def __init__(self, total, file):
        self.total, self.n, self.file, self.desc = total, 0, file, ""
        self.t0 = time.perf_counter()

    def set_description(self, desc):
        self.desc = desc
        self._draw()

    def update(self, k=1):
        self.n += k
        self._draw()

    def _draw(self):
        width = 30
        done = int(width * self.n / max(1, self.total))
        el = time.perf_counter() - self.t0
        self.file.write(f"\r[{'#' * done}{'.' * (width - done)}] {self.n}/{self.total} "
                        f"{el:5.1f}s {self.desc[:40]:<40}")
        self.file.flush()

    def close(self):
        self.file.write("\r" + " " * 100 + "\r")
        self.file.flush()


class _NoBar:
    def set_description(self, desc):
        pass

    def update(self, k=1):
        pass

    def close(self):
        pass


def _progress(total, enabled, file):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm

        return tqdm(total=total, file=file, leave=False, unit="run", dynamic_ncols=True)
    except Exception:  # noqa: BLE001 - tqdm not installed
        return _SimpleBar(total, file)
