"""The one compiled part of mercure-router: the receiver's dataset scanner
(src/mercure/dicomnet/_scanner.c). Everything else is declared in pyproject.toml.

Optional: without a C compiler the install goes on and the same walk in Python does the work
(mercure.dicomnet.scanner, docs/performance.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mercure.dicomnet._scanner",
            ["src/mercure/dicomnet/_scanner.c"],
            optional=True,
            extra_compile_args=["-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        )
    ]
)
