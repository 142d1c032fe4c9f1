"""Build and install hpcpipe; the Pythran kernels are compiled here.

The kernels in ``hpcpipe/kernels/pythran/*.py`` are compiled into extension modules
``hpcpipe.kernels._<name>``. When Pythran or a C++ compiler is missing, or a kernel fails to
compile, the install goes on with a warning and hpcpipe uses the NumPy references.

Environment variables: ``HPCPIPE_NO_PYTHRAN=1`` skips the kernels, ``HPCPIPE_NATIVE=1`` adds
``-march=native`` (binaries then only run on CPUs like this one), ``HPCPIPE_OPENMP=1``
compiles the OpenMP pragmas in, and ``HPCPIPE_KERNEL_CACHE`` places (or, ``off``, disables)
the cache of compiled kernels.
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
        # flags of one kernel only. isr: -fno-trapping-math lets GCC vectorise the selects
        # around its divisions (the values are IEEE ones all the same; only the floating-
        # point exception flags, which nothing reads, may differ)
        kernel_args = {"isr": ["-fno-trapping-math"]}
        for source in kernel_sources:
            ext_modules.append(PythranExtension(
                f"hpcpipe.kernels._{source.stem}",
                sources=[str(source.relative_to(here))],
                extra_compile_args=compile_args + kernel_args.get(source.stem, []),
                extra_link_args=link_args,
            ))

        def _cache_key(ext) -> str:  # type: ignore[no-untyped-def]
            """What a compiled kernel depends on: its source, the flags, Pythran, Python."""
            import hashlib
            import platform

            import pythran

            digest = hashlib.sha256()
            for source in ext.sources:
                digest.update((here / source).read_bytes())
            args = compile_args + kernel_args.get(ext.name.rsplit("._", 1)[-1], [])
            digest.update(repr((args, link_args, pythran.__version__, sys.version,
                                platform.machine(), os.environ.get("CXX", ""))).encode())
            return digest.hexdigest()[:24]

        class TolerantPythranBuildExt(PythranBuildExt):
            """Compile each kernel; one that fails leaves its NumPy reference in use.

            Compiled kernels are kept in a cache (``HPCPIPE_KERNEL_CACHE``, default
            ``~/.cache/hpcpipe/kernels``; ``HPCPIPE_KERNEL_CACHE=off`` disables it) keyed by a
            hash of the kernel's source, the flags and the Pythran and Python versions, so that
            a new clone (a CI run) does not recompile unchanged kernels.
            """

            def build_extensions(self):  # type: ignore[no-untyped-def]
                """Compile the kernels in parallel, one process per core.

                Pythran changes the compiler object while it builds a module, so the kernels
                are built in forked processes rather than threads (a forked process runs its
                target without pickling it); the largest sources start first.
                ``HPCPIPE_BUILD_JOBS`` sets the number of processes (default: the number of
                cores; 1 builds them one after another in this process).
                """
                import multiprocessing
                from multiprocessing.connection import wait

                self.check_extensions_list(self.extensions)
                jobs = int(os.environ.get("HPCPIPE_BUILD_JOBS", "0") or 0) or os.cpu_count() or 1
                pending = sorted(self.extensions, key=lambda e: -sum(
                    (here / s).stat().st_size for s in e._sources))
                if jobs <= 1 or len(pending) <= 1 or not hasattr(os, "fork"):
                    for ext in pending:
                        self.build_extension(ext)
                    return
                context = multiprocessing.get_context("fork")
                running: dict[int, object] = {}
                while pending or running:
                    while pending and len(running) < jobs:
                        process = context.Process(target=self.build_extension,
                                                  args=(pending.pop(0),))
                        process.start()
                        running[process.sentinel] = process
                    for sentinel in wait(list(running)):
                        running.pop(sentinel).join()  # type: ignore[attr-defined]

            def build_extension(self, ext):  # type: ignore[no-untyped-def]
                import shutil

                target = Path(self.get_ext_fullpath(ext.name))
                setting = os.environ.get("HPCPIPE_KERNEL_CACHE", "")
                cache = None
                if setting != "off":
                    root = Path(setting) if setting else Path.home() / ".cache/hpcpipe/kernels"
                    cache = root / f"{ext.name.rsplit('.', 1)[-1]}-{_cache_key(ext)}{target.suffix}"
                    if cache.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(cache, target)
                        print(f"hpcpipe: kernel {ext.name} from the cache ({cache.name})")
                        return
                try:
                    super().build_extension(ext)
                except Exception as exc:  # noqa: BLE001 - any compiler failure
                    # a module left from an earlier source would otherwise be loaded
                    target.unlink(missing_ok=True)
                    print(f"hpcpipe: warning: kernel {ext.name} did not compile ({exc}); "
                          "its NumPy reference will be used", file=sys.stderr)
                    return
                if cache is not None and target.exists():
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
                    shutil.copyfile(target, partial)
                    partial.replace(cache)

        cmdclass["build_ext"] = TolerantPythranBuildExt

setup(
    name="hpcpipe",
    version="0.1.0",
    description="Survey image processing from raw pixels to a sky catalog on HPC clusters",
    python_requires=">=3.10",
    packages=find_packages(include=["hpcpipe", "hpcpipe.*"]),
    package_data={"hpcpipe": ["py.typed"],
                  # the shipped camera files (simcam, generic, mosaic4)
                  "hpcpipe.obs": ["cameras/*.yaml"],
                  # the script of report.html's interactive timeline
                  "hpcpipe.drivers": ["timeline.js"]},
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
        "fastavro>=1.9",
        "lsst-alert-packet>=30.2026.2700,<31",
        "lsst-sdm-schemas>=30.2026.4300,<31",
        "sqlalchemy>=2.0",
        "psycopg[binary]>=3.1",
        "hpgeom>=1.3",
        "confluent-kafka>=2.3",
        "pyarrow>=14.0",
        "hats>=0.11",
        "hats-import>=0.11",
        "lsdb>=0.11",
        "duckdb>=1.3",
        "queryparser-python3>=0.7",
        "starlette>=0.37",
        "uvicorn>=0.30",
        "python-multipart>=0.0.9",
        "dask>=2024.1",
        "distributed>=2024.1",
        "dask-mpi>=2022.4",
    ],
    entry_points={
        "console_scripts": ["hpcpipe = hpcpipe.cli:main"],
        # tasks `hpcpipe run NAME` finds (the coadd steps run through `hpcpipe drp --steps`)
        "hpcpipe.tasks": [
            "processCcd = hpcpipe.pipe.process_ccd:ProcessCcdTask",
            "isr = hpcpipe.pipe.isr:IsrTask",
            "characterizeImage = hpcpipe.pipe.characterize:CharacterizeImageTask",
            "calibrate = hpcpipe.pipe.calibrate:CalibrateTask",
            "imageDifference = hpcpipe.diffim.image_difference:ImageDifferenceTask",
        ],
        # cameras by name: camera files (hpcpipe.obs.registry; the butler opens repositories
        # whose _mapper names them), registered as other packages register theirs
        "hpcpipe.cameras": [
            "simcam = hpcpipe.obs.cameras:SIMCAM",
            "generic = hpcpipe.obs.cameras:GENERIC",
            "mosaic4 = hpcpipe.obs.cameras:MOSAIC4",
        ],
        # productions by name (hpcpipe.drivers.production.find_production); `standard` is
        # what `hpcpipe drp` runs for a camera without one of its own
        "hpcpipe.productions": [
            "standard = hpcpipe.drivers.standard_production:production",
        ],
    },
    zip_safe=False,
)
