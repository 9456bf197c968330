# The two commands: `make demo` (the main job) and `make test` (the test suite); on a machine
# with a CUDA device also `make gpu-check`.
# Each first makes sure the environment is ready (tools/ensure_env.py).
PYTHON ?= python3
export SOD2_DATASETS ?= $(CURDIR)/datasets
DEMO_CONFIG ?= configs/baselines/faster_rcnn_R18s_fpn_synthetic.py
DEMO_OUT ?= output/demo
PYTEST_ARGS ?=

.PHONY: env demo test gpu-check cfinet-demo srtod-demo fgprobe-demo bsdetr-demo

env:
	@$(PYTHON) tools/ensure_env.py

# Train the small-object baseline on the embedded synthetic dataset (2 CPU cores, < 15 min),
# evaluate it with the AI-TOD protocol, and draw predictions next to the ground truth.
demo: env
	$(PYTHON) tools/lazyconfig_train_net.py --config-file $(DEMO_CONFIG) train.output_dir=$(DEMO_OUT)
	$(PYTHON) tools/demo.py --config-file $(DEMO_CONFIG) --dataset sod2_synthetic_val --max-images 8 \
		--with-ground-truth --scale 3 --output $(DEMO_OUT)/visualizations \
		--opts train.init_checkpoint=$(DEMO_OUT)/model_final.pth

test: env
	$(PYTHON) -m pytest tests -q $(PYTEST_ARGS)

# On a machine with a CUDA device: the tests marked `cuda` (CUDA kernel vs CPU path, training
# and inference of every method, AMP) and the benchmarks on CUDA, with a summary of pass/fail
# and timings (tools/gpu_check.sh). Without a CUDA device it says so and exits 0.
gpu-check: env
	PYTHON=$(PYTHON) tools/gpu_check.sh $(PYTEST_ARGS)

# CFINet next to the same detector without CRPN and feature imitation, both trained from
# scratch on the embedded dataset the same way (2 CPU cores, < 20 min); prints both tables.
cfinet-demo: env
	$(PYTHON) tools/compare_configs.py --output-dir output/cfinet_demo --names "Faster R-CNN" CFINet \
		--configs configs/cfinet/cfinet_plain_R18s_fpn_synthetic.py configs/cfinet/cfinet_R18s_fpn_synthetic.py

# Faster R-CNN with SR-TOD next to the same detector without it (one override), both trained
# from scratch on the embedded dataset the same way (2 CPU cores, ~18 min); prints both tables.
srtod-demo: env
	$(PYTHON) tools/compare_configs.py --output-dir output/srtod_synthetic --names "Faster R-CNN" SR-TOD \
		--configs "configs/srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py::model.feature_hook=null" \
		configs/srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py

# YOLOX with Foreground Probing next to the same YOLOX without it (one override), both trained
# from scratch on the embedded dataset the same way (2 CPU cores, < 20 min); prints both tables.
fgprobe-demo: env
	$(PYTHON) tools/compare_configs.py --output-dir output/fgprobe_demo --names YOLOX "YOLOX + FG-Probe" \
		--configs configs/fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py configs/fgprobe/fgprobe_yolox_tiny_p2_synthetic.py

# RT-DETR with Better Sampling (ST + SR + SPR) next to the same RT-DETR without its three parts (the
# paper's Table 3 "none" row, bsdetr_none: the paper's VFL 0.5/1.5 kept), both trained from
# scratch on the embedded dataset the same way (2 CPU cores, < 25 min); prints both tables.
bsdetr-demo: env
	$(PYTHON) tools/compare_configs.py --output-dir output/bsdetr_demo --names RT-DETR "RT-DETR + Better Sampling" \
		--configs configs/bsdetr/bsdetr_none_r18s_synthetic.py configs/bsdetr/bsdetr_r18s_synthetic.py
