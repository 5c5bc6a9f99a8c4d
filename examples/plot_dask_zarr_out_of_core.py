"""
Dropout on a zarr array four times larger than the worker's memory (Dask)
=========================================================================

:func:`fastdrop.dask.dropout` maps over the chunks of a Dask array; each chunk
computes its own part of the one global mask from its position (docs/spec.md
§2), so the array never has to be in memory at once and the result equals
:func:`fastdrop.dropout` on the whole array, whatever the chunking.

Here a Dask ``LocalCluster`` has one worker process limited to 256 MiB
(``memory_limit``: its nanny pauses the worker at 80% of it and kills it at
95%).  A 1 GiB float32 array is written to a zarr store on disk, dropped out
chunk by chunk into a second zarr store, and checked.  To show that the
worker really stayed within its limit, the example

- samples the worker process's resident memory (RSS, with ``psutil``) every
  20 ms from the client, and plots it;
- reads the kernel's own record of the worker's peak RSS (``VmHWM`` in
  ``/proc/self/status``, Linux), which misses no spike between samples;
- checks that the worker process is the same one at the end (a worker
  killed for memory would have been restarted with a new process id).

The worker may log "Unmanaged memory use is high": Dask's warning when most
of a worker's memory is not data it manages itself, here the chunks in
flight between the two zarr stores.

A script that starts a ``LocalCluster`` with worker processes must guard its
main code with ``if __name__ == "__main__":`` (the workers are started by
``multiprocessing``'s spawn method, which imports the main module again), so
the steps are functions, run at the end.  About 15 seconds on 2 CPU cores,
most of it spent writing 2 GiB to disk.
"""

# %%
# Settings
# --------
import os
import tempfile
import threading
import time

import dask.array as da
import numpy as np
import psutil
import zarr
from dask.distributed import Client, LocalCluster

import fastdrop
import fastdrop.dask

MiB = 2**20
MEMORY_LIMIT = 256 * MiB                 # the worker's memory limit
COLS = 4096
ROWS = 4 * MEMORY_LIMIT // (4 * COLS)    # float32: 4x the memory limit in all
CHUNK_ROWS = 512                         # 8 MiB chunks
P, SEED = 0.3, 7


# %%
# Watching the worker's memory
# ----------------------------
class RssSampler:
    """Samples a process's resident set size in a background thread."""

    def __init__(self, pid, interval=0.02):
        self.proc, self.interval = psutil.Process(pid), interval
        self.t, self.rss, self._stop = [], [], threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.t.append(time.perf_counter() - self._t0)
            self.rss.append(self.proc.memory_info().rss)
            time.sleep(self.interval)

    def now(self):
        return time.perf_counter() - self._t0

    def stop(self):
        self._stop.set()
        self._thread.join()


def peak_rss():
    """Run on the worker: the kernel's high-water mark of its RSS, in bytes.

    ``VmHWM`` belongs to the process's current memory image.  (``ru_maxrss``
    of :func:`resource.getrusage` would not do: it survives ``exec``, so a
    spawned worker can report the size of the process that started it.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024          # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status")


# %%
# The steps: write the input, drop out, verify
# --------------------------------------------
def make_input(path):
    """A ROWS x COLS float32 zarr array of normal variates, written chunk by
    chunk by this (client) process: the worker meets it only on disk.
    Uncompressed, since random floats do not compress."""
    z = zarr.create_array(store=path, shape=(ROWS, COLS), chunks=(CHUNK_ROWS, COLS),
                          dtype="float32", compressors=None)
    rng = np.random.default_rng(0)
    for r in range(0, ROWS, CHUNK_ROWS):
        z[r:r + CHUNK_ROWS] = rng.standard_normal((CHUNK_ROWS, COLS), dtype=np.float32)


def drop_out(src, dst):
    """Lazy: read src, fastdrop.dask.dropout, write dst; then compute.

    ``store`` writes each Dask chunk into its region of the zarr array (the
    chunks are aligned, so no lock is needed).  ``y.to_zarr(z)`` would first
    rechunk to Dask's "auto" chunk size, 128 MiB by default: half of this
    worker's memory per chunk."""
    x = da.from_zarr(src)
    y = fastdrop.dask.dropout(x, P, rng=SEED)          # the mask of the whole array
    z = zarr.create_array(store=dst, shape=x.shape, chunks=(CHUNK_ROWS, COLS),
                          dtype="float32", compressors=None)
    da.store(y, z, lock=False)


