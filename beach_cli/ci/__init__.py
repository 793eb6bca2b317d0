"""Sharing a CI job's shell: what the GitHub Action (action.yml at the repository's root) runs,
as `python -m beach_cli.ci`. It starts a headless `beach host` as a child process, tells the job
how to join once (an annotation, the step summary, step outputs) and turns beach's exit code
into the step's. It imports nothing of the host: the host is a program it runs.

  workflow.py  GitHub's log commands and step files, written so no value can forge another
  report.py    what the job is told: the notice, the summary, the outputs, how it ended
  share.py     the `beach host` child: start, wait for its join information, relay, end
  command.py   the command line the action calls, and its checks of the action's inputs
"""
