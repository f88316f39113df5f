"""One module per `cryorefine` subcommand (see `cryorefine.cli.COMMANDS`)."""
