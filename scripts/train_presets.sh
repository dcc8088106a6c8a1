#!/usr/bin/env bash
# Train the shipped presets (docs/presets.md): for each public-domain painting a full network
# (the default recipe, sharp 224-px crops as the sample folder's photo size asks, 2000 steps)
# and a model=realtime network (2000 steps, then 150 steps stable: loss.temporal_weight=100,
# as in docs/video.md). A queue that resumes: a network already shipped in stylenet/presets/
# or whose export exists is skipped, one with a last.ckpt (saved every 100 steps) resumes
# from it (ckpt_path=): a rerun after a stopped session goes on where it stopped. Real-time
# networks first (the webcam and the webpage use them), then the full ones. All lands in
# checkpoints/presets/ (ignored); scripts/ship_presets.py writes the package data.
#
#   bash scripts/train_presets.sh [NAME ...]        # default: all five
#   PHOTOS=DIR VGG16=FILE STEPS=2000 bash scripts/train_presets.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PHOTOS=${PHOTOS:-../shared/data/coco-sample}
VGG16=${VGG16:-../shared/weights/vgg16-imagenet-features.safetensors}
STEPS=${STEPS:-2000}
STABLE_STEPS=${STABLE_STEPS:-150}
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(hokusai starry_night the_scream composition_vii shipwreck)
COMMON=(data=folder "data.path=$PHOTOS" "loss.weights=$VGG16" data.image_size=224
        "data.augment.scale=[0.6,1.0]" logger=csv checkpoint.every_n_train_steps=100)

# job RUN_NAME STYLE ARGS...: train into checkpoints/presets/RUN_NAME unless its export exists
job() {
  local run=$1 style=$2; shift 2
  local dir=checkpoints/presets/$run
  if [ -f "$dir/$style.safetensors" ]; then echo "== $run: done ($dir/$style.safetensors)"; return 0; fi
  local resume=()
  [ -f "$dir/last.ckpt" ] && resume=("ckpt_path=$dir/last.ckpt")
  echo "== $run: $(date -u +%H:%M:%S) ${resume[*]:-from the start}"
  python train.py "style=$style" "${COMMON[@]}" "run_name=preset-$run" "checkpoint_dir=$dir" "$@" "${resume[@]}"
}

shipped() { [ -f "stylenet/presets/$1.safetensors" ] && echo "== $1: shipped (stylenet/presets/$1.safetensors)"; }

realtime() {
  shipped "$1-realtime" && return 0
  job "$1-realtime" "$1" model=realtime "trainer.max_steps=$STEPS" || exit 1
  job "$1-realtime-stable" "$1" model=realtime "trainer.max_steps=$STABLE_STEPS" \
      "init_from=checkpoints/presets/$1-realtime/$1.safetensors" optim.warmup_steps=20 \
      loss.temporal_weight=100 || exit 1
}
full() {
  shipped "$1" && return 0
  job "$1" "$1" "trainer.max_steps=$STEPS" || exit 1
}
for name in "${NAMES[@]}"; do realtime "$name"; done
for name in "${NAMES[@]}"; do full "$name"; done
echo "== all presets trained"
