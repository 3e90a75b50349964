"""The ``coach`` command line: click commands only. Each command parses its options, builds one
frozen :class:`~pipeline.config.Config` (or the settings it needs), calls the library and
prints: data on stdout, progress and diagnostics on stderr. Exit codes: 0 success, 1 a domain
error, 2 bad usage, 3 done but this run quarantined input (``ingest``, ``learn``).
"""

from pipeline.cli.commands import main
from pipeline.cli.pull import pull_group, push_prompts_group
from pipeline.cli.pull_langfuse import pull_langfuse_command
from pipeline.cli.pull_langsmith import pull_langsmith_command

# commands.py is full (a module stays under 500 lines): the groups of later modules are
# registered here, once the group exists.
main.add_command(pull_group)
main.add_command(push_prompts_group)
pull_group.add_command(pull_langfuse_command)
pull_group.add_command(pull_langsmith_command)

__all__ = ["main"]
