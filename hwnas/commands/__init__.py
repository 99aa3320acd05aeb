"""One module per ``hwnas`` sub-command: ``add_parser(commands)`` declares it, ``run(args)`` carries it out."""
