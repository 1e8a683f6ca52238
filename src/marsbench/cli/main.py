"""Entry point of the `marsbench` command. Each command group lives in its own module.

Errors: whatever goes wrong reaches the user as ONE line on stderr,
``error: <what> (<where>[ row N]): <value>; <fix>``, never a traceback unless ``--debug`` or
``MARSBENCH_DEBUG=1`` (then the traceback comes first, the line last). The handler lives in
`MarsbenchGroup`, the class of the root command, so ``marsbench``, ``python -m marsbench`` and
``typer.testing.CliRunner().invoke(app, ...)`` all behave the same.

Exit codes:

* 0 -- done;
* 1 -- the work ran and something in it failed: a run recorded as failed, problems found by
  ``datasets check``, VLM requests that failed after retries, or an internal error (a bug);
* 2 -- bad input or environment, refused before anything ran (a usage error, a typo'd name, a
  missing or unreadable file, an unusable store or device, ...);
* 130 -- interrupted (Ctrl-C).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException

from ..errors import MarsbenchError, format_error
from .common import echo_error
from .datasets import app as datasets_app
from .demo import EPILOG as DEMO_EPILOG, demo_command
from .compare import EPILOG as COMPARE_EPILOG, compare_command
from .env import EPILOG as ENV_EPILOG, env_command
from .models import app as models_app
from .paper import EPILOG as PAPER_EPILOG, paper_command
from .pretrain import EPILOG as PRETRAIN_EPILOG, pretrain_command
from .report import EPILOG as REPORT_EPILOG, report_command
from .run import EPILOG as RUN_EPILOG, run_command
from .sweep import EPILOG as SWEEP_EPILOG, sweep_command
from .vlm import EPILOG as VLM_EPILOG, vlm_command

DEBUG_ENV = "MARSBENCH_DEBUG"
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def debug_enabled(ctx: typer.Context | None = None) -> bool:
    """``--debug`` on the command line (root context) or ``MARSBENCH_DEBUG`` set to 1/true/yes."""
    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


# -- one line for every exception -----------------------------------------------------------------

_OS_FIXES = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "it exists already: remove it or choose another path",
    errno.ENOSPC: "free some disk space or choose a folder on another disk",
    errno.EDQUOT: "free some disk space (quota exceeded) or choose another folder",
    errno.EROFS: "the filesystem is read-only: choose a writable folder",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def describe_error(exc: BaseException) -> tuple[str, int]:
    """(one line of text, exit code) for an exception that reached the top of a command."""
    if isinstance(exc, MarsbenchError):
        return str(exc), int(getattr(exc, "exit_code", EXIT_BAD_INPUT))
    if isinstance(exc, ClickException):
        return exc.format_message(), exc.exit_code
    if isinstance(exc, sqlite3.Error):
        return format_error("results store error", value=str(exc),
                            fix="check the --store file, or choose another one"), EXIT_BAD_INPUT
    if isinstance(exc, OSError):
        return _os_error(exc), EXIT_BAD_INPUT
    if isinstance(exc, UnicodeDecodeError):
        return format_error("a file is not text in UTF-8",
                            value=f"{exc.reason} at byte {exc.start}",
                            fix="check that the file given is the CSV, YAML or JSON file meant"
                            ), EXIT_BAD_INPUT
    if isinstance(exc, json.JSONDecodeError):
        return format_error("not valid JSON", where=f"line {exc.lineno} column {exc.colno}",
                            value=exc.msg, fix="fix the JSON file or give another one"
                            ), EXIT_BAD_INPUT
    yaml_error = _yaml_error(exc)
    if yaml_error:
        return yaml_error, EXIT_BAD_INPUT
    if isinstance(exc, (ValueError, LookupError, TypeError, RuntimeError)) and \
            _raised_by_marsbench(exc):
        return _message(exc), EXIT_BAD_INPUT
    return (f"internal error: {type(exc).__name__}: {_message(exc)}; rerun with --debug for "
            "the traceback and report it", EXIT_FAILED)


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]  # str(KeyError) would quote it
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_error(exc: OSError) -> str:
    what = (exc.strerror or _message(exc)).rstrip(".")
    what = what[:1].lower() + what[1:]
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None) or None
    fix = _OS_FIXES.get(exc.errno or -1)
    if fix is None and isinstance(exc, (ConnectionError, TimeoutError)):
        fix = "check the network connection and try again"
    return format_error(what, where=where, fix=fix or "check the path and try again")


def _yaml_error(exc: BaseException) -> str | None:
    try:
        import yaml
    except ImportError:  # pragma: no cover - yaml is a dependency
        return None
    if not isinstance(exc, yaml.YAMLError):
        return None
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.name} line {mark.line + 1}" if mark is not None else None
    problem = getattr(exc, "problem", None) or _message(exc)
    return format_error("not valid YAML", where=where, value=problem,
                        fix="fix the YAML file or give another one")


def _raised_by_marsbench(exc: BaseException) -> bool:
    """Whether the innermost frame of the traceback is marsbench code (so the message was
    written for a user), not a library that marsbench called."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return False
    try:
        return Path(last.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        return False


class MarsbenchGroup(TyperGroup):
    """The root command: runs the command asked, and turns anything raised into one line."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except KeyboardInterrupt:
            if debug_enabled(ctx):
                traceback.print_exc(file=sys.stderr)
            echo_error("interrupted (Ctrl-C); finished work is kept, run the same command "
                       "again to continue")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - the one place that reports every failure
            if debug_enabled(ctx):
                traceback.print_exc(file=sys.stderr)
            text, code = describe_error(exc)
            echo_error(text)
            raise typer.Exit(code) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):  # type: ignore[override]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:  # usage errors: one line too
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help
                echo_error(_usage_line(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            echo_error("aborted")
            sys.exit(EXIT_FAILED)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_line(exc: ClickException) -> str:
    text = " ".join(exc.format_message().split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return text
    return format_error(text, where=ctx.command_path,
                        fix=f"see `{ctx.command_path} --help`")


# -- the app --------------------------------------------------------------------------------------

app = typer.Typer(
    name="marsbench",
    cls=MarsbenchGroup,
    help="Mars-Bench: evaluate vision foundation models on Mars science tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"marsbench {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option(
        "--debug", help=f"show the traceback of an error (also: {DEBUG_ENV}=1)")] = False,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="print `marsbench <version>` and exit")] = False,
) -> None:
    """Mars-Bench: evaluate vision foundation models on Mars science tasks.

    Bad input is one line on stderr, `error: <what> (<where>): <value>; <fix>`, and exit code
    2; a failed run or check exits 1; Ctrl-C exits 130."""


app.command("demo", epilog=DEMO_EPILOG)(demo_command)
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.command("run", epilog=RUN_EPILOG)(run_command)
app.command("sweep", epilog=SWEEP_EPILOG)(sweep_command)
app.command("pretrain", epilog=PRETRAIN_EPILOG)(pretrain_command)
app.command("report", epilog=REPORT_EPILOG)(report_command)
app.command("vlm", epilog=VLM_EPILOG)(vlm_command)
app.command("paper", epilog=PAPER_EPILOG)(paper_command)
app.command("env", epilog=ENV_EPILOG)(env_command)
app.command("compare", epilog=COMPARE_EPILOG)(compare_command)


def main() -> None:
    """The console script: ``marsbench ...`` (the same as calling `app`)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
