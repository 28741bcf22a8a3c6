"""The params' models as Prefect flow parameters, with a JSON schema Prefect need not derive.

Prefect derives a JSON schema of each flow's parameters when the flow is defined, for deployments and its UI's run
form. Derived from :class:`ExperimentSpec` (some 160 nested models) it is the slowest part of importing the flows,
paid by every command (BENCHMARKS.md, "Fixed overhead"), and no flow that takes a spec is deployed: the scheduled
one takes experiment names (flows/schedule.py). These annotations give Prefect a plain object schema instead;
Prefect still validates each parameter as the model (`WithJsonSchema` replaces the JSON schema only).
"""

from typing import Annotated

from pydantic import WithJsonSchema

from kerasflow.tasks.config.schema import ExperimentSpec
from kerasflow.tasks.config.search import SearchSpec

Experiment = Annotated[ExperimentSpec, WithJsonSchema({"type": "object", "title": "ExperimentSpec"})]
"""An experiment of params.yaml, as a flow parameter."""

Search = Annotated[SearchSpec, WithJsonSchema({"type": "object", "title": "SearchSpec"})]
"""A sweep of params.yaml, as a flow parameter."""
