"""What one request may ask of the server: where checks may go, how many instances."""

from __future__ import annotations

from jarvis_dns.config import Config
from jarvis_dns.deny import denied
from jarvis_dns.errors import InsufficientStorage, ValidationError
from jarvis_dns.models import InstanceSpec
from jarvis_dns.registry import View


def admit_check(config: Config, spec: InstanceSpec) -> None:
    """400 for an active check aimed at a denied range (cloud metadata, link-local)."""
    if spec.check is None or not config.active_checks:
        return
    net = denied(spec.host, config.check_deny)
    if net is not None:
        raise ValidationError(f"active checks may not reach {net} (--check-deny)", field="check")


def admit_instance(view: View, config: Config, spec: InstanceSpec) -> None:
    """507 when a new instance would pass --max-instances(-per-service); updating an
    instance that exists is always allowed."""
    if view.find(spec.service_type, spec.instance_id) is not None:
        return
    if view.size(spec.service_type) >= config.max_instances_per_service:
        raise InsufficientStorage(
            f"service {spec.service_type} holds {config.max_instances_per_service} instances, "
            "the most allowed (--max-instances-per-service)",
            field="instance_id",
        )
    if view.count() >= config.max_instances:
        raise InsufficientStorage(
            f"the registry holds {config.max_instances} instances, the most allowed "
            "(--max-instances)",
            field="instance_id",
        )
