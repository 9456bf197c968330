"""tools/lazyconfig_train_net.py refuses runs that cannot work in one line (exit 2) before
anything is written (sod2/engine/preflight.py), locks its output folder against a second
training, and stops on a NaN loss with one line (exit 1)."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from detectron2.engine import default_argument_parser

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "baselines" / "faster_rcnn_R18s_fpn_synthetic.py")
TOOL = str(REPO / "tools" / "lazyconfig_train_net.py")
FAST = ["dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "train.device=cpu",
        "train.eval_period=0", "train.log_period=1"]
NO_EVAL = ["dataloader.evaluator=null"]  # (Hydra's grammar: null is None)


def _datasets_config(tmp_path) -> str:
    """A config that registers three small COCO datasets (objects with class ids 0..2 and
    one 5; no objects; a missing image) and otherwise is the R18s synthetic config."""
    from PIL import Image

    img_dir = tmp_path / "images"
    img_dir.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32)).save(img_dir / f"{i}.png")

    def coco(path, anns, files=("0.png", "1.png")):
        images = [{"id": i + 1, "file_name": f, "width": 32, "height": 32} for i, f in enumerate(files)]
        cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 6)]
        path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))

    box = {"bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0}
    coco(tmp_path / "objects.json", [dict(box, id=1, image_id=1, category_id=1),
                                     dict(box, id=2, image_id=2, category_id=6)])
    coco(tmp_path / "empty.json", [])
    coco(tmp_path / "missing.json", [dict(box, id=1, image_id=1, category_id=1)], files=("0.png", "gone.png"))
    cfg = tmp_path / "cfg.py"
    cfg.write_text(textwrap.dedent(f"""
        from detectron2.config import LazyConfig
        from detectron2.data import DatasetCatalog
        from detectron2.data.datasets import register_coco_instances

        for _name in ("objects", "empty", "missing"):
            if "h3_" + _name not in DatasetCatalog.list():
                register_coco_instances("h3_" + _name, {{}}, "{tmp_path}/" + _name + ".json", "{img_dir}")
        if "h3_nojson" not in DatasetCatalog.list():
            register_coco_instances("h3_nojson", {{}}, "{tmp_path}/nojson.json", "{img_dir}")
        _base = LazyConfig.load({CONFIG!r})
        model, dataloader, train, optimizer, lr_multiplier = (
            _base.model, _base.dataloader, _base.train, _base.optimizer, _base.lr_multiplier)
    """))
    return str(cfg)


def _run_tool(capsys, config, *opts, eval_only=False):
    """tools/lazyconfig_train_net.py's run_tool in this process: (status, stderr)."""
    from sod2.engine.lazy_train import run_tool

    argv = ["--config-file", config] + (["--eval-only"] if eval_only else []) + list(opts)
    status = run_tool(default_argument_parser().parse_args(argv))
    return status, capsys.readouterr().err


