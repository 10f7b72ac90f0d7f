"""The training loop's parts (msstlib.loop): driven by hand they train what train_run trains."""

from dataclasses import replace
from pathlib import Path

import torch

from msstlib import config, loop, train
from msstlib.distributed import Dist

SMALL = {"embed_dim": 32, "num_heads": 4, "batch_size": 16}


def test_the_loops_parts_driven_by_hand_train_what_train_run_trains(tiny, r18, tmp_path):
    ann, root = tiny
    model_cfg, train_cfg, data_cfg = config.resolve("cpu", frames=4, depths=(1, 1, 1), epochs=2,
                                                    overrides={**SMALL, "backbone_weights": r18})
    # As run() does before training: the check reads the backbone once per process, and the first
    # read builds torchvision's reference ResNet-18, a draw from the generator build() seeds.
    train.check_inputs(ann, root, fold=1, configs=lambda: (model_cfg, train_cfg, data_cfg))
    spec = train.RunSpec(annotations=ann, root=root, out=str(tmp_path / "run"), dataset="synthetic", fold=1,
                         preset="cpu")
    result = train.train_run(spec, model_cfg, train_cfg, data_cfg, progress=False)

    parts, (epochs_done, log, _) = train.build(replace(spec, out=str(tmp_path / "by-hand")), model_cfg, train_cfg,
                                               data_cfg, Dist())
    assert epochs_done == 0 and log == []
    for epoch in range(train_cfg.epochs):
        trained = loop.train_epoch(parts, train_cfg, epoch, Dist(), progress=False, ckpt_path=tmp_path / "none.pt")
        assert trained["clips"] == 56  # the four training folds of the 70 clips
    metrics, n_test = loop.evaluate(parts, Dist())
    assert (metrics.war, metrics.uar, n_test) == (result["war"], result["uar"], result["test_clips"])
    saved, state = loop.load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"], parts.model.state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in saved)
    assert not (tmp_path / "by-hand").exists()  # building writes nothing: the run folder is train_run's


def test_bf16_is_decided_in_one_place():
    """Training and testing share one precision decision (distributed.mixed_precision); a second
    autocast elsewhere in the library could test in another precision than it trained."""
    library = Path(loop.__file__).parent
    users = sorted(p.name for p in library.glob("*.py") if "torch.autocast(" in p.read_text())
    assert users == ["distributed.py"], users


def test_checking_a_backbone_file_draws_nothing_from_the_seeded_generator():
    """``resnet_weights.reference()`` built a torchvision ResNet-18 from the global generator: the
    first run of a process that had not checked its inputs first trained other weights under the
    same run id (WAR 0.2143 then 0.1429 for one configuration run twice in one process)."""
    import subprocess
    import sys

    code = ("import torch\nfrom msstlib import resnet_weights\n"
            "torch.manual_seed(0); a = torch.rand(3)\n"
            "torch.manual_seed(0); resnet_weights.reference(); b = torch.rand(3)\n"
            "print(torch.equal(a, b))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
