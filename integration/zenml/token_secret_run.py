"""Run one small pipeline on an oom_kubernetes stack of an authenticated ZenML server.

`python token_secret_run.py STACK ORCHESTRATOR [--pass-token-as-secret true|false]
[--config JSON]`, in an environment that is a client of that server
(AuthenticatedZenServer.client_env) and has KUBECONFIG pointing at the cluster. Registers the
orchestrator (with the orchestrator fields in JSON, e.g. the real tier's context, namespace and
service account; the local cluster's by default) and the stack (with
`pass_zenml_token_as_secret` only when given, so the default is what runs without it), runs
`long_running` synchronously, and prints one JSON line: run id, snapshot id, statuses.
"""

from __future__ import annotations

import argparse
import json

from zenml.client import Client

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorSettings
from zenml_oom_orchestrator.testing import stack
from zenml_oom_orchestrator.testing.pipelines import long_running


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stack")
    parser.add_argument("orchestrator")
    parser.add_argument("--pass-token-as-secret", choices=["true", "false"])
    parser.add_argument("--config", type=json.loads, default={})
    args = parser.parse_args()
    config = dict(args.config)
    if args.pass_token_as_secret is not None:
        config["pass_zenml_token_as_secret"] = args.pass_token_as_secret == "true"
    stack.register_stack(args.stack, args.orchestrator, "oom_kubernetes", **config)
    client = Client()
    client.activate_stack(args.stack)
    settings = {
        "docker": stack.no_build_docker_settings(),
        "orchestrator": OOMKubernetesOrchestratorSettings(
            initial_memory="400Mi", max_memory="800Mi"
        ),
    }
    run = long_running.with_options(settings=settings)(sleep_seconds=5)
    assert run is not None
    run = client.get_pipeline_run(run.id)
    assert run.snapshot is not None
    print(
        json.dumps(
            {
                "run_id": str(run.id),
                "snapshot_id": str(run.snapshot.id),
                "status": run.status.value,
                "steps": {name: step.status.value for name, step in run.steps.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
