"""nasdun: neural-architecture search over unrolled sparse-recovery networks.

``import nasdun`` stays light: torch, Ray, Optuna and seaborn load inside the modules and
commands that need them.
"""

__version__ = "0.1.0"
