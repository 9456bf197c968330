# Training settings read by tools/lazyconfig_train_net.py (sod2/engine/lazy_train.py).
train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=90000,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=3),
    eval_period=5000,
    log_period=20,
    device="auto",  # "cuda" when available, else "cpu"
    seed=-1,  # >= 0 for reproducible runs
    # model EMA (sod2/engine/ema.py): evaluation and checkpoints' "model" use the EMA weights
    ema=dict(enabled=False, decay=0.9998, ramp=2000.0),
    # no-aug tail (sod2/engine/hooks.py NoAugTail): from start_iter on, strong augmentation
    # (dataloader.train.dataset, a MosaicDataset) off and, with l1_loss, the model's L1 loss
    # on (model.set_l1_loss(True): YOLOX); None: never
    no_aug=dict(start_iter=None, l1_loss=True),
    # multi-scale batches (sod2/engine/multiscale.py): every `period` iterations a size in
    # size_range (pixels, multiples of 32) for images of input_size (h, w)
    multiscale=dict(enabled=False, input_size=[640, 640], size_range=[480, 800], period=10),
)
