#!/usr/bin/env bash
# The micrograph experiment of docs/scene.md: scenes -> two unpaired translators -> realism and
# picking scores beside the Gaussian, Poisson and real-background baselines.
#   tools/micrograph_experiment.sh OUT_DIR [REAL_MICROGRAPH]
# Environment: CUT_STEPS (default 1500), DDPM_STEPS (1500), PICKING_STEPS (300), CRYOREFINE (the
# command, default cryorefine). Single-threaded by default (OMP_NUM_THREADS=1) so timings compare.
set -euo pipefail
out=${1:?usage: micrograph_experiment.sh OUT_DIR [REAL_MICROGRAPH]}
here=$(cd "$(dirname "$0")/.." && pwd)
real=${2:-$here/../shared/data/micrograph_epu/epu2.9_example.mrc}
trpv1=$here/../shared/data/trpv1/consensus_map.mrc
cr=${CRYOREFINE:-cryorefine}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
holdout=0.5
mkdir -p "$out" && cd "$out"

# Scenes like the real micrograph: 4 Å/px over the same field (684 px ≈ 2,730 Å), crowded small
# particles, nearly flat ice, the same defocus range, a CTF envelope (B 200 Å²), 40 e/Å².
scene="--species $trpv1:400:trpv1 --size 684 --pixel-size 4 --min-separation 90 --ice-gradient 0.05
       --ice-roughness 0.05 --defocus 2.0 2.7 --bfactor 200 --dose 40"
[ -d scenes_train ] || $cr scene $scene --n-micrographs 4 --seed 1 --out scenes_train
[ -d scenes_test ] || $cr scene $scene --n-micrographs 2 --seed 2 --out scenes_test

[ -d cut ] || $cr translate train --scenes scenes_train --real "$real" --holdout $holdout --out cut \
    --steps "${CUT_STEPS:-1500}" --batch-size 8 --tile 64
[ -d ddpm ] || $cr translate train --method diffusion --scenes scenes_train --real "$real" --holdout $holdout \
    --out ddpm --steps "${DDPM_STEPS:-1500}" --tile 64

for split in train test; do
    for model in cut ddpm; do
        [ -d "${split}_$model" ] || $cr translate apply --model $model --scenes "scenes_$split" --out "${split}_$model"
    done
    for baseline in gaussian poisson; do
        [ -d "${split}_$baseline" ] || $cr translate apply --baseline $baseline --scenes "scenes_$split" \
            --out "${split}_$baseline"
    done
done
[ -d test_realbg ] || $cr translate apply --baseline real-background --real "$real" --holdout $holdout \
    --scenes scenes_test --out test_realbg

rm -rf realism picking
$cr evaluate --micrographs gaussian=test_gaussian poisson=test_poisson contrastive=test_cut diffusion=test_ddpm \
    --real "$real" --holdout $holdout --scenes scenes_test --tile 32 --classifier-repeats 5 --out realism
$cr evaluate --picking-train gaussian=train_gaussian poisson=train_poisson contrastive=train_cut diffusion=train_ddpm \
    --picking-test test_realbg --particle-diameter 110 --picking-steps "${PICKING_STEPS:-300}" --out picking
