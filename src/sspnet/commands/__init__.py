"""CLI subcommands, one module each; `sspnet.cli` discovers every module here that defines `register`."""
