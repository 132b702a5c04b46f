"""Issue 6, point 6: security. Against the spare reference broker with a SASL_SSL listener
(SCRAM-SHA-512 and SCRAM-SHA-256 users, certificates made by openssl for this run):

- two workers connect with the production settings, one per SCRAM mechanism, given only
  the SASL_SSL address and the test CA, and route leads and dead-letter bad records;
- a wrong password and a missing CA are refused (the TLS certificate is verified), the
  worker says so in its log and never becomes ready;
- no password (right or wrong) appears in any log, at INFO or DEBUG, or in /metrics;
- no e-mail address, phone number or name appears in the INFO log or in any metric label,
  even when an e-mail address is sent as a UTM source and a phone number as a campaign;
- the metrics endpoint listens on the configured address and port only (127.0.0.1, not
  every interface).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.reliability.conftest import Rig
from tests.support.faults import ROUTED, produce_all, read_all
from tests.support.worker import http_status, wait_until
from topics import catalogue as cat
from workers.core.identity import lead_id

pytestmark = pytest.mark.integration
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def sasl_env(broker, mechanism: str, password: str, cafile: Path | None, level: str) -> dict:
    env = {
        "LEADROUTER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LEADROUTER_KAFKA_SASL_MECHANISM": mechanism,
        "LEADROUTER_KAFKA_SASL_USERNAME": broker.sasl_username,
        "LEADROUTER_KAFKA_SASL_PASSWORD": password,
        "LEADROUTER_LOG_LEVEL": level,
    }
    if cafile is not None:
        env["LEADROUTER_KAFKA_SSL_CAFILE"] = str(cafile)
    return env


def listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            if width == 8:
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
            else:
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8))
                found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def connects(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


def people(tag: str) -> list[dict[str, str]]:
    return [
        {
            "email": f"pii.person{i}+vip@{tag}-corp.com",
            "phone": f"+1 415 555 01{i:02d}",
            "e164": f"+1415555 01{i:02d}".replace(" ", ""),
            "first": f"Alexandrina{i}",
            "last": f"Privatname{i}",
        }
        for i in range(12)
    ]


def traffic(tag: str, folks: list[dict[str, str]]) -> tuple[list, int, int]:
    records = []
    for i, p in enumerate(folks):
        event = {
            "event_id": f"{tag}-form-{i}",
            "occurred_at": "2026-01-01T00:00:00Z",
            "email": p["email"],
            "form_id": "demo-request",
            "first_name": p["first"],
            "last_name": p["last"],
            "phone": p["phone"],
            "country": "US",
            "utm": {"source": p["email"], "campaign": p["phone"], "term": p["last"]},
        }
        records.append((cat.FORM_FILLS, p["email"].encode(), orjson.dumps(event)))
    valid = len(records)
    p = folks[0]
    bad = [
        b'{"email": "%s", "phone": "%s", ' % (p["email"].encode(), p["phone"].encode()),
        orjson.dumps({"event_id": "x", "occurred_at": "last week", "email": p["email"],
                      "form_id": "demo-request", "phone": p["phone"]}),
        orjson.dumps({"event_id": "y", "occurred_at": "2026-01-01T00:00:00Z",
                      "email": f"{p['first']} {p['phone']} <{p['email']}", "form_id": "x"}),
    ]  # fmt: skip
    records += [(cat.FORM_FILLS, p["email"].encode(), raw) for raw in bad]
    return records, valid, len(bad)


def test_sasl_ssl_scram_no_secrets_no_pii_metrics_bound(spare, tmp_path, figures):
    broker = spare
    rig = Rig(broker, tmp_path)
    secure = broker.sasl_ssl_bootstrap_servers
    wrong = "wrong-" + broker.sasl_password[::-1]
    try:
        good = [
            rig.worker(
                "scram512",
                bootstrap=secure,
                extra_env=sasl_env(broker, "SCRAM-SHA-512", broker.sasl_password,
                                   broker.ca_file, "INFO"),
            ),
            rig.worker(
                "scram256",
                bootstrap=secure,
                extra_env=sasl_env(broker, "SCRAM-SHA-256", broker.sasl_password,
                                   broker.ca_file, "DEBUG"),
            ),
        ]  # fmt: skip
        refused = {
            "wrong password": rig.worker(
                "badpass",
                bootstrap=secure,
                extra_env=sasl_env(broker, "SCRAM-SHA-512", wrong, broker.ca_file, "DEBUG"),
            ),
            "unknown CA": rig.worker(
                "noca",
                bootstrap=secure,
                extra_env=sasl_env(broker, "SCRAM-SHA-256", broker.sasl_password, None, "DEBUG"),
            ),
        }
        for w in [*good, *refused.values()]:
            w.launch()
        for w in good:
            w.wait_ready(120)

        tag = rig.prefix.rstrip(".")
        folks = people(tag)
        records, valid, invalid = traffic(tag, folks)
        produce_all(broker.bootstrap_servers, rig.prefix, records)
        routed = wait_until(
            lambda: (
                (r := read_all(broker.bootstrap_servers, [rig.prefix + t for t in ROUTED]))
                and len(r) >= valid
                and r
            ),
            60,
            "leads routed by the SASL_SSL workers",
        )
        assert sorted(r.key for r in routed) == sorted(lead_id(p["email"]).encode() for p in folks)
        dead = wait_until(
            lambda: (
                (d := read_all(broker.bootstrap_servers, [rig.prefix + cat.DEADLETTER]))
                and len(d) >= invalid
                and d
            ),
            60,
            "dead letters from the SASL_SSL workers",
        )
        assert len(dead) == invalid

        # refused: each says why in its log, and never becomes ready
        why = {
            "wrong password": re.compile(r"(?i)authentication failed|invalid credentials"),
            "unknown CA": re.compile(r"(?i)certificate verify failed|ssl handshake failed"),
        }
        for name, w in refused.items():
            wait_until(lambda w=w, name=name: why[name].search(w.log_text()), 60,
                       f"the {name} worker to report why it cannot connect")  # fmt: skip
            assert w.alive(), f"{name}: the worker exited instead of retrying"
            assert http_status(w.metrics_url.replace("/metrics", "/readyz")) == 503

        # metrics: bound where configured, no secret, no personal data in any label
        secrets = [broker.sasl_password, wrong]
        personal = [v for p in folks for k, v in p.items()]
        labels: set[str] = set()
        for w in good:
            text = w.metrics_text()
            assert not any(s in text for s in secrets), "a password in /metrics"
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    labels.update(sample.labels.values())
            assert listening(w.port) == {"127.0.0.1"}, listening(w.port)
            assert connects("127.0.0.1", w.port) and not connects("127.0.0.2", w.port)
        leaked = [v for v in labels if EMAIL.search(v) or any(x in v for x in personal)]
        assert not leaked, f"personal data in metric labels: {leaked}"
        assert "other" in labels, "the e-mail sent as UTM source must be reported as `other`"

        for w in good:
            w.stop()
        for w in refused.values():
            w.kill()  # SIGTERM waits out its connection retries (see test_broker_restart)
        logs = {w.log_path.parent.name: w.log_text() for w in rig.workers}
        for name, log in logs.items():
            for secret in secrets:
                assert secret not in log, f"{name}: a password in the log"
        info = logs["scram512"]
        assert "consuming" in info, info[-2000:]
        found = EMAIL.findall(info) + [v for v in personal if v in info]
        assert not found, f"personal data in the INFO log: {found[:5]}"
        figures(
            {
                "sent": len(records),
                "routed": len(routed),
                "dlq": len(dead),
                "lost": valid - len({r.key for r in routed}) + invalid - len(dead),
                "duplicated": len(routed) - len({r.key for r in routed}),
                "label_values": len(labels),
            }
        )
    finally:
        rig.close()
