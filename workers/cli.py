"""`leadrouter` command line: worker, topics, config, accounts, simulate, demo.

Every command validates its configuration before it imports anything that loads a Kafka
client (confluent_kafka, kafka-python, aiokafka, faust): those imports are most of a
worker's start-up, and a refusal of bad config should not wait for them. So nothing at the
top of this module, or of `workers.settings` and `workers.connection`, imports one; the
commands import their runtime after `_load` (tests/unit/test_cli_imports.py holds this).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from workers.settings import Config, ConfigError, load_config


def _configure_logging(level: str) -> None:
    """Explicit, so no library's DEBUG records are built on the hot path (FAUST-NOTES)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("kafka", "aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _load(config_dir: str | None) -> Config:
    try:
        config = load_config(config_dir)
    except ConfigError as exc:
        click.echo(
            f"leadrouter: configuration is invalid ({len(exc.problems)} problems):", err=True
        )
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    _configure_logging(config.settings.log_level)
    for warning in config.warnings:
        logging.getLogger("leadrouter.config").warning("%s", warning)
    return config


config_option = click.option(
    "--config",
    "config_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Config directory (default: $LEADROUTER_CONFIG_DIR or the bundled config/).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """leadrouter: route qualified marketing leads to sales queues on Kafka."""


@main.command()
@config_option
def worker(config_dir: str | None) -> None:
    """Run the stream worker (needs KAFKA_BOOTSTRAP_SERVERS or kafka.bootstrap_servers)."""
    from workers.connection import NoBroker, bootstrap

    config = _load(config_dir)
    try:
        bootstrap(config.settings)
    except NoBroker as exc:
        raise click.ClickException(str(exc)) from None
    from workers.runtime.worker import Worker

    sys.exit(Worker(config).run())


@main.group()
def topics() -> None:
    """Create or check the topic catalogue on the broker."""


@topics.command("apply")
@config_option
def topics_apply(config_dir: str | None) -> None:
    """Create every topic idempotently and correct partitions and configs."""
    config = _load(config_dir)
    from workers import admin

    done = admin.apply(config)
    for line in done:
        click.echo(line)
    click.echo(f"{len(admin.specs_for(config))} topics in the catalogue; {len(done)} changes")


@topics.command("check")
@config_option
def topics_check(config_dir: str | None) -> None:
    """Report drift between the broker and the catalogue; exit 1 if there is any."""
    config = _load(config_dir)
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
    """Validate configuration."""


@config_group.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def config_check(directory: str | None) -> None:
    """Validate settings, scoring, routing and reps; print every problem with file and path."""
    try:
        config = load_config(directory)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problems", err=True)
        sys.exit(1)
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"ok: {config.directory}: {len(config.routing.queues)} queues, "
        f"{len(config.routing.rules)} rules, {len(config.reps.reps)} reps"
    )


@main.group()
def accounts() -> None:
    """Reference accounts (firmographics and owners)."""


@accounts.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
def accounts_load(file: Path, config_dir: str | None) -> None:
    """Publish accounts from a CSV (domain,name,employees,industry,country,owner)."""
    config = _load(config_dir)
    from workers import admin

    try:
        rows = admin.read_accounts(file)
    except admin.AccountFileError as exc:
        raise click.ClickException(str(exc)) from None
    admin.ensure_topics(config)
    click.echo(f"loaded {admin.load_accounts(config, rows)} accounts")


@main.command()
@click.option("--rate", type=float, default=200.0, show_default=True, help="Events per second.")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds to run.")
@click.option("--seed", type=int, default=None, help="Seed for a repeatable run.")
@click.option("--malformed", type=float, default=0.01, show_default=True, help="Share broken.")
@click.option(
    "--sales-delay-scale",
    type=float,
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
    config_dir: str | None,
) -> None:
    """Send realistic marketing and sales traffic to the configured broker."""
    from workers.connection import NoBroker, bootstrap

    config = _load(config_dir)
    try:
        bootstrap(config.settings)
    except NoBroker as exc:
        raise click.ClickException(str(exc)) from None
    from workers.simulate import run_simulation

    stats = run_simulation(
        config,
        rate=rate,
        duration=duration,
        seed=seed,
        malformed_share=malformed,
        sales_delay_scale=sales_delay_scale,
    )
    click.echo(" ".join(f"{k}={v}" for k, v in stats.items()))


@main.command()
@click.option("--rate", type=float, default=100.0, show_default=True, help="Events per second.")
@click.option(
    "--duration", type=float, default=None, help="Stop after N seconds (default: Ctrl-C)."
)
@click.option("--seed", type=int, default=None, help="Seed for the simulated traffic.")
@config_option
def demo(rate: float, duration: float | None, seed: int | None, config_dir: str | None) -> None:
    """Everything on one machine: broker, topics, worker, simulator, live summary, metrics."""
    config = _load(config_dir)
    from workers.demo import run_demo

    sys.exit(run_demo(config, rate=rate, duration=duration, seed=seed))


if __name__ == "__main__":
    main()
