"""Build script of the C backend's extension, ``fastnn._backends.c._fastnn_c``.

cffi in out-of-line API mode: ``kernels/fastnn.h`` is both the ``cdef`` text
and the header the C sources include, so Python and C cannot disagree about
a signature.  ``setup.py`` hands ``ffibuilder`` to setuptools through
``cffi_modules``; for development, ``python setup.py build_ext --inplace``
(or ``python fastnn/_backends/c/_build.py``) builds it beside this file.

Flags (kernels/README.md says why each): ``-O3 -std=gnu11
-ffp-contract=off -fno-math-errno -fno-trapping-math``, ``-fopenmp`` when
the compiler has OpenMP (else ``-fopenmp-simd``, single-threaded), never
``-march=native`` nor ``-ffast-math``: one build runs on any x86-64 CPU and
picks its AVX-512, AVX2 or baseline variant at load (kernels/dispatch.c).
``FASTNN_C_SANITIZE=1`` builds with ``-fsanitize=address,undefined`` for
the sanitizer run of ``.ci/run``.
"""

import os
import shlex
import sys
import tempfile
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[3]
KERNELS = ROOT / "kernels"
SOURCES = ["dispatch.c", "variant_avx512.c", "variant_avx2.c", "variant_baseline.c"]
HEADERS = ["fastnn.h", "internal.h", "template.h", "variant.h", "batchnorm.c", "softmax.c",
           "linear.c", "optim.c"]
MODULE = "fastnn._backends.c._fastnn_c"

BASE_FLAGS = ["-O3", "-std=gnu11", "-ffp-contract=off", "-fno-math-errno",
              "-fno-trapping-math", "-Wall", "-Wno-unused-function"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                  "-fno-sanitize-recover=undefined", "-g"]


def _compiler_accepts(flags):
    """Whether the C compiler setuptools would use compiles and links an
    OpenMP program with ``flags``."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder, "probe.c")
        source.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            objects = compiler.compile([str(source)], output_dir=folder, extra_postargs=flags)
            compiler.link_executable(objects, str(Path(folder, "probe")), extra_postargs=flags)
        except Exception:
            return False
    return True


def flags():
    """(compile flags, link flags) for this build."""
    compile_flags = list(BASE_FLAGS)
    link_flags = []
    if os.environ.get("FASTNN_C_OPENMP", "1") != "0" and _compiler_accepts(["-fopenmp"]):
        compile_flags.append("-fopenmp")
        link_flags.append("-fopenmp")
    else:
        compile_flags.append("-fopenmp-simd")
    if os.environ.get("FASTNN_C_SANITIZE") == "1":
        compile_flags = [f for f in compile_flags if f != "-O3"] + ["-O1"] + SANITIZE_FLAGS
        link_flags += SANITIZE_FLAGS
    compile_flags += shlex.split(os.environ.get("FASTNN_C_CFLAGS", ""))
    return compile_flags, link_flags


def _make():
    compile_flags, link_flags = flags()
    text = " ".join(compile_flags)
    builder = FFI()
    builder.cdef((KERNELS / "fastnn.h").read_text())
    builder.set_source(
        MODULE,
        '#include <stdint.h>\n#include "fastnn.h"\n'
        f"const char fnn_build_flags_text[] = {_c_string(text)};\n",
        # relative to the project when building from it, as setuptools prefers
        sources=[str(_path(KERNELS / name)) for name in SOURCES],
        include_dirs=[str(KERNELS)],
        depends=[str(KERNELS / name) for name in HEADERS],
        extra_compile_args=compile_flags,
        extra_link_args=link_flags,
    )
    return builder


def _path(path):
    return path.relative_to(ROOT) if Path.cwd().resolve() == ROOT else path


def _c_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


ffibuilder = _make()

if __name__ == "__main__":
    os.chdir(ROOT)
    ffibuilder.compile(tmpdir=str(ROOT), verbose=True)
    sys.exit(0)
