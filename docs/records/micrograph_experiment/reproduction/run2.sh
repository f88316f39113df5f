#!/usr/bin/env bash
# The remaining learned rows of tools/micrograph_experiment.sh (same commands, same settings), on the
# scenes of micro.sh; two commands at a time, one thread each.
set -euo pipefail
here=/tmp/repro_src
real=$here/cryorefine/data/demo/micrograph_real.mrc
cr="/work/main/.venv/bin/python -m cryorefine.cli"
export PYTHONPATH=$here OMP_NUM_THREADS=1
holdout=0.5
cd /tmp/repro/micro
run() { while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done; "$@" & }
finish() { local pid; for pid in $(jobs -p); do wait "$pid"; done; }
train="--scenes scenes_train --real $real --holdout $holdout --tile 64"
cut="--steps 1500 --batch-size 8"
date
run $cr translate train $train $cut --lambda-structure 0 --out cut_physics_nostructure
run $cr translate train $train $cut --input clean --out cut_clean
run $cr translate train --method diffusion $train --steps 1500 --out ddpm
finish; date
for split in test train; do
  for model in cut_physics_nostructure cut_clean ddpm; do
    run $cr translate apply --model $model --scenes "scenes_$split" --out "${split}_$model"
  done
  for level in 0.3 0.5; do
    run $cr translate apply --model ddpm --start-level $level --scenes "scenes_$split" --out "${split}_ddpm_partial$level"
  done
  finish
  if [ $split = test ]; then
    methods="gaussian poisson coloured realbg cut_physics cut_physics_nostructure cut_clean ddpm ddpm_partial0.3 ddpm_partial0.5"
    rm -rf realism_all
    $cr evaluate micrographs --sets $(for m in $methods; do echo "$m=test_$m"; done) \
        --real "$real" --holdout $holdout --scenes scenes_test --tile 32 --classifier-repeats 5 --out realism_all
    date; echo REALISM DONE
  fi
done
for m in cut_physics_nostructure cut_clean ddpm poisson realbg ddpm_partial0.3 ddpm_partial0.5; do
  run $cr evaluate picking --train "$m=train_$m" --test test_realbg_heldout --particle-diameter 110 --steps 100 --repeats 3 --out "picking/$m"
done
finish; date; echo MICRO2 DONE
