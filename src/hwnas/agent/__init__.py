"""hwnas for agents: an MCP server over experiments, jobs and their output folders (``hwnas mcp``).

Contract (details and a session transcript in ``docs/agent.md``):

* :mod:`hwnas.agent.server` builds the server with the official ``mcp`` Python SDK (``pip install
  'hwnas[agent]'``); ``hwnas mcp --root DIR`` serves it over stdio, ``--http PORT`` over streamable HTTP on
  127.0.0.1 only.
* :mod:`hwnas.agent.files` confines every path to the root (absolute paths elsewhere, ``..`` and symlinks out
  are refused, naming the path) and reads artefacts as capped text only (never a pickle, a database or an image).
* :mod:`hwnas.agent.experiments` validates and writes experiment files (errors with file, line and key path).
* :mod:`hwnas.agent.jobs` runs ``hwnas run`` (the whole flow or one stage) as a detached background job whose
  state lives on disk under ``<root>/.hwnas-mcp/jobs/<id>/``: jobs outlive a client disconnect and a server
  restart. Only that fixed subcommand runs, with validated arguments; nothing runs a user-given command.

This package imports nothing heavy: the SDK and hwnas' own modules load when used.
"""

__all__: list[str] = []
