"""Creation of the topics yokoten reads and writes."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from service.config import Settings

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Return every topic with its settings; the IOC topic is compacted so it keeps the latest record per IOC."""
    partitions = settings.partitions
    replication = settings.replication_factor
    specs = [NewTopic(binding.topic, partitions, replication) for binding in settings.input_bindings]
    specs.append(
        NewTopic(
            settings.ioc_topic,
            1,
            replication,
            topic_configs={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
        )
    )
    specs.append(NewTopic(settings.sightings_topic, partitions, replication))
    specs.append(
        NewTopic(settings.alerts_topic, partitions, replication, topic_configs={"cleanup.policy": "compact,delete"})
    )
    specs.append(NewTopic(settings.dead_letter_topic, 1, replication))
    if settings.stix_sightings_topic:
        specs.append(
            NewTopic(
                settings.stix_sightings_topic, partitions, replication, topic_configs={"cleanup.policy": "compact"}
            )
        )
    return specs


async def create_topics(settings: Settings) -> list[str]:
    """Create missing topics; existing ones are left as they are. Return the names created."""
    admin = AIOKafkaAdminClient(**settings.kafka_options())  # type: ignore[arg-type]
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.info("Some topics were created concurrently by another process")
        for spec in missing:
            log.info("Created topic %s with %d partitions", spec.name, spec.num_partitions)
        return [spec.name for spec in missing]
    finally:
        await admin.close()
