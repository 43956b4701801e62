"""Package layout; everything else is in setup.cfg.

Code packages are found automatically, so a new subpackage is never missing from the
wheel. The space files (``search_spaces/``) and recipes (``supernets/``) stay at the top
of the repository, where users read them, and are mapped into the package as data.
"""

from setuptools import find_packages, setup

DATA_PACKAGES = {"vitnas.search_spaces": "search_spaces", "vitnas.recipes": "supernets"}

setup(
    packages=find_packages(include=["vitnas", "vitnas.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
)
