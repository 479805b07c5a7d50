"""Fixtures for the ZenML integration tests: one real local ZenML server per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zenml_oom_orchestrator.testing.zenml_server import LocalZenServer, local_zen_server


@pytest.fixture(scope="session")
def zenml_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalZenServer]:
    """A local ZenML server (`zenml login --local`), active in this process for the session."""
    with local_zen_server(tmp_path_factory.mktemp("zenml-config")) as server:
        server.activate_in_process()
        yield server
