"""Replication: the replicated command log (NATS JetStream), its sequencer and replicas
(docs/replication.md)."""
