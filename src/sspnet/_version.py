"""The package version, stated once: pyproject.toml reads it (`[tool.setuptools.dynamic]`), `sspnet.__version__`,
`sspnet --version` and every result's provenance (`sspnet.io.files.provenance`) import it from here."""

__version__ = "0.1.0"
