#!/usr/bin/env bash
# Subset of tools/micrograph_experiment.sh (same commands): scenes, default translator, four baselines,
# realism, picking for gaussian / coloured / cut_physics at 100 steps.
set -euo pipefail
here=/tmp/repro_src
real=$here/cryorefine/data/demo/micrograph_real.mrc
trpv1=$here/cryorefine/data/demo/trpv1/consensus_map.mrc
cr="/work/main/.venv/bin/python -m cryorefine.cli"
export PYTHONPATH=$here OMP_NUM_THREADS=1
holdout=0.5
mkdir -p /tmp/repro/micro && cd /tmp/repro/micro
scene="--species $trpv1:400:trpv1 --size 682 --pixel-size 4 --min-separation 90 --ice-gradient 0.05
       --ice-roughness 0.05 --defocus 2.0 2.7 --bfactor 200 --dose 40"
date; $cr scene $scene --n-micrographs 4 --seed 1 --out scenes_train
$cr scene $scene --n-micrographs 2 --seed 2 --out scenes_test
train="--scenes scenes_train --real $real --holdout $holdout --tile 64"
date; $cr translate train $train --steps 1500 --batch-size 8 --out cut_physics
date
for split in train test; do
  $cr translate apply --model cut_physics --scenes "scenes_$split" --out "${split}_cut_physics"
  for baseline in gaussian poisson; do
    $cr translate apply --baseline $baseline --scenes "scenes_$split" --out "${split}_$baseline"
  done
  $cr translate apply --baseline coloured --real "$real" --holdout $holdout --scenes "scenes_$split" --out "${split}_coloured"
  $cr translate apply --baseline real-background --background-strip training --real "$real" --holdout $holdout --scenes "scenes_$split" --out "${split}_realbg"
done
$cr translate apply --baseline real-background --real "$real" --holdout $holdout --scenes scenes_test --out test_realbg_heldout
date
methods="gaussian poisson coloured realbg cut_physics"
$cr evaluate micrographs --sets $(for m in $methods; do echo "$m=test_$m"; done) \
    --real "$real" --holdout $holdout --scenes scenes_test --tile 32 --classifier-repeats 5 --out realism
date
for m in gaussian coloured cut_physics; do
  $cr evaluate picking --train "$m=train_$m" --test test_realbg_heldout --particle-diameter 110 --steps 100 --repeats 3 --out "picking/$m"
done
date; echo MICRO DONE
