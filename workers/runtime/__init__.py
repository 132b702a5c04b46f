"""The runtime: the thin shell that runs the topology on Kafka (confluent-kafka).

| module | concern |
|---|---|
| `worker.py` | the batch loop and the session around it (backoff, teardown) |
| `selection.py` | which records form a batch, and in which order |
| `clients.py` | every librdkafka client configuration, in one place |
| `commit.py` | the transaction and commit protocol (exactly_once, at_least_once) |
| `outbox.py` | at_least_once: outputs kept with their state until it is durable |
| `partitions.py` | partition assignment and state restore from the changelog |
| `accounts.py` | the `reference.accounts` table, read whole and followed |
| `timers.py` | SLA timers per owned partition |
| `sink.py` | the topology's output to Kafka, dead letters included |
| `lag.py` | consumer lag from librdkafka's statistics |
| `memory.py` | garbage collector policy and returning freed memory |
"""
