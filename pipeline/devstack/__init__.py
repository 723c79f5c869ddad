"""The local stack: an Apache Kafka broker from Maven Central jars, an SMTP sink, the chDB dir."""

from pipeline.devstack.kafka import KafkaBroker, StackError

__all__ = ["KafkaBroker", "StackError"]
