"""The commands of ``aflqueue`` (:mod:`aflqueue.cli`), one module per concern: the queueing
commands, the training commands, and the commands on a researcher's own run folders. Each module's
``add_<command>_parser`` adds one subcommand whose ``func`` runs it."""
