"""Frame sources for the demo: a camera index, a video file, an image folder or one image.

Every source is an iterator of `Frame`s that ends cleanly: end of file ends it, an unreadable
image or a corrupt video frame is skipped with a warning, and a camera that stops delivering
frames (unplugged, driver hiccup) is retried for a while and then ends the stream. A background
thread reads ahead so that decoding the next frame overlaps inference on the current one.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FPS = 30.0


@dataclass
class Frame:
    """One BGR uint8 image (H, W, 3), its position in the stream and its time in seconds."""

    index: int
    image: np.ndarray
    time: float


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class FrameSource:
    """Base: `name`, `fps` (frames per second for the output video), `skipped` (count of
    unreadable frames), iteration yields Frames. `close()` releases the device/file."""

    name = ""
    fps = DEFAULT_FPS
    live = False  # a camera: old frames are worth less than new ones

    def __init__(self) -> None:
        self.skipped = 0

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageFolder(FrameSource):
    """Image files of a folder in name order (or a single image file); unreadable ones skipped."""

    def __init__(self, paths: list[Path], name: str, fps: float = DEFAULT_FPS) -> None:
        super().__init__()
        self.paths, self.name, self.fps = paths, name, fps

    def __iter__(self) -> Iterator[Frame]:
        count = 0
        for path in self.paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None or image.size == 0:
                self.skipped += 1
                warn(f"skipping unreadable image {path}")
                continue
            yield Frame(count, image, count / self.fps)
            count += 1


class VideoCapture(FrameSource):
    """A video file or camera through cv2.VideoCapture.

    A file ends at the first failed read past its last frame; a failed read before that (a
    corrupt frame) is skipped. A camera is retried `camera_retries` times, `retry_wait` s apart,
    before the stream ends as disconnected.
    """

    def __init__(
        self,
        capture: cv2.VideoCapture,
        name: str,
        live: bool,
        camera_retries: int = 20,
        retry_wait: float = 0.05,
    ) -> None:
        super().__init__()
        self.capture, self.name, self.live = capture, name, live
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else DEFAULT_FPS
        self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.camera_retries, self.retry_wait = camera_retries, retry_wait

    def _read(self) -> np.ndarray | None:
        try:
            ok, image = self.capture.read()
        except cv2.error:  # some backends raise instead of returning False
            return None
        return image if ok and image is not None and image.size else None

    def __iter__(self) -> Iterator[Frame]:
        count, failures, start = 0, 0, time.monotonic()
        while True:
            image = self._read()
            if image is None:
                failures += 1
                if self.live:
                    if failures > self.camera_retries:
                        warn(f"camera {self.name} stopped delivering frames; stopping")
                        return
                    time.sleep(self.retry_wait)
                    continue
                position = int(self.capture.get(cv2.CAP_PROP_POS_FRAMES) or 0)
                if position >= self.frame_count - 1 or failures > 100:
                    return  # end of file (or a file that is all damage from here on)
                self.skipped += 1
                warn(f"skipping unreadable frame {position} of {self.name}")
                continue
            failures = 0
            stamp = time.monotonic() - start if self.live else count / self.fps
            yield Frame(count, image, stamp)
            count += 1

    def close(self) -> None:
        self.capture.release()


def open_source(spec: str, fps: float | None = None) -> FrameSource:
    """A camera index ("0"), a video file, an image file or a folder of images.

    Raises FileNotFoundError / ValueError with a message naming `spec` when it cannot be used.
    """
    spec = str(spec)
    if spec.isdigit():
        capture = cv2.VideoCapture(int(spec))
        if not capture.isOpened():
            raise ValueError(f"cannot open camera {spec} (no such device, or it is busy)")
        return VideoCapture(capture, f"camera {spec}", live=True)
    path = Path(spec)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return ImageFolder(paths, str(path), fps or DEFAULT_FPS)
    if not path.is_file():
        raise FileNotFoundError(f"input not found: {spec} (give a camera index, video or folder)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolder([path], str(path), fps or DEFAULT_FPS)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened() or capture.get(cv2.CAP_PROP_FRAME_COUNT) == 0:
        capture.release()
        raise ValueError(f"cannot read video {path} (unknown format or not a video)")
    source = VideoCapture(capture, str(path), live=False)
    if fps:
        source.fps = fps
    return source


class ReadAhead:
    """Iterate `frames` in a background thread, `depth` frames ahead.

    For a live source only the newest frame is kept (a stale camera frame only adds latency);
    otherwise every frame is delivered in order. Exceptions of the reader re-raise here.
    """

    _END = object()

    def __init__(self, frames: Iterator[Frame], live: bool, depth: int = 2) -> None:
        self.live = live
        self.queue: queue.Queue = queue.Queue(maxsize=1 if live else depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(frames,), daemon=True)
        self.thread.start()

    def _put(self, item: object) -> None:
        while not self.stopped.is_set():
            if self.live and item is not self._END:
                with contextlib.suppress(queue.Empty):
                    self.queue.get_nowait()  # drop the stale frame
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _work(self, frames: Iterator[Frame]) -> None:
        try:
            for frame in frames:
                if self.stopped.is_set():
                    return
                self._put(frame)
        except Exception as err:  # handed to the consumer, which re-raises it
            self._put(err)
        self._put(self._END)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2.0)


def read_frames(source: FrameSource, read_ahead: bool = True) -> tuple[Iterator[Frame], Callable]:
    """(frame iterator, stop function) for `source`, read ahead in a thread if asked."""
    if not read_ahead:
        return iter(source), lambda: None
    reader = ReadAhead(iter(source), source.live)
    return iter(reader), reader.stop
