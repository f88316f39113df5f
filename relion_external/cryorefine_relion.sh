#!/bin/sh
# RELION External-job launcher for cryorefine: give this file's absolute path as "External executable".
#
# RELION runs it with whatever environment the GUI or the queue has, so it finds its own Python:
#   1. $CRYOREFINE_PYTHON, when set (a Python with cryorefine installed);
#   2. else the interpreter recorded at install time in the `cryorefine-relion-external` console script
#      found on PATH (its #! line);
#   3. else the `python` of the environment this file is installed in (<prefix>/lib/pythonX.Y/site-packages/
#      relion_external/ -> <prefix>/bin/python).
# If none works it still ends the job with RELION_JOB_EXIT_FAILURE and says why in run.err.
# Site set-up (module load, CUDA_VISIBLE_DEVICES, ...) can go in a copy of this file, above the last line.

here=$(cd "$(dirname "$0")" && pwd)

find_python() {
    if [ -n "${CRYOREFINE_PYTHON:-}" ]; then
        echo "$CRYOREFINE_PYTHON"
        return
    fi
    script=$(command -v cryorefine-relion-external 2>/dev/null)
    if [ -n "$script" ]; then
        interpreter=$(head -n 1 "$script" | sed -n 's/^#![[:space:]]*//p')
        if [ -x "$interpreter" ]; then
            echo "$interpreter"
            return
        fi
    fi
    prefix_python="$here/../../../../bin/python"
    if [ -x "$prefix_python" ]; then
        echo "$prefix_python"
    fi
}

fail() {
    echo "cryorefine_relion.sh: error: $1" >&2
    job_dir=""
    while [ $# -gt 0 ]; do
        [ "$1" = "--o" ] && job_dir="$2"
        shift
    done
    if [ -n "$job_dir" ] && [ -d "$job_dir" ]; then
        touch "$job_dir/RELION_JOB_EXIT_FAILURE"
    fi
    exit 1
}

python=$(find_python)
[ -n "$python" ] || fail "no Python with cryorefine found: set CRYOREFINE_PYTHON to one (see docs/relion.md)" "$@"
"$python" -c "import relion_external.wrapper" 2>/dev/null \
    || fail "$python cannot import cryorefine's relion_external: set CRYOREFINE_PYTHON to the right Python" "$@"
exec "$python" -m relion_external.wrapper "$@"
