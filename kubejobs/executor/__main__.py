"""`python -m kubejobs.executor`: the executor command without the rest of the CLI."""

from kubejobs.executor.command import executor_command

if __name__ == "__main__":
    executor_command(prog_name="kubejobs executor")
