#!/usr/bin/env bash
# The GPU run book: on one GPU, in about 10 minutes, train every style preset with the default
# recipe (VGG16, 256 px, STEPS steps), export them, write the gallery and the quality table,
# and print training images/s and inference FPS.
#
#   bash scripts/gpu_suite.sh                       # SHARED=../shared STEPS=2000 PARALLEL=5
#   STEPS=3 DEVICE=cpu PARALLEL=1 PRESETS=hokusai QUALITY_ARGS="max_iterations=5" \
#     TRAIN_BENCH_ARGS="batch_sizes=[4] steps=1 warmup=0" INFER_BENCH_ARGS="models=[slim] sizes=[640x480] variants=[fp32]" \
#     bash scripts/gpu_suite.sh                      # a dry run of the whole script on a CPU
#
# SHARED must hold data/coco-sample, data/styles (the preset mirrors) and
# weights/vgg16-imagenet-features.safetensors (offline machines; online, COCO and the
# torchvision weights can be used instead by editing TRAIN_ARGS). Presets train PARALLEL at a
# time on the one GPU: a batch of 4 at 256 px leaves most of an H100 idle, so five processes
# finish five styles in about the time of one. Missing hydra-core/omegaconf (the GPU image
# lacks them) are installed from wheels in .whl/ if present (see docs/quality.md).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED=${SHARED:-../shared}
STEPS=${STEPS:-2000}
PARALLEL=${PARALLEL:-5}
DEVICE=${DEVICE:-gpu}
OUT=${SUITE_OUT:-outputs/gpu_suite}   # not $OUT: the device tool sets that to its return folder
BUDGET_S=${BUDGET_S:-0}                    # > 0: every stage after training gets only what is left of this many seconds
PRESETS=${PRESETS:-"hokusai starry_night the_scream composition_vii shipwreck"}
CKPT_ROOT=${CKPT_ROOT:-checkpoints}
QUALITY_ARGS=${QUALITY_ARGS:-}
TRAIN_BENCH_ARGS=${TRAIN_BENCH_ARGS:-"batch_sizes=[4,16,64] steps=10 warmup=3"}
DATA_BENCH_ARGS=${DATA_BENCH_ARGS:-"workers=[0,2,4,8] upscale=640"}
MAX_TIME=${MAX_TIME:-}                     # e.g. 00:00:06:00: Lightning stops training (and still exports) after this long
INFER_BENCH_ARGS=${INFER_BENCH_ARGS:-}
export PYTHONUNBUFFERED=1 WANDB_MODE=offline

if ! python3 -c "import hydra, omegaconf" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
for need in "$SHARED/data/coco-sample" "$SHARED/data/styles" "$SHARED/weights/vgg16-imagenet-features.safetensors"; do
  [ -e "$need" ] || { echo "error: $need not found; set SHARED=DIR (see the top of this script)" >&2; exit 2; }
done
mkdir -p "$OUT"
suite_start=$(date +%s)
# A stage that fails or runs out of time is reported and the suite goes on, so one slow stage
# never costs the figures of the others.
stage() {
  local name=$1; shift
  local limit=100000
  if [ "$BUDGET_S" -gt 0 ]; then limit=$(( BUDGET_S - ($(date +%s) - suite_start) )); fi
  if [ "$limit" -le 5 ]; then echo "skipped $name: out of time" | tee -a "$OUT/failed.txt"; return 0; fi
  timeout "$limit" "$@" || echo "failed $name (exit $?)" | tee -a "$OUT/failed.txt"
}
accel=$([ "$DEVICE" = cpu ] && echo cpu || echo gpu)
TRAIN_ARGS=(data=folder "data.path=$SHARED/data/coco-sample" data.preresize=256
  "loss.weights=$SHARED/weights/vgg16-imagenet-features.safetensors" "style_mirrors=[$SHARED/data/styles]"
  "trainer.max_steps=$STEPS" trainer.accelerator=$accel trainer.devices=1 trainer.enable_progress_bar=false
  logger=csv samples.every_n_train_steps=500 checkpoint.keep=10 ${MAX_TIME:++trainer.max_time=$MAX_TIME})

echo "== training ${PRESETS// /, } for $STEPS steps, $PARALLEL at a time ($(python3 -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")'))"
start=$(date +%s)
running=0
for style in $PRESETS; do
  ( t0=$(date +%s)
    python3 train.py style=$style "${TRAIN_ARGS[@]}" "checkpoint_dir=$CKPT_ROOT/$style" "hydra.run.dir=$OUT/runs/$style" \
      > "$OUT/train_$style.log" 2>&1 || { echo "failed training $style; see $OUT/train_$style.log" | tee -a "$OUT/failed.txt" >&2; tail -5 "$OUT/train_$style.log" >&2; exit 1; }
    echo "$style: $STEPS steps in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/train_times.txt" ) &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true
echo "all presets: $(( $(date +%s) - start )) s wall"

models=$(for s in $PRESETS; do printf '%s,' "$CKPT_ROOT/$s/$s.safetensors"; done)
paintings=$(for s in $PRESETS; do printf '%s,' "$SHARED/data/styles/$s.jpg"; done)
dev=$([ "$DEVICE" = cpu ] && echo cpu || echo cuda)
echo "== gallery"
stage gallery python3 scripts/gallery.py "models=[${models%,}]" "content=[$SHARED/data/content/chicago.jpg,$SHARED/data/content/hoovertowernight.jpg,$SHARED/data/content/stata.jpg]" \
  "styles=[${paintings%,}]" "output=$OUT/gallery.jpg" device=$dev

echo "== quality (median Gatys L-BFGS iterations matched, 256 px, shared content photos)"
for style in $PRESETS; do
  stage "quality $style" python3 scripts/benchmark.py mode=quality "model=$CKPT_ROOT/$style/$style.safetensors" "content=$SHARED/data/content" \
    "style=$SHARED/data/styles/$style.jpg" "loss_weights=$SHARED/weights/vgg16-imagenet-features.safetensors" device=$dev $QUALITY_ARGS \
    | tee "$OUT/quality_$style.txt" | tail -1 | sed "s/^/$style: /"
done

echo "== training throughput (images/s) and inference FPS"
stage "bench train" python3 scripts/benchmark.py mode=train $TRAIN_BENCH_ARGS | tee "$OUT/bench_train.txt" | tail -12
stage "bench infer" python3 scripts/benchmark.py mode=infer $INFER_BENCH_ARGS | tee "$OUT/bench_infer.txt" | tail -16
echo "== the loader (images/s per worker count, with and without the pre-resize cache)"
stage "bench data" python3 scripts/benchmark.py mode=data "path=$SHARED/data/coco-sample" $DATA_BENCH_ARGS | tee "$OUT/bench_data.txt" | tail -10
first=${PRESETS%% *}
echo "== quality per training step ($first: every checkpoint)"
stage "quality curve" python3 scripts/benchmark.py mode=quality "model=$CKPT_ROOT/$first" "content=$SHARED/data/content" \
  "style=$SHARED/data/styles/$first.jpg" "loss_weights=$SHARED/weights/vgg16-imagenet-features.safetensors" device=$dev \
  "plot=$OUT/curve_$first.png" $QUALITY_ARGS | tee "$OUT/quality_curve_$first.txt" | tail -8
[ -e "$OUT/failed.txt" ] && { echo "stages that failed or ran out of time:"; cat "$OUT/failed.txt"; }
echo "suite done in $(( $(date +%s) - suite_start )) s: $OUT"
