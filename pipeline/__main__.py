"""``python -m pipeline`` runs the ``coach`` command line."""

from pipeline.cli import main

main(prog_name="coach")
