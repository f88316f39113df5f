#!/usr/bin/env bash
# The micrograph experiment of docs/scene.md: scenes -> unpaired translators -> realism and picking
# scores beside the Gaussian, Poisson, coloured and real-background baselines.
#   tools/micrograph_experiment.sh OUT_DIR [REAL_MICROGRAPH]
# Runs on a fresh clone: the real micrograph and the TRPV1 map are bundled (cryorefine/data/demo).
# Environment: CUT_STEPS (default 1500), DDPM_STEPS (1500), PICKING_STEPS (300), PICKING_REPEATS (3),
# PICKING_METHODS (training sets given pickers, default every method; a 100-step picker takes about
# 30 s on one CPU thread), JOBS (commands at once, default 1), CRYOREFINE (default cryorefine),
# DEVICE (of the translators, default cpu: the recorded experiment's; cuda on a GPU).
# One thread per process (OMP_NUM_THREADS=1) so timings compare and parallel jobs do not thrash.
# A step whose output folder exists is skipped, so an interrupted run can go on; that also reuses
# models trained by other code or settings, so reproduce a result from an empty OUT_DIR.
set -euo pipefail
out=${1:?usage: micrograph_experiment.sh OUT_DIR [REAL_MICROGRAPH]}
here=$(cd "$(dirname "$0")/.." && pwd)
real=$(realpath "${2:-$here/cryorefine/data/demo/micrograph_real.mrc}")
trpv1=$here/cryorefine/data/demo/trpv1/consensus_map.mrc
cr=${CRYOREFINE:-cryorefine}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
jobs=${JOBS:-1}
holdout=0.5
mkdir -p "$out" && cd "$out"

# Up to $jobs commands at once; `finish` before anything that needs their results (a failed
# command stops the script there, as a foreground one would under set -e).
run() { while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done; "$@" & }
finish() { local pid; for pid in $(jobs -p); do wait "$pid"; done; }

# Scenes like the real micrograph: 4 Å/px over the same field (682 px ≈ 2,730 Å), crowded small
# particles, nearly flat ice, the same defocus range, a CTF envelope (B 200 Å²), 40 e/Å².
scene="--species $trpv1:400:trpv1 --size 682 --pixel-size 4 --min-separation 90 --ice-gradient 0.05
       --ice-roughness 0.05 --defocus 2.0 2.7 --bfactor 200 --dose 40"
[ -d scenes_train ] || $cr scene $scene --n-micrographs 4 --seed 1 --out scenes_train
[ -d scenes_test ] || $cr scene $scene --n-micrographs 2 --seed 2 --out scenes_test

train="--scenes scenes_train --real $real --holdout $holdout --tile 64 --device ${DEVICE:-cpu}"
cut="--steps ${CUT_STEPS:-1500} --batch-size 8"
# Contrastive translators: from the physics image with the structure term (the default) and
# without it, and from the clean micrograph (the earlier default); the diffusion model.
[ -d cut_physics ] || run $cr translate train $train $cut --out cut_physics
[ -d cut_physics_nostructure ] || run $cr translate train $train $cut --lambda-structure 0 --out cut_physics_nostructure
[ -d cut_clean ] || run $cr translate train $train $cut --input clean --out cut_clean
[ -d ddpm ] || run $cr translate train --method diffusion $train --steps "${DDPM_STEPS:-1500}" --out ddpm
finish

for split in train test; do
    for model in cut_physics cut_physics_nostructure cut_clean ddpm; do
        [ -d "${split}_$model" ] || run $cr translate apply --model $model --device "${DEVICE:-cpu}" \
            --scenes "scenes_$split" --out "${split}_$model"
    done
    # Partial diffusion from the physics image noised to 30 % and 50 % of the levels.
    for level in 0.3 0.5; do
        [ -d "${split}_ddpm_partial$level" ] || run $cr translate apply --model ddpm --start-level $level --device "${DEVICE:-cpu}" \
            --scenes "scenes_$split" --out "${split}_ddpm_partial$level"
    done
    for baseline in gaussian poisson; do
        [ -d "${split}_$baseline" ] || run $cr translate apply --baseline $baseline --scenes "scenes_$split" \
            --out "${split}_$baseline"
    done
    [ -d "${split}_coloured" ] || run $cr translate apply --baseline coloured --real "$real" --holdout $holdout \
        --scenes "scenes_$split" --out "${split}_coloured"
    # Real background from the training strip: a fair training set and a fair realism row.
    [ -d "${split}_realbg" ] || run $cr translate apply --baseline real-background --background-strip training \
        --real "$real" --holdout $holdout --scenes "scenes_$split" --out "${split}_realbg"
done
# The picking test set: the held-out scenes on the held-out strip (real noise, known coordinates).
[ -d test_realbg_heldout ] || run $cr translate apply --baseline real-background --real "$real" --holdout $holdout \
    --scenes scenes_test --out test_realbg_heldout
finish

methods="gaussian poisson coloured realbg cut_physics cut_physics_nostructure cut_clean ddpm ddpm_partial0.3 ddpm_partial0.5"
rm -rf realism
$cr evaluate micrographs --sets $(for m in $methods; do echo "$m=test_$m"; done) \
    --real "$real" --holdout $holdout --scenes scenes_test --tile 32 --classifier-repeats 5 --out realism
# One picking run per training set (independent: same test set, seeds and settings), $jobs at once.
mkdir -p picking
for m in ${PICKING_METHODS:-$methods}; do
    [ -d "picking/$m" ] || run $cr evaluate picking --train "$m=train_$m" --test test_realbg_heldout \
        --particle-diameter 110 --steps "${PICKING_STEPS:-300}" --repeats "${PICKING_REPEATS:-3}" \
        --out "picking/$m"
done
finish
