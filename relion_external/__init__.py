"""RELION External-job adapter: runs the `cryorefine` command line inside a RELION project.

RELION calls the executable `cryorefine_relion.sh` in this folder (or the `cryorefine-relion-external`
console script); see docs/relion.md.
"""
