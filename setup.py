from pathlib import Path

from setuptools import find_namespace_packages, setup

here = Path(__file__).parent

setup(
    name="cryorefine",
    version="0.1.0",
    description="Make simulated cryo-EM particle images look like real ones (engine, Scipion plugin, RELION External job)",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    python_requires=">=3.9",
    # Namespace packages, so the bundled data folders are packages too (setuptools warns otherwise).
    packages=find_namespace_packages(include=["cryorefine", "cryorefine.*", "cryorefine_scipion", "cryorefine_scipion.*",
                                              "relion_external", "relion_external.*"], exclude=["*.__pycache__"]),
    package_data={
        "cryorefine.data.demo": ["*"],
        "cryorefine.data.demo.trpv1": ["*"],
        "cryorefine.data.demo.models": ["*"],
        "cryorefine_scipion": ["protocols.conf"],
        "relion_external": ["cryorefine_relion.sh"],
    },
    include_package_data=True,
    # Ranges compatible with Scipion's own pins (numpy 1.26, scipy <= 1.10, mrcfile <= 1.4.3),
    # so the engine and the plugin can share one environment.
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24,<2.3",
        "scipy>=1.10",
        "pandas>=1.5,<3",
        "mrcfile>=1.4",
        "starfile>=0.5",
        "emtable>=0.0.14",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "torch-ctf>=0.6,<0.7",
        "torch-fourier-slice>=0.6,<0.7",
    ],
    extras_require={
        "tests": ["pytest>=7", "hypothesis>=6"],
        "scipion": ["scipion-pyworkflow>=3.11", "scipion-em>=3.11", "scipion-em-relion>=5"],
        # Atomic models (PDB/mmCIF) as species in `cryorefine scene`.
        "scene": ["gemmi>=0.6"],
        # `cryorefine bench simulate` times cryoJAX on the same particles when importable. Its jax needs
        # numpy >= 2 (2.0-2.2 within our pin), so not beside the scipion extra's numpy 1.26.
        "bench": ["cryojax==0.6.*"],
        # tests/test_interop.py: cryoDRGN's STAR parsers read our outputs. Installed in full this pulls Jupyter,
        # UMAP and more; `make test` installs it without its requirements, plus the few its parsers import.
        "interop": ['cryodrgn>=4.3,<4.4; python_version >= "3.10"'],
    },
    entry_points={
        "console_scripts": [
            "cryorefine=cryorefine.cli:run",
            "cryorefine-relion-external=relion_external.wrapper:main",
        ],
        "pyworkflow.plugin": ["cryorefine_scipion = cryorefine_scipion"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
