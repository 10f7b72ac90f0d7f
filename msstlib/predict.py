"""Predict expressions over time on one's own video (``python -m msstlib.predict``; issue 27).

    python -m msstlib.predict INPUT --model MODEL [--out DIR] [--stride S] [--window W]

INPUT is a video file (its face track is cropped first, as ``data_prep.video`` does, into
``DIR/crops/``) or a crops folder that ``data_prep.video`` wrote (one clip folder, or its
``--out`` with ``clips/``). MODEL is a folder that ``msstlib.export`` wrote: nothing pickled is
loaded.

* **Windows.** The model reads T frames (its ``config.json``). Windows of W face frames
  (``--window``, default T: T consecutive face frames) slide over the face track every S frames
  (``--stride``, default W / 2); a window never spans a gap in the track longer than
  :data:`MAX_GAP` frames (the face left the picture), and a track shorter than W gives one window
  of all its frames. Inside a window the T frames are taken as the test set takes them (the centre
  of T equal segments), so ``--window 64`` shows the model clips of DFEW's scale (about 2 s).
* ``DIR/predictions.csv``: one row per window, ``start_frame, end_frame`` (the video's frame
  numbers, from 1), the seven class probabilities under the names of ``msstlib.labels.EMOTIONS``
  (softmax: they sum to 1) and ``predicted``.
* ``DIR/timeline.png``: the probabilities over time.
* ``DIR/gradcam/``: Grad-CAM overlays on the face crops at the T-Former-3 layer (the deepest
  T-Former the model has), like the paper's Fig. 3, for ``--cam-windows`` windows spread over the
  video.

A model trained on SynDFER says nothing about a real face: the path is for models trained on DFEW
or FERV39k; the outputs say which data the model was trained on.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import export, files, inputs
from .config import ConfigError
from .frames import list_frames
from .labels import EMOTIONS

MAX_GAP = 5  # frames without a face a window may span (a missed detection, not the face leaving)


@dataclass(frozen=True)
class Track:
    """A clip folder's crops and the video frame each one is (from ``faces.csv``)."""

    folder: Path
    crops: list[Path]
    frames: list[int]  # 1-based video frame numbers, one per crop

    @property
    def name(self) -> str:
        return self.folder.name


def read_track(folder: Path) -> Track:
    """A clip folder of ``data_prep.video``: its JPEGs in order and their frame numbers."""
    crops = list_frames(folder)
    if not crops:
        raise ConfigError(f"{folder}: no face crops (no .jpg): no face was found in this clip")
    faces = folder / "faces.csv"
    if faces.is_file():
        with faces.open(newline="") as f:
            frames = [int(r["frame"]) for r in csv.DictReader(f) if r.get("x0", "") != ""]
        if len(frames) != len(crops):
            raise ConfigError(f"{faces}: {len(frames)} frames with a face but {len(crops)} crops in {folder}; write "
                              f"the clip again (python -m data_prep.video ... --force)")
    else:  # crops from elsewhere: consecutive frames
        frames = list(range(1, len(crops) + 1))
    return Track(folder, crops, frames)


def find_tracks(path: Path) -> list[Track]:
    """The clip folders a crops folder holds: itself, or ``clips/*`` of a ``data_prep.video`` output."""
    if (path / "clips").is_dir():
        folders = sorted(p for p in (path / "clips").iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        folders = [path]
    if not folders:
        raise ConfigError(f"{path}: no clip folder under clips/: no face was found")
    return [read_track(f) for f in folders]


def windows(frames: list[int], window: int, stride: int) -> list[tuple[int, int]]:
    """``(first, last)`` crop indices (inclusive) of the windows over one track (see the module
    docstring): within each run of face frames without a gap over :data:`MAX_GAP`."""
    runs, start = [], 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i] - frames[i - 1] > MAX_GAP + 1:
            runs.append((start, i - 1))
            start = i
    out = []
    for a, b in runs:
        n = b - a + 1
        if n <= window:
            out.append((a, b))
            continue
        starts = list(range(a, b - window + 2, stride))
        if starts[-1] + window - 1 < b:  # the end of the run gets a window too
            starts.append(b - window + 1)
        out += [(s, s + window - 1) for s in starts]
    return out


def load_crops(paths: list[Path], size: int):
    """uint8 ``(n, 3, size, size)`` from JPEG crops (torchvision decodes and resizes)."""
    import torch

    from .data import decode_frame

    return torch.stack([decode_frame(p, size, p.parent.name) for p in paths])


def predict_track(model, config: dict, track: Track, window: int, stride: int) -> tuple[list[dict], list, object]:
    """One row per window (probabilities, predicted), each window's crop indices, and the track's
    crops (uint8, decoded once): a window's input is remade from them when Grad-CAM needs it."""
    import torch

    from .data import sample_indices, to_model_input

    t, size = int(config["data"]["frames"]), int(config["model"]["image_size"])
    normalize = bool(config["data"].get("normalize", True))
    crops = load_crops(track.crops, size)
    rows, picked = [], []
    with torch.no_grad():
        for a, b in windows(track.frames, window, stride):
            idx = a + sample_indices(b - a + 1, t, train=False)
            x = to_model_input(crops[idx], normalize)
            p = torch.softmax(model(x.unsqueeze(0)).float(), dim=1)[0].numpy()
            rows.append({"start_frame": track.frames[a], "end_frame": track.frames[b],
                         **{e: float(v) for e, v in zip(EMOTIONS, p)}, "predicted": EMOTIONS[int(p.argmax())]})
            picked.append(idx)
    return rows, picked, crops


