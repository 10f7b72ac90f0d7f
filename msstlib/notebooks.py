"""Running our notebooks with papermill: quietly, with results that travel, and with parameters
typed as papermill users type them.

Every notebook the study runs goes through :func:`execute`, which differs from a bare
``papermill.execute_notebook`` in three ways, each something a user saw on a run that succeeded:

* The kernel is reached over IPC sockets in Jupyter's private runtime folder
  (:class:`LocalKernelManager`), not TCP ports, so ipykernel does not warn per row that it "is
  running over TCP without encryption" (true, and alarming, on a shared machine), and parallel rows
  never race for ports.
* The kernel is shut down without the SIGINT that jupyter_client sends before its shutdown
  request; on a notebook that has finished, that interrupt only made the kernel log
  ``ERROR | KeyboardInterrupt caught in kernel``. A kernel still busy is killed as before.
* The paths papermill records in the output's metadata are made repository-relative
  (:func:`msstlib.paths.relative`), like the parameters the callers pass; the kernel runs in the
  repository root so that those relative parameters resolve.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import default

from . import paths
from .config import ConfigError
from .files import atomic_path

NOTEBOOKS = paths.REPO / "notebooks"  # the source notebooks: train_eval, tables, gradcam, data_overview, predict


class LocalKernelManager(AsyncKernelManager):
    """A kernel on this machine over IPC sockets, shut down without a needless interrupt."""

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    @default("ip")
    def _default_ip(self) -> str:
        # Absolute: the default ("kernel-ipc") would put socket files in the current folder.
        runtime = Path(jupyter_runtime_dir())
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(runtime / f"msstlib-{os.getpid()}-{uuid.uuid4().hex[:8]}-ipc")

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:  # the shutdown request follows; a finished notebook needs no SIGINT
            return
        await super()._async_interrupt_kernel()


def execute(notebook: str | Path, output: str | Path, parameters: dict, *, log_output: bool = False,
            progress_bar: bool = False) -> None:
    """Run ``notebook`` into ``output`` with ``parameters`` (paths in them already recorded with
    :func:`msstlib.paths.relative`), in the repository root; the output records no machine paths,
    also when a cell fails (papermill then raises after writing it)."""
    import papermill as pm

    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(paths.REPO),
                            progress_bar=progress_bar, log_output=log_output, kernel_name="python3",
                            kernel_manager_class=LocalKernelManager)
    finally:
        _relocate_metadata(Path(output))


def _relocate_metadata(path: Path) -> None:
    """An executed copy as it is committed: papermill's paths repository-relative, in the form
    JupyterLab saves (:func:`lab_form`), so that opening it changes nothing."""
    if not path.exists():
        return
    import nbformat

    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = paths.relative(meta[key])
    with atomic_path(path) as tmp:
        tmp.write_text(lab_form(nb))


# ------------------------------------------------------------------ parameters as users type them
# ``papermill -p`` passes a string unless the value parses as a number or True/False; ``-y`` and
# ``-f params.yaml`` pass YAML values. A notebook's first code cell runs its parameters through
# these, so each form works, or fails in one line naming the parameter and the accepted forms.


def int_list(name: str, value, length: int) -> list[int]:
    """``[2, 2, 2]``, ``"[2,2,2]"``, ``"2,2,2"``, ``"2 2 2"`` or ``"(2, 2, 2)"`` -> ``[2, 2, 2]``."""
    items = value
    if isinstance(value, str):
        items = [v for v in value.strip().strip("[]()").replace(",", " ").split()]
    try:
        out = [int(str(v).strip()) for v in items]
    except (TypeError, ValueError):
        out = []
    if len(out) != length:
        example = ",".join(["2"] * length)
        raise ConfigError(f"parameter {name}: got {value!r}; give {length} integers, e.g. "
                          f"-p {name} '[{example}]', -p {name} {example} or -y '{name}: [{example}]'")
    return out


def mapping(name: str, value) -> dict:
    """A dict, a JSON object string (``-p overrides '{"lr": 0.01}'``) or ``""`` -> a dict."""
    if isinstance(value, dict):
        return dict(value)
    text = str(value).strip() if value is not None else ""
    try:
        out = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        out = exc
    if not isinstance(out, dict):
        raise ConfigError(f"parameter {name}: got {value!r}; give a JSON object, e.g. "
                          f"-p {name} '{{\"lr\": 0.01}}', or a mapping: -y '{name}: {{lr: 0.01}}'")
    return out


def boolean(name: str, value) -> bool:
    """``True``/``False`` or the strings ``true``/``false``/``yes``/``no``/``1``/``0``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"parameter {name}: got {value!r}; give true or false, e.g. -p {name} false")


# ------------------------------------------------------------------ the form JupyterLab saves
# Opening a notebook in JupyterLab (4.x, ipykernel) and letting it autosave rewrites its metadata to
# this; a committed source in this form stays byte-identical when someone only looks at it. The
# Python version is the development machines' (JupyterLab writes the running kernel's).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3", "version": "3.11.7"}


def lab_form(nb) -> str:
    """A notebook's text in the form JupyterLab saves it: this kernelspec and language_info,
    nbformat's JSON layout, a final newline."""
    import nbformat

    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = dict(LANGUAGE_INFO)
    return nbformat.writes(nb) + "\n"


def jupyterlab_form(path: str | Path) -> bool:
    """Rewrite a notebook (a source, or an executed copy: only its metadata and layout change) in
    the form JupyterLab saves; returns whether it changed."""
    import nbformat

    path = Path(path)
    before = path.read_text()
    after = lab_form(nbformat.reads(before, as_version=4))
    if after != before:
        with atomic_path(path) as tmp:
            tmp.write_text(after)
    return after != before


def main(argv: list[str] | None = None) -> int:
    """``python -m msstlib.notebooks FILE_OR_FOLDER ...``: put notebooks (folders: every ``*.ipynb``
    under them) in the form JupyterLab saves; prints how many changed."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m msstlib.notebooks", description=main.__doc__)
    p.add_argument("paths", nargs="+")
    args = p.parse_args(argv)
    found = [q for a in map(Path, args.paths) for q in (sorted(a.rglob("*.ipynb")) if a.is_dir() else [a])]
    changed = sum(jupyterlab_form(q) for q in found)
    print(f"{changed} of {len(found)} notebooks rewritten in JupyterLab's form")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
