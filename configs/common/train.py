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
)
