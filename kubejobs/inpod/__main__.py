"""`python -m kubejobs.inpod stage-in|ship-logs`: the in-pod commands without the full CLI."""

from __future__ import annotations

import sys

import click

from kubejobs.errors import KubejobsError, SettingsError
from kubejobs.inpod.command import inpod


def main() -> None:
    try:
        code = inpod.main(standalone_mode=False, prog_name="kubejobs")
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(2)
    except SettingsError as err:
        click.echo(f"settings error: {err}", err=True)
        sys.exit(2)
    except KubejobsError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
