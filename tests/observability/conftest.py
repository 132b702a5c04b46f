"""A real worker under simulated marketing and sales traffic, for the dashboard and rule
queries to run against."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import yaml

from tests.support.kafka_reference import ReferenceBroker
from tests.support.worker import LEADROUTER, WorkerProcess, always_open_config, unique


@pytest.fixture(scope="module")
def worker_metrics_url(
    kafka_broker: ReferenceBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """/metrics of `leadrouter worker` while `leadrouter simulate` sends traffic: SLAs are
    shortened and simulated sales react in seconds, so breaches and outcomes happen."""
    tmp = tmp_path_factory.mktemp("observed")
    config_dir = always_open_config(tmp / "config")
    routing_file = config_dir / "routing.yaml"
    routing = yaml.safe_load(routing_file.read_text())
    for queue in routing["queues"].values():
        queue["sla_minutes"] = 0.05
    routing_file.write_text(yaml.safe_dump(routing))
    prefix, group = unique("obs") + ".", unique("obs")
    worker = WorkerProcess(
        kafka_broker.bootstrap_servers,
        config_dir,
        tmp / "worker",
        prefix=prefix,
        group=group,
        store="memory",
    ).start()
    env = {**worker.env}
    simulator = subprocess.Popen(
        [
            str(LEADROUTER),
            "simulate",
            "--rate",
            "150",
            "--duration",
            "120",
            "--seed",
            "3",
            "--malformed",
            "0.03",
            "--sales-delay-scale",
            "0.00002",
            "--config",
            str(config_dir),
        ],
        env=env,
        stdout=open(tmp / "simulate.log", "wb"),  # noqa: SIM115 - kept open for the child
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield worker.metrics_url
    finally:
        simulator.terminate()
        try:
            simulator.wait(15)
        except subprocess.TimeoutExpired:
            simulator.kill()
        worker.stop()
