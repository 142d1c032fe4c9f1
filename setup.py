"""Build and install hpcpipe; the Pythran kernels are compiled here.

The kernels in ``hpcpipe/kernels/pythran/*.py`` are compiled into extension modules
``hpcpipe.kernels._<name>``. When Pythran or a C++ compiler is missing, or a kernel fails to
compile, the install goes on with a warning and hpcpipe uses the NumPy references.

Environment variables: ``HPCPIPE_NO_PYTHRAN=1`` skips the kernels, ``HPCPIPE_NATIVE=1`` adds
``-march=native`` (binaries then only run on CPUs like this one) and ``HPCPIPE_OPENMP=1``
compiles the OpenMP pragmas in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
kernel_sources = sorted((here / "hpcpipe" / "kernels" / "pythran").glob("[a-z]*.py"))

ext_modules = []
cmdclass = {}
if os.environ.get("HPCPIPE_NO_PYTHRAN") != "1":
    try:
        from pythran.dist import PythranBuildExt, PythranExtension
    except ImportError:
        print("hpcpipe: pythran is not installed; using the NumPy kernels", file=sys.stderr)
    else:
        # -g0: no debug information (Python's default -g makes Pythran's C++ builds several
        # times bigger and slower)
        compile_args = ["-O3", "-DNDEBUG", "-g0", "-w"]
        link_args: list[str] = []
        if os.environ.get("HPCPIPE_NATIVE") == "1":
            compile_args.append("-march=native")
        if os.environ.get("HPCPIPE_OPENMP") == "1":
            compile_args.append("-fopenmp")
            link_args.append("-fopenmp")
        for source in kernel_sources:
            ext_modules.append(PythranExtension(
                f"hpcpipe.kernels._{source.stem}",
                sources=[str(source.relative_to(here))],
                extra_compile_args=compile_args,
                extra_link_args=link_args,
            ))

        class TolerantPythranBuildExt(PythranBuildExt):
            """Compile each kernel; one that fails leaves its NumPy reference in use."""

            def build_extension(self, ext):  # type: ignore[no-untyped-def]
                try:
                    super().build_extension(ext)
                except Exception as exc:  # noqa: BLE001 - any compiler failure
                    print(f"hpcpipe: warning: kernel {ext.name} did not compile ({exc}); "
                          "its NumPy reference will be used", file=sys.stderr)

        cmdclass["build_ext"] = TolerantPythranBuildExt

setup(
    name="hpcpipe",
    version="0.1.0",
    description="Survey image processing from raw pixels to a sky catalog on HPC clusters",
    python_requires=">=3.10",
    packages=find_packages(include=["hpcpipe", "hpcpipe.*"]),
    package_data={"hpcpipe": ["py.typed"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    install_requires=[
        "numpy>=1.26",
        "mpi4py>=4.0",
        "astropy>=6.0",
        "scipy>=1.11",
        "h5py>=3.10",
        "psutil>=5.9",
        "pyyaml>=6.0",
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    entry_points={"console_scripts": ["hpcpipe = hpcpipe.cli:main"]},
    zip_safe=False,
)
