"""`leadrouter` command line: worker, topics, config, accounts, simulate, demo; and over the
topics' history, explain, report and replay (workers/history.py reads it by time).

Every command validates its configuration before it imports anything that loads a Kafka
client (confluent_kafka, kafka-python, aiokafka, faust): those imports are most of a
worker's start-up, and a refusal of bad config should not wait for them. So nothing at the
top of this module, or of `workers.settings` and `workers.connection`, imports one; the
commands import their runtime after the configuration is loaded
(tests/unit/test_cli_imports.py holds this).

Every argument is judged before anything connects: `--config` is loaded first (an eager
option), then each argument is converted by a type that refuses it in the operator's terms
(what the number means, its unit, its range, an example), with exit status 2
(tests/unit/test_cli_args.py holds this).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from workers.history import Moment, check_stretch
from workers.logs import configure_logging
from workers.replay import DISK_ABOVE, SAMPLE
from workers.settings import Config, ConfigError, load_config


def _load(config_dir: str | None) -> Config:
    try:
        config = load_config(config_dir)
    except ConfigError as exc:
        click.echo(f"leadrouter: configuration is invalid ({exc.count}):", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    configure_logging(config.settings.log_level)
    for warning in config.warnings:
        logging.getLogger("leadrouter.config").warning("%s", warning)
    return config


# --------------------------------------------------------------------------- argument types
class Quantity(click.ParamType):
    """A finite number within bounds, refused in words: what it measures, its unit, its
    range and an example. (click's own ranges let nan and inf through and say `x>0`.)"""

    name = "number"

    def __init__(
        self,
        what: str,
        unit: str = "",
        *,
        above: float | None = None,
        at_least: float | None = None,
        at_most: float | None = None,
        whole: bool = False,
        example: str,
    ) -> None:
        self.what, self.unit, self.example = what, unit, example
        self.above, self.at_least, self.at_most, self.whole = above, at_least, at_most, whole
        self.name = "integer" if whole else "number"

    def _range(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.at_least is not None and self.at_most is not None:
            return f"from {self.at_least:g} to {self.at_most:g}{unit}"
        if self.above is not None:
            return f"more than {self.above:g}{unit}"
        if self.at_least is not None:
            return f"{self.at_least:g}{unit} or more"
        return f"a number of {self.unit}" if self.unit else "a number"

    def _refuse(self, shown: str, why: str, param: click.Parameter | None, ctx: Any) -> NoReturn:
        option = param.opts[0] if param is not None and param.opts else ""
        must = f"a whole number, {self._range()}" if self.whole else self._range()
        self.fail(
            f"{shown} {why}: {self.what} must be {must}; for example {option} {self.example}",
            param,
            ctx,
        )

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number: float = value
        else:
            text = str(value).strip()
            try:
                number = int(text) if self.whole else float(text)
            except ValueError:
                is_float = self.whole and _is_float(text)
                self._refuse(
                    repr(str(value)),
                    "is not a whole number" if is_float else "is not a number",
                    param,
                    ctx,
                )
        if not math.isfinite(number):
            self._refuse(repr(str(value)), "is not a finite number", param, ctx)
        too_low = (self.above is not None and number <= self.above) or (
            self.at_least is not None and number < self.at_least
        )
        if too_low:
            self._refuse(f"{number:g}", "is too small", param, ctx)
        if self.at_most is not None and number > self.at_most:
            self._refuse(f"{number:g}", "is too large", param, ctx)
        return int(number) if self.whole else float(number)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Instant(click.ParamType):
    """A moment with its UTC offset (RFC 3339), so 'now' in every rep's zone is unambiguous."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            self.fail(
                f"{text!r} is not a time: write it RFC 3339 with its UTC offset, for example "
                "2026-12-01T15:00:00Z or 2026-12-01T16:00:00+01:00",
                param,
                ctx,
            )
        if moment.tzinfo is None:
            self.fail(
                f"{text!r} has no UTC offset, so it names a different moment in every time "
                f"zone: add one, for example {text}Z or {text}+01:00",
                param,
                ctx,
            )
        return moment


class VersionRef(click.ParamType):
    """A published configuration version: `latest`, or 4 to 12 of its hex digits; with
    `directories`, a config directory too (what `config diff` compares)."""

    name = "version"

    def __init__(self, *, directories: bool = False) -> None:
        self.directories = directories

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> str:
        text = str(value).strip()
        if text == "latest" or re.fullmatch(r"[0-9a-fA-F]{4,12}", text):
            return text.lower()
        if self.directories and Path(text).is_dir():
            return text
        also = " or a config directory" if self.directories else ""
        self.fail(
            f"{text!r} is not a version: give `latest` or 4 to 12 hex digits of one{also}, "
            "as `leadrouter config history` lists them, for example 3f2a9c0d",
            param,
            ctx,
        )


class Note(click.ParamType):
    """One line, kept short: a version's note (shown in every `config history` listing) or
    an erasure's reason."""

    name = "text"

    def __init__(self, noun: str, example: str) -> None:
        self.noun, self.example = noun, example

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> str:
        text = str(value).strip()
        broken = any(ord(c) < 32 for c in text)
        if len(text) > NOTE_CHARS or broken:
            self.fail(
                f"the {self.noun} must be one line of at most {NOTE_CHARS} characters (got "
                f"{len(text)}{', with a line break' if broken else ''}); for example "
                f"{self.example}",
                param,
                ctx,
            )
        return text


def _new_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """An output file: its directory must exist (the file itself is written or replaced)."""
    if value is not None and not value.parent.is_dir():
        raise click.BadParameter(
            f"cannot write {value}: the directory {value.parent} does not exist", ctx, param
        )
    return value


def _config_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if ctx.resilient_parsing:  # shell completion: nothing is loaded
        return None
    return _load(value)


# `config check` and `config publish` name the directory they judge as an argument; they take
# `--config DIR` too, like every other command, and load it themselves (their errors are the
# output, not a refusal).
directory_option = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The config directory, as DIRECTORY (default: $LEADROUTER_CONFIG_DIR or config/).",
)


def _directory(directory: str | None, config_path: str | None) -> str | None:
    """DIRECTORY or --config DIR: one directory, named either way (or both alike)."""
    if (
        directory is not None
        and config_path is not None
        and Path(directory).resolve() != Path(config_path).resolve()
    ):
        raise click.UsageError(f"DIRECTORY {directory} and --config {config_path} differ")
    return directory if directory is not None else config_path


config_option = click.option(
    "--config",
    "config",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    is_eager=True,
    callback=_config_callback,
    help="Config directory (default: $LEADROUTER_CONFIG_DIR or the bundled config/).",
)


def _broker(config: Config) -> None:
    """Refuse in one line, before any client is built, when no broker is configured."""
    from workers.connection import NoBroker, bootstrap

    try:
        bootstrap(config.settings)
    except NoBroker as exc:
        raise click.ClickException(str(exc)) from None


NOTE_CHARS = 200
RATE = Quantity("the rate", "events per second", above=0, example="200")


# --------------------------------------------------------------------------- commands
class Commands(click.Group):
    """A broker that does not answer is said in one line (exit 1), not as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from workers.connection import Unreachable

        try:
            return super().invoke(ctx)
        except Unreachable as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """leadrouter: route qualified marketing leads to sales queues on Kafka."""


@main.command()
@config_option
def worker(config: Config) -> None:
    """Run the stream worker (needs KAFKA_BOOTSTRAP_SERVERS or kafka.bootstrap_servers)."""
    _broker(config)
    from workers.runtime.worker import Worker

    sys.exit(Worker(config).run())


@main.group()
def topics() -> None:
    """Create or check the topic catalogue on the broker."""


@topics.command("apply")
@config_option
def topics_apply(config: Config) -> None:
    """Create every topic idempotently and correct partitions and configs."""
    _broker(config)
    from workers import admin

    done = admin.apply(config)
    for line in done:
        click.echo(line)
    click.echo(f"{len(admin.specs_for(config))} topics in the catalogue; {len(done)} changes")


@topics.command("check")
@config_option
def topics_check(config: Config) -> None:
    """Report drift between the broker and the catalogue; exit 1 if there is any."""
    _broker(config)
    from workers import admin

    problems = admin.drift(config)
    for line in problems:
        click.echo(line)
    if problems:
        click.echo(f"drift: {len(problems)} differences", err=True)
        sys.exit(1)
    click.echo(f"ok: {len(admin.specs_for(config))} topics match the catalogue")


@main.group("config")
def config_group() -> None:
    """Validate configuration, publish it as versioned data, and show the routing."""


def _judged(directory: str | None, *, strict: bool, after: str = "") -> Config:
    """The configuration in `directory`, its warnings printed; every problem printed and
    exit 1 when it has any (`strict`: as `load_config` takes it, for files to check or
    publish)."""
    try:
        config = load_config(directory, strict=strict)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{exc.count}{after}", err=True)
        sys.exit(1)
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    return config


@config_group.command("check")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
@directory_option
def config_check(directory: str | None, config_path: str | None) -> None:
    """Validate settings, scoring, routing and reps; print every problem with file and path."""
    config = _judged(_directory(directory, config_path), strict=True)
    click.echo(
        f"ok: {config.directory}: {len(config.routing.queues)} queues, "
        f"{len(config.routing.rules)} rules, {len(config.reps.reps)} reps"
    )


@config_group.command("show")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    callback=_new_file,
    help="Also draw the routing as a flow in this self-contained HTML file.",
)
@click.option(
    "--at",
    "at",
    type=Instant(),
    default=None,
    help="Who is in office at this moment (RFC 3339, e.g. 2026-12-01T15:00:00Z); default now.",
)
@config_option
def config_show(config: Config, html_file: Path | None, at: datetime | None) -> None:
    """The routing in words: rules in order, queues, reps, their hours and who is in now."""
    from workers.routing_view import build_view, render_html, render_text

    view = build_view(config, at or datetime.now(UTC))
    click.echo(render_text(view), nl=False)
    if html_file is not None:
        html_file.write_text(render_html(view), encoding="utf-8")
        click.echo(f"wrote {html_file}", err=True)


# --------------------------------------------------------------------------- published config
def _published(config: Config) -> tuple[list[Any], list[Any]]:
    """The versions on the configuration topic (and the records that are none)."""
    _broker(config)
    from confluent_kafka import KafkaException

    from topics import catalogue as cat
    from workers.runtime.config_reader import read_versions

    try:
        return read_versions(config.settings, config.settings.kafka.topic_prefix + cat.CONFIG)
    except KafkaException as exc:
        raise click.ClickException(f"cannot read the published versions: {exc}") from None


def _version(config: Config, ref: str) -> Any:
    """A published version named by `ref` (latest, a version or a prefix); exit 2 if none."""
    from workers.config_versions import find

    versions, _ = _published(config)
    try:
        return find(versions, ref)
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None


@config_group.command("publish")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--note",
    type=Note("note", "--note 'ben.carter on leave until Monday'"),
    default="",
    help="Why: shown by `config history` (one line).",
)
@click.option(
    "--version",
    "again",
    metavar="V",
    type=VersionRef(),
    default=None,
    help="Publish an earlier published version again (a rollback): its version or a prefix.",
)
@directory_option
def config_publish(
    directory: str | None, note: str, again: str | None, config_path: str | None
) -> None:
    """Validate DIRECTORY's four files and publish them as a new version that every worker
    switches to between batches, without a restart. Nothing is published on any error."""
    if again is not None and directory is not None:
        raise click.UsageError(
            "give DIRECTORY to publish, or --version V to publish again; not both"
        )
    # What is published is judged as `config check` judges it. With --version, DIRECTORY or
    # --config only gives the broker's settings.
    directory = _directory(directory, config_path)
    config = _judged(directory, strict=again is None, after="; nothing published")
    configure_logging(config.settings.log_level)
    from workers.settings import unpublished_overrides

    for var in unpublished_overrides(os.environ) if again is None else ():
        click.echo(f"warning: {var} is set: not published (the files are, as written)", err=True)
    _broker(config)
    import getpass
    import socket
    import time

    from kafka.errors import KafkaError as KafkaPythonError

    from topics import catalogue as cat
    from workers import admin, config_versions
    from workers.runtime.config_reader import publish

    try:
        admin.ensure_topics(config)  # the configuration topic, and the new version's queues'
    except KafkaPythonError as exc:
        raise click.ClickException(f"nothing published: {exc!r}") from None
    versions, refused = _published(config)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's user with no passwd entry
        user = f"uid{os.getuid()}"
    publisher = f"{user}@{socket.gethostname()}"
    if again is not None:
        try:
            earlier = config_versions.find(versions, again)
        except LookupError as exc:
            raise click.UsageError(str(exc)) from None
        version = earlier.version
        value = config_versions.republished(
            earlier,
            note=note or f"rollback to {version} ({earlier.note or 'no note'})",
            publisher=publisher,
            at=time.time(),
        )
    else:
        version = config.version
        value = config_versions.record(config, note=note, publisher=publisher, at=time.time())
    if (
        versions
        and versions[-1].version == version
        and not (
            refused and refused[-1][0] > versions[-1].offset  # a bad record came after it
        )
    ):
        click.echo(f"already the latest: {version} (published {versions[-1].when})")
        return
    topic = config.settings.kafka.topic_prefix + cat.CONFIG
    from confluent_kafka import KafkaException

    try:
        offset = publish(config.settings, topic, version, value)
    except KafkaException as exc:
        raise click.ClickException(f"nothing published: {exc}") from None
    click.echo(f"published {version} to {topic} (offset {offset}){f': {note}' if note else ''}")


@config_group.command("history")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version instead.")
@config_option
def config_history(config: Config, as_json: bool) -> None:
    """The published versions, oldest first, with their time, publisher and note; the
    latest is the one workers run."""
    import orjson

    versions, refused = _published(config)
    if as_json:
        for p in versions:
            row = {
                "version": p.version,
                "published_at": p.published_at,
                "publisher": p.publisher,
                "note": p.note,
                "offset": p.offset,
            }
            click.echo(orjson.dumps(row))
        return
    if not versions:
        click.echo("no configuration published yet: workers run their local files")
    for n, p in enumerate(versions):
        latest = "  (latest)" if n == len(versions) - 1 else ""
        click.echo(f"{p.version}  {p.when}  {p.publisher or '-'}  {p.note or '-'}{latest}")
    for offset, exc in refused:
        click.echo(f"offset {offset}: not a version ({exc.reason}): {exc.detail}", err=True)


@config_group.command("diff")
@click.argument("a", metavar="A", type=VersionRef(directories=True))
@click.argument("b", metavar="B", type=VersionRef(directories=True))
@config_option
def config_diff(config: Config, a: str, b: str) -> None:
    """What changed from A to B, file by file. Each is a published version (`latest`, a
    version or a prefix of one) or a config directory, e.g. `config diff latest config/`."""
    from workers.config_versions import diff

    def files(ref: str) -> tuple[str, Any]:
        if Path(ref).is_dir():
            return ref.rstrip("/"), _load(ref).texts
        published = _version(config, ref)
        return published.version, published.files

    (a_name, a_files), (b_name, b_files) = files(a), files(b)
    lines = diff(a_files, b_files, a_name, b_name)
    for line in lines:
        click.echo(line)
    if not lines:
        click.echo(f"no difference between {a_name} and {b_name}")


@main.group()
def accounts() -> None:
    """Reference accounts (firmographics and owners)."""


@accounts.command("load")
@click.argument(
    "file",
    metavar="FILE.csv",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
)
@config_option
def accounts_load(file: Path, config: Config) -> None:
    """Publish accounts from a CSV (domain,name,employees,industry,country,owner)."""
    from workers import admin

    try:
        rows = admin.read_accounts(file)
    except admin.AccountFileError as exc:
        raise click.BadParameter(str(exc), param_hint="'FILE.csv'") from None
    _broker(config)
    admin.ensure_topics(config)
    click.echo(f"loaded {admin.load_accounts(config, rows)} accounts")


@main.command()
@click.option("--rate", type=RATE, default=200.0, show_default=True, help="Events per second.")
@click.option(
    "--duration",
    type=Quantity("the duration", "seconds", above=0, example="60"),
    default=60.0,
    show_default=True,
    help="Seconds to run (Ctrl-C or SIGTERM stops it sooner).",
)
@click.option(
    "--seed",
    type=Quantity("the seed", at_least=0, whole=True, example="7"),
    default=None,
    help="Seed for a repeatable run.",
)
@click.option(
    "--malformed",
    type=Quantity("the share of broken events", at_least=0, at_most=1, example="0.01"),
    default=0.01,
    show_default=True,
    help="Share broken (0 to 1).",
)
@click.option(
    "--sales-delay-scale",
    type=Quantity("the sales delay scale", at_least=0, example="0.01"),
    default=1.0,
    show_default=True,
    help="Multiply simulated sales reaction times (e.g. 0.01 for a quick demo).",
)
@config_option
def simulate(
    rate: float,
    duration: float,
    seed: int | None,
    malformed: float,
    sales_delay_scale: float,
    config: Config,
) -> None:
    """Send realistic marketing and sales traffic to the configured broker, for --duration
    or until stopped (Ctrl-C, SIGTERM)."""
    _broker(config)
    import signal
    import threading

    from workers.simulate import run_simulation

    # Stopped like the worker: what was produced is flushed, the sales team's Faust app
    # leaves its group and its data directory goes, and the counts are printed.
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stats = run_simulation(
        config,
        rate=rate,
        duration=duration,
        seed=seed,
        malformed_share=malformed,
        sales_delay_scale=sales_delay_scale,
        stop=stop,
    )
    click.echo(" ".join(f"{k}={v}" for k, v in stats.items()))


@main.command()
@click.option(
    "--rate",
    type=Quantity("the rate", "events per second", above=0, example="100"),
    default=100.0,
    show_default=True,
    help="Events per second.",
)
@click.option(
    "--duration",
    type=Quantity("the duration", "seconds", above=0, example="60"),
    default=None,
    help="Stop after N seconds (default: Ctrl-C).",
)
@click.option(
    "--seed",
    type=Quantity("the seed", at_least=0, whole=True, example="7"),
    default=None,
    help="Seed for the simulated traffic.",
)
@config_option
def demo(rate: float, duration: float | None, seed: int | None, config: Config) -> None:
    """Everything on one machine: broker, topics, worker, simulator, live summary, metrics."""
    from workers.demo import run_demo

    sys.exit(run_demo(config, rate=rate, duration=duration, seed=seed))


# --------------------------------------------------------------------------- history
class LeadRef(click.ParamType):
    """EMAIL|LEAD_ID of `explain`: an e-mail address (turned into its lead id as the worker
    derives it) or a lead id; anything else refused before any broker is looked for."""

    name = "lead"

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        from workers.explain import NotALead, resolve

        try:
            return resolve(str(value))
        except NotALead as exc:
            self.fail(str(exc), param, ctx)


def _not_ahead(since: float) -> None:
    """A --since in the future can only be a mistake: there is no history there yet."""
    import time

    if since > time.time():
        raise click.UsageError("--since is in the future: there is no history after now yet")


def _unknown_topic(exc: Exception) -> NoReturn:
    raise click.UsageError(
        f"{exc}: is the topic prefix right (kafka.topic_prefix, LEADROUTER_TOPIC_PREFIX)? "
        "`leadrouter topics apply` creates the catalogue's topics"
    )


@main.command()
@click.argument("lead", metavar="EMAIL|LEAD_ID", type=LeadRef())
@click.option(
    "--since",
    type=Moment(),
    default=None,
    help="Read from this time (ISO 8601, or 30m, 2h, 7d ago); default: all the topics keep.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the lead's history as JSON.")
@config_option
def explain(
    lead: tuple[str, str | None], since: float | None, as_json: bool, config: Config
) -> None:
    """Why a lead went where it went: its assignments, activities, traces, score and what
    sales did, in time order. Exit status 1 when no such lead was routed, or it was erased."""
    if since is not None:
        _not_ahead(since)
    _broker(config)
    import orjson

    from workers import history
    from workers.erasures import read_erasures
    from workers.explain import collect, erased_text, render_json, render_text, topics_for

    lead_id, email = lead
    from confluent_kafka import KafkaException

    try:
        erasure = read_erasures(config.settings).get(lead_id)
    except KafkaException as exc:
        raise click.ClickException(f"cannot read the erasures: {exc}") from None
    if erasure is not None:  # nothing of the person is read, let alone shown
        click.echo(erased_text(lead_id, erasure), err=True)
        sys.exit(1)
    routed, sales = topics_for(config)
    try:
        plan = history.plan(config.settings, [*routed, sales], since or 0.0, None)
    except history.UnknownTopic as exc:
        _unknown_topic(exc)
    found = collect(lead_id, email, history.read(config.settings, plan, progress=True), sales)
    if not found.routed:
        shown = f"{lead_id} ({email})" if email else lead_id
        where = "in the topics' history"
        if since is not None:
            where = f"since {history.moment_text(since)}"
        click.echo(
            f"leadrouter: no lead {shown} was routed {where} "
            f"({found.records_read} records of {len(routed)} routed topics and {sales} read)",
            err=True,
        )
        sys.exit(1)
    if as_json:
        click.echo(orjson.dumps(render_json(found), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_text(found), nl=False)


@main.command()
@click.option(
    "--since",
    type=Moment(),
    required=True,
    help="Leads routed from this time: ISO 8601 (UTC unless it has an offset), 30m, 2h, 7d ago.",
)
@click.option(
    "--until",
    type=Moment(),
    default=None,
    help="... up to this time (default: now); SLAs are judged at it.",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    callback=_new_file,
    help="Also write the report as JSON to this file.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    callback=_new_file,
    help="Also write a self-contained HTML page with charts to this file.",
)
@config_option
def report(
    since: float,
    until: float | None,
    json_file: Path | None,
    html_file: Path | None,
    config: Config,
) -> None:
    """Lead quality and speed by source, campaign, channel, grade, score band and queue:
    leads routed, contacted, speed to lead, SLA breaches, opportunities, won, conversion."""
    check_stretch(since, until)
    _not_ahead(since)
    _broker(config)
    import orjson
    from confluent_kafka import KafkaException

    from workers import history
    from workers.report import EmptyStretch, build, render_terminal

    try:
        data = build(config, since, until, progress=True)
    except history.UnknownTopic as exc:
        _unknown_topic(exc)
    except EmptyStretch as exc:
        raise click.UsageError(str(exc)) from None
    except KafkaException as exc:
        raise click.ClickException(f"cannot read history from the broker: {exc}") from None
    render_terminal(data)
    if json_file is not None:
        json_file.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        click.echo(f"wrote {json_file}", err=True)
    if html_file is not None:
        from workers.report_html import render_html

        html_file.write_text(render_html(data), encoding="utf-8")
        click.echo(f"wrote {html_file}", err=True)


# --------------------------------------------------------------------------- replay
def _replay_config(ref: str | None, which: str) -> Config:
    """A configuration: a directory, a published version (`latest` or its hex digits), or
    for the baseline by default the one the worker runs (the latest published version, else
    the local files). Invalid: the problems `config check` lists, and exit status 2."""
    from workers.config_versions import Refused, find, runnable

    directory = ref if ref is not None and Path(ref).is_dir() else None
    try:
        # a candidate directory is judged as `config check` judges it
        local = load_config(directory, strict=which == "candidate" and directory is not None)
    except ConfigError as exc:
        shown = directory or "the default configuration"
        click.echo(f"leadrouter replay: the {which} configuration ({shown}) is invalid:", err=True)
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(exc.count, err=True)
        sys.exit(2)
    if directory is not None:
        return local
    if ref is None and (
        local.settings.config_source == "files" or not local.settings.kafka.bootstrap_servers
    ):
        return local  # the worker runs these files (or there is no broker to ask)
    from topics import catalogue as cat

    versions, _ = _published(local)
    if ref is None and not versions:
        return local
    try:
        published = find(versions, ref or "latest")
        return runnable(published, local, local.settings.kafka.topic_prefix + cat.CONFIG)
    except LookupError as exc:
        raise click.UsageError(f"--{'config' if which == 'candidate' else which}: {exc}") from None
    except Refused as exc:  # cannot happen for a listed version; said plainly if it does
        raise click.ClickException(f"the {which} version is invalid: {exc.detail}") from None


@main.command("replay")
@click.option(
    "--since",
    type=Moment(),
    required=True,
    help="Start: ISO 8601 (UTC unless it has an offset) or a span ago such as 2h.",
)
@click.option("--until", type=Moment(), default=None, help="End, the same way (default: now).")
@click.option(
    "--config",
    "candidate_dir",
    type=VersionRef(directories=True),
    required=True,
    help="The candidate configuration: a directory or a published version (latest, 3f2a9c0d).",
)
@click.option(
    "--baseline",
    "baseline_dir",
    type=VersionRef(directories=True),
    default=None,
    help="The configuration to compare with, a directory or a published version (default: "
    "the one the worker runs: the latest published, else $LEADROUTER_CONFIG_DIR or config/).",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_new_file,
    help="Also write the comparison as JSON to this file.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_new_file,
    help="Also draw it (load per rep before and after) in this self-contained HTML file.",
)
@click.option(
    "--sample",
    type=Quantity(
        "the number of changed leads shown",
        "leads",
        at_least=0,
        at_most=10_000,
        whole=True,
        example="20",
    ),
    default=SAMPLE,
    show_default=True,
    help="Changed leads kept with both decision traces.",
)
@click.option(
    "--store",
    type=click.Choice(["auto", "memory", "disk"]),
    default="auto",
    show_default=True,
    help=f"Where state is kept: auto puts it on disk above {DISK_ABOVE:,} events.",
)
def replay(
    since: float,
    until: float | None,
    candidate_dir: str,
    baseline_dir: str | None,
    json_file: Path | None,
    html_file: Path | None,
    sample: int,
    store: str,
) -> None:
    """What-if on history: run a stretch of it through the baseline and a candidate
    configuration, and show which leads would have been routed differently, and why.
    Writes nothing to any topic and joins no consumer group."""
    import time

    import orjson

    from workers.history import moment_text
    from workers.replay import render_summary, replayed

    check_stretch(since, until)
    end = time.time() if until is None else until
    if end <= since:
        raise click.UsageError(f"--since ({moment_text(since)}) is in the future")
    candidate = _replay_config(candidate_dir, "candidate")  # refused before anything is read
    baseline = _replay_config(baseline_dir, "baseline")  # may ask the broker: arguments first
    _broker(baseline)
    from confluent_kafka import KafkaException

    try:
        with replayed(baseline, candidate, since, end, store=store, progress=True) as run:
            report = run.report(sample)
    except KafkaException as exc:
        raise click.ClickException(f"cannot read history from the broker: {exc}") from None
    click.echo(render_summary(report, run.facts, since, end), nl=False)
    if json_file is not None:
        json_file.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        click.echo(f"wrote {json_file}", err=True)
    if html_file is not None:
        from workers.replay_html import render_html

        html_file.write_text(render_html(report, since, end), encoding="utf-8")
        click.echo(f"wrote {html_file}", err=True)


# --------------------------------------------------------------------------- personal data
@main.command()
@click.argument("lead", metavar="EMAIL|LEAD_ID", type=LeadRef())
@click.option(
    "--reason",
    type=Note("reason", "--reason 'GDPR art. 17 request #123'"),
    default="",
    help="Why, for the record (e.g. 'GDPR art. 17 request #123'); no personal data here.",
)
@config_option
def forget(lead: tuple[str, str | None], reason: str, config: Config) -> None:
    """Erase a person: every worker removes what it holds about them (lead, visitor
    records, timers, waiting-line entry; tombstones on the changelog) and keeps only the
    lead id, a one-way fingerprint, and the time, so older events cannot bring them back."""
    _broker(config)
    import time

    import orjson
    from confluent_kafka import KafkaException

    from topics import catalogue as cat
    from workers.history import moment_text
    from workers.runtime.config_reader import publish, topic_exists

    lead_id, _ = lead
    now = time.time()
    value = {"format": 1, "lead_id": lead_id, "requested_at": round(now, 3), "reason": reason}
    topic = config.settings.kafka.topic_prefix + cat.ERASURES
    try:
        if not topic_exists(config.settings, topic):
            # Created by `topics apply` and every worker's start: missing, the prefix (or
            # the broker) is not the workers'; nothing would read the request.
            _unknown_topic(f"no topic {topic}")
        publish(config.settings, topic, lead_id, orjson.dumps(value))
    except KafkaException as exc:
        raise click.ClickException(f"nothing requested: {exc}") from None
    click.echo(
        f"erasure of {lead_id} requested at {moment_text(now)}: the worker that owns it "
        "removes the person's state within seconds; records already published to the routed "
        "topics and dead letters stay until their retention (README: Personal data)"
    )


if __name__ == "__main__":
    main()
