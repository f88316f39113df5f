"""cryorefine: make simulated cryo-EM particles look like real ones.

The engine is importable without Scipion or RELION; the `cryorefine` command line
(`cryorefine.cli`) is what both adapters call.
"""

__version__ = "0.1.0"
