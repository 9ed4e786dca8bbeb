"""Click subcommands, one module per job; imported lazily by agd_deploy.cli."""