def cam_layer(model) -> str | None:
    """The deepest T-Former output of the model (the paper's Fig. 3 uses T-Former 3), else None."""
    from .cam import layers_of

    names = [n for n in layers_of(model) if n.startswith("T-Former")]
    return names[-1] if names else None


def timeline(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mid = [(r["start_frame"] + r["end_frame"]) / 2 for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for e in EMOTIONS:
        ax.plot(mid, [r[e] for r in rows], marker="o", ms=3, label=e)
    ax.set(xlabel="video frame (window centre)", ylabel="probability", ylim=(0, 1), title=title)
    ax.legend(fontsize=7, ncol=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def trained_on(config: dict, sep: str = " ") -> str:
    """What the model was trained on, in words (a SynDFER model's caveat included)."""
    data = (config.get("trained_on") or {}).get("dataset") or "unknown data"
    return (f"SynDFER (synthetic):{sep}meaningless on a real face" if data == "synthetic" else data)


def run(input: str | Path, model_dir: str | Path, out: str | Path, stride: int = 0, window: int = 0,
        cam_windows: int = 3, every: int = 5, progress: bool = True) -> list[Path]:
    """Predict over every face track of ``input`` into ``out``; returns the predictions files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from .cam import clip_cams, figure
    from .data import to_model_input

    model, config = export.load(model_dir)
    t = int(config["data"]["frames"])
    window = window or t
    stride = stride or max(1, window // 2)
    if window < 1 or stride < 1 or cam_windows < 0:
        raise ConfigError("--window, --stride must be >= 1 and --cam-windows >= 0")
    src, out = Path(input), Path(out)
    inputs.check_out(out)
    if not src.exists():
        raise ConfigError(f"{input}: no such file or folder; give a video file or a crops folder of data_prep.video")
    if src.is_file():  # a video: its face track first
        from data_prep.video import FaceDetector, VideoError, process

        try:
            process(src, out / "crops" / "clips", FaceDetector(), every=every, min_frames=1, progress=progress)
        except VideoError as exc:
            raise ConfigError(str(exc)) from None
        tracks = find_tracks(out / "crops")
    else:
        tracks = find_tracks(src)
    layer = cam_layer(model)
    written = []
    for track in tracks:
        here = out if len(tracks) == 1 else out / track.name
        here.mkdir(parents=True, exist_ok=True)
        rows, picked, crops = predict_track(model, config, track, window, stride)
        path = here / "predictions.csv"
        files.write_text(path, pd.DataFrame(rows, columns=["start_frame", "end_frame", *EMOTIONS, "predicted"])
                         .to_csv(index=False, float_format="%.6f"))
        about = f"{track.name}: model trained on {trained_on(config)}"
        timeline(rows, here / "timeline.png", about)
        if layer is not None and cam_windows:
            cams_dir = here / "gradcam"
            cams_dir.mkdir(exist_ok=True)
            picks = sorted({round(v) for v in np.linspace(0, len(rows) - 1, min(cam_windows, len(rows)))})
            for i in picks:
                x = to_model_input(crops[picked[i]], bool(config["data"].get("normalize", True)))
                rgb = crops[picked[i]].permute(0, 2, 3, 1).numpy()
                label = EMOTIONS.index(rows[i]["predicted"])
                maps = clip_cams(model, x, label, layers=[layer])
                fig = figure(rgb, {"MSSTNet": maps}, marked="MSSTNet",
                             title=f"{track.name}, frames {rows[i]['start_frame']}-{rows[i]['end_frame']}\n"
                                   f"model trained on {trained_on(config, sep=chr(10))}\n{layer}, for its "
                                   f"prediction",
                             predicted={"MSSTNet": rows[i]["predicted"]})
                fig.savefig(cams_dir / f"window_{rows[i]['start_frame']:05d}-{rows[i]['end_frame']:05d}.png", dpi=110)
                plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m msstlib.predict", description=__doc__.splitlines()[0])
    p.add_argument("input", metavar="INPUT", help="a video file, or a crops folder of data_prep.video")
    p.add_argument("--model", required=True, metavar="MODEL", help="a folder of python -m msstlib.export")
    p.add_argument("--out", default="predictions", metavar="DIR", help="default: ./predictions")
    p.add_argument("--stride", type=int, default=0, metavar="S", help="frames between windows (default: W / 2)")
    p.add_argument("--window", type=int, default=0, metavar="W", help="face frames per window (default: the model's T)")
    p.add_argument("--cam-windows", type=int, default=3, help="windows with Grad-CAM overlays (default 3; 0: none)")
    p.add_argument("--every", type=int, default=5, help="a video: detect faces on every K-th frame (default 5)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        written = run(args.input, args.model, args.out, stride=args.stride, window=args.window,
                      cam_windows=args.cam_windows, every=args.every, progress=not args.no_progress)
    except inputs.USAGE_ERRORS as exc:
        print(f"error: {inputs.describe(exc)}", file=sys.stderr)
        return 2
    for path in written:
        print(f"-> {path}, {path.parent / 'timeline.png'}, {path.parent / 'gradcam'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
