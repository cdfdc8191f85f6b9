"""The demo's last steps, through the ``incsync`` command, as a person runs it.

The demo writes a config file naming its four sources and its SQLite database, then runs the
command in processes of its own (``python -m incsync``, the same command as the ``incsync``
script): a sync of Initech's portal, whose app token was revoked, and the status of every source,
as a table, the HTML page and a monitoring check. It shows what the command printed, and its
checks read only that and the exit codes.

The command runs on the real clock, not the demo's. The demo clock ends behind the real one (a
check says so), so every time the steps wrote reads as past.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import attrs

from incsync._demo._steps import ACME_HUBSPOT, ACME_QUICKBOOKS, GLOBEX_QUICKBOOKS, Steps
from incsync._demo._world import DEAL_PROPERTIES
from incsync.status import StatusColor
from incsync.testing.fakes._serve import hubspot_settings, quickbooks_settings, source_table
from incsync.timestamps import utc_now

__all__ = ["INITECH_HUBSPOT", "CommandSteps", "Ran", "config_text", "run_incsync"]

INITECH_HUBSPOT = "initech/hubspot-deals"
"""The source only the command syncs: a portal whose app token was revoked."""

_INITECH_TOKEN = "INITECH_HUBSPOT_TOKEN"


def config_text(steps: Steps, database: Path, urls: tuple[str, str, str, str]) -> str:
    """Return the config file of the demo's four sources, in key order, on its database.

    Args:
        steps: The demo's world (fakes and scale).
        database: The SQLite file; the config file is written beside it.
        urls: Where the fakes listen, in :meth:`~._world.Fakes.served`'s order.

    Returns:
        TOML naming every credential by an environment variable, never by value.
    """
    quickbooks, hubspot, globex, initech = urls
    fakes, page_size = steps.fakes, {"page_size": steps.scale.page_size}
    # Each source mapped with its connector's preset, as the demo's own store maps it.
    deals = {"properties": list(DEAL_PROPERTIES), "mapping": "hubspot/deals"}
    invoices = {**page_size, "mapping": "quickbooks/Invoice"}
    sources = {
        ACME_HUBSPOT: {**hubspot_settings(hubspot, "ACME_HUBSPOT_TOKEN"), **deals},
        ACME_QUICKBOOKS: {
            **quickbooks_settings(fakes.quickbooks, quickbooks, "ACME_QUICKBOOKS"),
            **invoices,
        },
        GLOBEX_QUICKBOOKS: {
            **quickbooks_settings(fakes.globex, globex, "GLOBEX_QUICKBOOKS"),
            **invoices,
        },
        INITECH_HUBSPOT: {**hubspot_settings(initech, _INITECH_TOKEN), **deals},
    }
    lines = [
        "# The demo's sources and store, for the incsync command. The fake servers stopped",
        "# with the demo: incsync status, rejected, reset... work on the store; incsync run",
        "# would find no server.",
        "[store]",
        f"path = {json.dumps(database.name)}",
    ]
    for key, settings in sources.items():
        lines += ["", *source_table(key, settings)]
    return "\n".join(lines) + "\n"


@attrs.frozen
class Ran:
    """What one run of the command printed, and how it exited.

    Args:
        args: Its arguments, after ``incsync``.
        code: Its exit code.
        out: Its standard output.
        err: Its standard error.
    """

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def shown(self) -> str:
        """The command line as a person types it."""
        return "$ incsync " + " ".join(self.args)


def run_incsync(*args: str, environment: Mapping[str, str] | None = None) -> Ran:
    """Run the ``incsync`` command in a process of its own, as the demo's user could.

    Args:
        args: Its arguments.
        environment: Variables added to this process's environment (a source's secret).
    """
    env = {k: v for k, v in os.environ.items() if k != "INCSYNC_CONFIG"}
    env.update(environment or {})
    done = subprocess.run(
        [sys.executable, "-m", "incsync", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
        check=False,
    )
    return Ran(tuple(args), done.returncode, done.stdout, done.stderr)


class CommandSteps:
    """Steps 9 and 10: the ``incsync`` command on the demo's store.

    Args:
        steps: The demo so far: its console, checks, fakes and credentials.
        config: The config file (written by :meth:`write_config`), beside the database.
        database: The SQLite file the steps filled.
        page: Where the HTML status page goes.
    """

    def __init__(self, steps: Steps, config: Path, database: Path, page: Path) -> None:
        self.steps = steps
        self.config = config
        self.database = database
        self.page = page

    def write_config(self, urls: tuple[str, str, str, str]) -> None:
        """Write the config file of the demo's sources."""
        self.config.write_text(config_text(self.steps, self.database, urls), encoding="utf-8")

    def _run(self, *args: str, environment: Mapping[str, str] | None = None) -> Ran:
        """Run the command with the config file, and show its line and what it printed."""
        ran = run_incsync(*args, "--config", str(self.config), environment=environment)
        console = self.steps.console
        console.say()
        console.say(ran.shown)
        for text in (ran.out, ran.err):
            if text:
                console.say(text.rstrip("\n"))
        return ran

    def revoked_token(self) -> None:
        """Step 9: the command syncs Initech, whose portal refuses the token: red after two."""
        steps = self.steps
        steps.console.heading(
            f"9. The incsync command syncs {INITECH_HUBSPOT}, whose app token was revoked"
        )
        steps.console.item(
            "config",
            f"{self.config}: the four sources, each credential named by an environment "
            "variable, never written in the file",
        )
        steps.check(
            steps.clock() <= utc_now(),
            "the demo clock is behind the real one: the command, on the real clock, reads "
            "every time the steps wrote as past",
            failure=f"demo clock at {steps.clock().isoformat()}",
        )
        stale = f"pat-na1-{steps.rng.getrandbits(128):032x}"
        steps.credentials.keep(stale)
        arguments = ("run", "--all", "--source", INITECH_HUBSPOT)
        runs = [self._run(*arguments, environment={_INITECH_TOKEN: stale}) for _ in range(2)]
        steps.check(
            [ran.code for ran in runs] == [1, 1]
            and all(ran.out.startswith(f"{INITECH_HUBSPOT}: failed: ") for ran in runs)
            and all("error: AuthError: hubspot: HTTP 401" in ran.out for ran in runs),
            "each run failed its cycle with the portal's 401 and exited 1",
            failure=[(ran.code, ran.out[:200]) for ran in runs],
        )
        stopped = f"source {INITECH_HUBSPOT} stopped after 2 failed cycles"
        steps.check(
            stopped not in runs[0].err and stopped in runs[1].err,
            f"{INITECH_HUBSPOT} stopped after 2 rejected tokens in a row (the command's error "
            "log says so): no cycle runs until it is re-authorised and resumed",
            failure=runs[1].err,
        )

    def _quiet(self, *args: str) -> Ran:
        """Run the command for a check, without showing it."""
        return run_incsync(*args, "--config", str(self.config))

    def status(self) -> None:
        """Step 10: every source's status by the command: the table, the page and the check."""
        steps = self.steps
        steps.console.heading(f"10. Status by the incsync command at {utc_now():%H:%M} UTC")
        table = self._run("status")
        written = self._run("status", "--html", str(self.page))
        check = self._run("status", "--check")
        steps.console.say()
        colors = {
            source["key"]: (source["color"], source["phase"])
            for source in json.loads(self._quiet("status", "--json").out)["sources"]
        }
        expected = {
            ACME_HUBSPOT: (StatusColor.GREEN.value, "active"),
            ACME_QUICKBOOKS: (StatusColor.GREY.value, "cancelled"),
            GLOBEX_QUICKBOOKS: (StatusColor.ORANGE.value, "active"),
            INITECH_HUBSPOT: (StatusColor.RED.value, "stopped"),
        }
        steps.check(
            table.code == written.code == 0 and self.page.is_file(),
            f"the table printed and the page written ({self.page})",
            failure=(table.code, written.code),
        )
        steps.check(
            colors == expected,
            "green, grey, orange and red, and the phases the steps left (incsync status --json)",
            failure=colors,
        )
        steps.check(
            check.code == 2
            and check.out.startswith("INCSYNC CRITICAL - 1 red, 1 orange, 1 green, 1 grey |"),
            "the monitoring check is CRITICAL (exit 2): a source is red",
            failure=(check.code, check.out),
        )