def test_refusals_before_anything_is_written(tmp_path, capsys):
    cfg = _datasets_config(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "afile").write_text("x")
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"")
    common = [*FAST, f"train.output_dir={out}"]
    cases = [
        ((CONFIG, "dataloader.train.dataset.names=sod2_synthetic_trian"),
         "error: dataloader.train.dataset.names: dataset 'sod2_synthetic_trian' is not registered "
         "(did you mean 'sod2_synthetic_train'"),
        ((CONFIG, "dataloader.test.dataset.names=nope"),
         "error: dataloader.test.dataset.names: dataset 'nope' is not registered"),
        ((CONFIG, "train.max_iter=-5"), "error: train.max_iter=-5: training needs at least 1 iteration"),
        ((CONFIG, "train.max_iter=0"), "error: train.max_iter=0: training needs at least 1 iteration"),
        ((CONFIG, "model.roi_heads.num_classes=-1"),
         "error: model.roi_heads.num_classes=-1: the number of classes must be an integer >= 1"),
        ((CONFIG, "train.output_dir=" + str(tmp_path / "afile")),
         f"error: train.output_dir={tmp_path / 'afile'}: exists and is not a folder"),
        ((CONFIG, "train.output_dir=/sys/sod2_h3_out"), "error: train.output_dir=/sys/sod2_h3_out: /sys is not writable"),
        ((cfg, "dataloader.train.dataset.names=h3_objects"),
         "error: dataset 'h3_objects': " + str(tmp_path / "images" / "1.png") + ", annotation 0: category_id 3 is "
         "out of range for the model's 3 classes (model.roi_heads.num_classes=3: ids 0..2"),
        ((cfg, "dataloader.train.dataset.names=h3_empty"),
         "error: dataloader.train.dataset.names=h3_empty: no image has an object annotation (2 images"),
        ((cfg, "dataloader.train.dataset.names=h3_missing", "model.roi_heads.num_classes=4"),
         "error: " + str(tmp_path / "images" / "gone.png") + ": image file not found (listed in dataset "
         "'h3_missing'; 1 of 2 images missing)"),
        ((cfg, "dataloader.train.dataset.names=h3_nojson"),
         "error: dataset 'h3_nojson' (dataloader.train.dataset.names) cannot be loaded: FileNotFoundError"),
        ((str(REPO / "README.md"),), "error: --config-file " + str(REPO / "README.md") + ": not a config file"),
    ]
    for (config, *opts), expected in cases:
        status, err = _run_tool(capsys, config, *common, *opts)
        assert status == 2, (opts, err)
        assert err.startswith(expected) and len(err.strip().splitlines()) == 1, (opts, err)
        assert not out.exists(), (opts, "log.txt/config.yaml/lock must not be written")
    # --eval-only: a checkpoint is required, and must exist
    for opts, expected in (([], "error: --eval-only needs the checkpoint to evaluate: train.init_checkpoint="),
                           ([f"train.init_checkpoint={tmp_path / 'no.pth'}"],
                            f"error: train.init_checkpoint={tmp_path / 'no.pth'}: no such file")):
        status, err = _run_tool(capsys, CONFIG, *common, *opts, eval_only=True)
        assert status == 2 and err.startswith(expected) and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_no_aug_refusals_before_anything_is_written(tmp_path, capsys):
    """train.no_aug on a training set that cannot switch strong augmentation off, or (with
    l1_loss) on a model without set_l1_loss: one line naming the key, nothing written."""
    mosaic = tmp_path / "mosaic_rcnn.py"  # Faster R-CNN on Mosaic data: switchable, but no L1 loss
    mosaic.write_text(textwrap.dedent(f"""
        from detectron2.config import LazyCall as L
        from detectron2.config import LazyConfig

        from sod2.data import MosaicDataset

        _base = LazyConfig.load({CONFIG!r})
        model, dataloader, train, optimizer, lr_multiplier = (
            _base.model, _base.dataloader, _base.train, _base.optimizer, _base.lr_multiplier)
        dataloader.train.dataset = L(MosaicDataset)(dataset=dataloader.train.dataset, input_size=(64, 64))
        dataloader.train.mapper = None
    """))
    out = tmp_path / "out"
    common = [*FAST, *NO_EVAL, f"train.output_dir={out}", "train.no_aug.start_iter=2"]
    for config, start, end in (
            (CONFIG, "error: train.no_aug.start_iter=2: dataloader.train.dataset (list) has no "
                     "set_strong_augmentation(bool) (sod2.data.MosaicDataset has)", ""),
            (str(mosaic), "error: train.no_aug.l1_loss=True: the model (",
             "GeneralizedRCNN) has no set_l1_loss(bool) (YOLOX has); set train.no_aug.l1_loss=False for it")):
        status, err = _run_tool(capsys, config, *common)
        assert status == 2 and err.startswith(start) and err.strip().endswith(end), err
        assert len(err.strip().splitlines()) == 1 and not out.exists(), err


def _cli(*argv, timeout=300, **kw):
    return subprocess.run([sys.executable, TOOL, *argv], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), **kw)


def test_cli_unregistered_dataset_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    proc = _cli("--config-file", CONFIG, "dataloader.train.dataset.names=nope", f"train.output_dir={out}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: dataloader.train.dataset.names: dataset 'nope' is not registered")
    assert not out.exists()


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from sod2.engine.output_lock import lock_output_dir
    with lock_output_dir(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(300)
""")


def test_second_training_into_a_locked_output_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True,
                              cwd=str(REPO))
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = _cli("--config-file", CONFIG, *FAST, *NO_EVAL, "train.max_iter=1", f"train.output_dir={out}")
        assert proc.returncode == 2, proc.stderr[-3000:]
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: train.output_dir={out} is in use by another training (pid {holder.pid} on ")
        assert "Traceback" not in proc.stderr
        assert sorted(p.name for p in out.iterdir()) == [".sod2-train.lock"], "nothing of the second run"
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the killed holder's lock: the folder can be locked again
    from sod2.engine.output_lock import lock_output_dir

    with lock_output_dir(str(out)):
        assert f"pid {os.getpid()} " in (out / ".sod2-train.lock").read_text()


def test_nan_loss_stops_training_with_one_line(tmp_path):
    """A learning rate of 1e8 makes the losses non-finite within two iterations."""
    out = tmp_path / "out"
    t0 = time.time()
    proc = _cli("--config-file", CONFIG, *FAST, *NO_EVAL, "train.max_iter=6", "optimizer.lr=1e8",
                "lr_multiplier.warmup_length=0", f"train.output_dir={out}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == proc.stderr.strip().splitlines()[-1], proc.stderr[-3000:]
    line = errors[0]
    assert line.startswith("error: Loss became infinite or NaN at iteration=")
    assert "non-finite: " in line and ("loss_cls=nan" in line or "loss_box_reg=nan" in line or "=inf" in line)
    # the log says the same in one line (no traceback)
    assert "Training stopped: Loss became infinite or NaN at iteration=" in (out / "log.txt").read_text()
    assert time.time() - t0 < 280