def verify(src, dst, rows):
    """For a few row blocks: the stored result equals fastdrop.dropout of the
    block with a Generator at the block's first stream position (row * COLS),
    i.e. the corresponding part of fastdrop.dropout(whole array, rng=SEED)."""
    zin, zout = zarr.open_array(src, mode="r"), zarr.open_array(dst, mode="r")
    dropped = checked = 0
    for r in rows:
        block = zin[r:r + CHUNK_ROWS]
        start = fastdrop.Generator(SEED, offset=r * COLS)   # row r's first position
        expect = fastdrop.dropout(block, P, rng=start)
        got = zout[r:r + CHUNK_ROWS]
        assert np.array_equal(got.view(np.uint32), expect.view(np.uint32)), r
        dropped += int((got == 0).sum())
        checked += got.size
    return dropped / checked


def run(workdir):
    src, dst = os.path.join(workdir, "x.zarr"), os.path.join(workdir, "y.zarr")
    with LocalCluster(n_workers=1, threads_per_worker=2, memory_limit=MEMORY_LIMIT,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        (pid,) = client.run(os.getpid).values()
        sampler = RssSampler(pid)
        t0 = sampler.now()
        make_input(src)
        t1 = sampler.now()
        drop_out(src, dst)
        t2 = sampler.now()
        sampler.stop()
        (peak,) = client.run(peak_rss).values()
        (pid_after,) = client.run(os.getpid).values()
    rows = [0, (ROWS // 2 // CHUNK_ROWS) * CHUNK_ROWS, ROWS - CHUNK_ROWS]
    frac = verify(src, dst, rows)
    return dict(pid=pid, pid_after=pid_after, peak=peak, t=np.array(sampler.t),
                rss=np.array(sampler.rss), phases=(t0, t1, t2), dropped=frac,
                rows=rows)


# %%
# Run it
# ------
if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="fastdrop-zarr-") as workdir:
        res = run(workdir)
    nbytes = ROWS * COLS * 4
    print(f"array: {ROWS} x {COLS} float32 = {nbytes / MiB:.0f} MiB on disk, "
          f"{nbytes / MEMORY_LIMIT:.1f}x the worker's memory limit "
          f"({MEMORY_LIMIT / MiB:.0f} MiB)")
    print(f"chunks: {CHUNK_ROWS} rows = {CHUNK_ROWS * COLS * 4 / MiB:.0f} MiB")
    t0, t1, t2 = res["phases"]
    print(f"write input {t1 - t0:.1f} s, dropout {t2 - t1:.1f} s")
    print(f"worker peak RSS: {res['peak'] / MiB:.0f} MiB (VmHWM), "
          f"{res['rss'].max() / MiB:.0f} MiB (highest of {res['rss'].size} samples)")
    print(f"same worker process throughout: {res['pid'] == res['pid_after']}")
    print(f"row blocks {res['rows']} equal fastdrop.dropout bit for bit")
    print(f"dropped fraction there {res['dropped']:.4f} (p = {P})")
    assert res["peak"] < MEMORY_LIMIT, res["peak"]
    assert res["pid"] == res["pid_after"], (res["pid"], res["pid_after"])

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    ax.axvspan(t0, t1, color="0.92", lw=0, label="the client writes the input")
    ax.axvspan(t1, t2, color="tab:blue", alpha=0.12, lw=0,
               label="fastdrop.dask.dropout, zarr to zarr")
    ax.plot(res["t"], res["rss"] / MiB, color="tab:blue", lw=1.2,
            label="worker RSS (sampled every 20 ms)")
    ax.axhline(res["peak"] / MiB, color="tab:blue", ls=":", lw=1,
               label=f"worker peak RSS (VmHWM): {res['peak'] / MiB:.0f} MiB")
    ax.axhline(MEMORY_LIMIT / MiB, color="tab:red", lw=1.5,
               label=f"memory_limit: {MEMORY_LIMIT / MiB:.0f} MiB")
    ax.axhline(0.8 * MEMORY_LIMIT / MiB, color="tab:red", ls=":", lw=1,
               label="80%: the worker pauses")
    ax.axhline(0.95 * MEMORY_LIMIT / MiB, color="tab:red", ls="--", lw=1,
               label="95%: the nanny kills the worker")
    ax.set_ylim(0, MEMORY_LIMIT / MiB * 1.15)
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_title(f"one Dask worker, {nbytes / MiB:.0f} MiB array "
                 f"({nbytes / MEMORY_LIMIT:.0f}x its memory limit)")
    ax.legend(loc="lower right", fontsize=8)
    plt.show()
