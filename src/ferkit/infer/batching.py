"""Shared forward passes for concurrent requests: a short queue that collects face crops.

The service decodes and detects in its request threads (in parallel), then hands each request's
face crops to one `CropBatcher`. Its worker takes what is queued, waits up to `wait_s` for more
(up to `max_crops`), runs the classifier once on all of them, and hands each request its rows.
One forward pass of 64 faces costs about as much as a few passes of one face on a CPU (the fixed
cost of some 30 operators), so a burst of requests is served in a few passes instead of one each.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class CropBatcher:
    """predict(crops (N, 48, 48) uint8) -> probabilities (N, C), called from one worker thread for the
    crops of every request queued within `wait_s` of each other."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], wait_s: float = 0.005, max_crops: int = 256):
        self.predict, self.wait_s, self.max_crops = predict, wait_s, max_crops
        self.passes = 0  # forward calls made (the service tests read it)
        self._queue: queue.Queue[tuple[np.ndarray, Future]] = queue.Queue()
        threading.Thread(target=self._work, name="ferkit-batcher", daemon=True).start()

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """The probabilities of one request's crops (blocks until its batch has run)."""
        return self.submit(crops).result()

    def submit(self, crops: np.ndarray) -> Future:
        """Queue one request's crops; the future's result is their probabilities (the service awaits it)."""
        done: Future = Future()
        if len(crops) == 0:
            done.set_result(np.empty((0, 0), dtype=np.float32))
        else:
            self._queue.put((crops, done))
        return done

    def _take(self) -> list[tuple[np.ndarray, Future]]:
        batch = [self._queue.get()]
        n, deadline = len(batch[0][0]), time.monotonic() + self.wait_s
        while n < self.max_crops:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            n += len(item[0])
        return batch

    def _work(self) -> None:
        while True:
            # A request cancelled while it waited (a client gone, a server shutting down) is dropped
            # here: a cancelled future refuses a result, and the worker must outlive every request.
            batch = [(crops, done) for crops, done in self._take() if done.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                probs = self.predict(np.concatenate([crops for crops, _ in batch]))
                self.passes += 1
            except Exception as e:  # every request of the batch gets the error, the worker goes on
                for _, done in batch:
                    done.set_exception(e)
                continue
            start = 0
            for crops, done in batch:
                done.set_result(probs[start : start + len(crops)])
                start += len(crops)
